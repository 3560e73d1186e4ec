"""Offline bank transfers: finance records what arrived; the one paid path does the rest.

A transfer is recorded by hand (the admin console, ``POST /v1/bank_transfers/receipts``,
``tuition bank-transfers receive``) or from a bank statement CSV (``…/statements``,
``tuition bank-transfers import``), matched to its payment by the reference in the memo
(channels/bank_transfer). Each is counted once, by the bank's serial number (UNIQUE).
Under the payment's row lock, what has arrived for it is summed: short of the amount, the
payment stays open (``underpaid``); covering it, the payment succeeds through
services/settlement.py like any gateway's; more than it is ``overpaid``, flagged with the
``payment.overpaid`` event for finance to send the excess back.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, replace
from datetime import date

from tuition.channels.bank_transfer.client import SLUG, payment_of
from tuition.channels.base import PaymentState
from tuition.domain.errors import InvalidRequest, NotFound, ValidationFailed
from tuition.domain.ids import new_id
from tuition.domain.money import get_currency, parse_decimal_amount
from tuition.domain.payments import PaymentStatus
from tuition.services.payments import PaymentDeps, submit_refund
from tuition.services.settlement import apply_payment_state
from tuition.store.bank_transfers import BankTransferRepository, ReceiptRecord
from tuition.store.uow import UnitOfWork

_OPEN = (PaymentStatus.CREATED, PaymentStatus.PENDING)
_SERIAL = re.compile(r"[\x21-\x7e]{1,100}")
STATEMENT_COLUMNS = ("date", "amount", "currency", "reference", "serial", "payer")
MAX_STATEMENT_LINES = 10_000


@dataclass(frozen=True, slots=True)
class ReceivedTransfer:
    reference: str  # the reference, or the statement's memo holding it
    amount: int  # minor units
    currency: str
    received_on: date
    bank_serial: str  # the bank's number for the transfer (流水号)
    payer: str
    recorded_by: str
    source: str = "manual"


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    """``paid``: this transfer completed the payment; ``underpaid``: the payment waits
    for the rest; ``overpaid``: more arrived than asked (flagged); ``duplicate``: this
    bank serial was recorded before; ``unmatched``: no bank transfer payment by that
    reference (a statement line only; by hand it is a 404)."""

    verdict: str
    payment_id: str | None
    order_id: str | None = None
    expected: int | None = None
    received: int | None = None


async def record_transfer(
    cmd: ReceivedTransfer, uow: UnitOfWork, *, deps: PaymentDeps
) -> TransferOutcome:
    # One transfer, one serial, however it was typed: "abc123" by hand and "ABC123" from
    # the statement must not count it twice.
    cmd = replace(cmd, bank_serial=cmd.bank_serial.strip().upper())
    if _SERIAL.fullmatch(cmd.bank_serial) is None:
        raise ValidationFailed(
            "bank_serial must be 1-100 printable ASCII characters", param="bank_serial"
        )
    if cmd.amount <= 0:
        raise ValidationFailed("amount must be positive", param="amount")
    payment_id = payment_of(cmd.reference)
    if payment_id is None:
        raise NotFound(
            f"no transfer reference (TU + 26 characters) in {cmd.reference[:80]!r}",
            code="transfer_reference_unknown",
            param="reference",
        )
    now = deps.clock.now()
    refunds: list[str] = []
    async with uow:
        payment = await uow.payments.get(payment_id)
        if payment is None or payment.channel != SLUG:
            raise NotFound(
                f"no bank transfer payment with reference {cmd.reference[:80]!r}",
                code="transfer_reference_unknown",
                param="reference",
            )
        if cmd.currency != payment.currency:
            raise ValidationFailed(
                f"payment {payment.id} is in {payment.currency}, not {cmd.currency}",
                code="currency_mismatch",
                param="currency",
            )
        # The payment's row lock first: receipts for one payment are summed one after
        # another, so two partial transfers arriving at once still complete it.
        await uow.refunds.lock_payment(payment.id, now)
        repo = BankTransferRepository(uow.conn)
        added = await repo.add(
            ReceiptRecord(
                id=new_id("btr"),
                payment_id=payment.id,
                bank_serial=cmd.bank_serial,
                amount=cmd.amount,
                currency=cmd.currency,
                received_on=cmd.received_on.isoformat(),
                payer=cmd.payer[:200],
                source=cmd.source,
                recorded_by=cmd.recorded_by[:254],
                created_at=now,
            )
        )
        received = await repo.received(payment.id)
        current = await uow.payments.get(payment.id)
        assert current is not None
        if not added:
            return TransferOutcome(
                "duplicate", payment.id, payment.order_id, payment.amount, received
            )
        verdict = "underpaid"
        if current.status in _OPEN and received >= current.amount:
            state = PaymentState(
                payment_id=current.id,
                status=PaymentStatus.SUCCEEDED,
                amount=current.amount,
                currency=current.currency,
                channel_trade_no=current.channel_trade_no,
                raw_status="RECEIVED",
            )
            fee_rate = deps.registry.get(SLUG).fee_rate
            settled = await apply_payment_state(
                uow, current, state, fee_rate=fee_rate, at=now, hold=deps.hold
            )
            refunds = settled.refunds_to_submit
            # Paid, unless its order no longer wanted it (expired, paid another way): then
            # the money is to go back, by hand for a bank transfer, and is flagged.
            verdict = "overpaid" if refunds else "paid"
        elif current.status not in _OPEN:
            verdict = "overpaid"  # money for a payment already settled or closed
        if received > current.amount or verdict == "overpaid":
            verdict = "overpaid"
            await uow.events.emit(
                "payment.overpaid",
                current.id,
                {
                    "id": current.id,
                    "order_id": current.order_id,
                    "amount": current.amount,
                    "received": received,
                    "currency": current.currency,
                    "bank_serial": cmd.bank_serial,
                },
                at=now,
            )
        await uow.commit()
    for refund_id in refunds:  # money for an order that no longer wanted it
        await submit_refund(uow, refund_id, deps=deps)
    return TransferOutcome(verdict, payment.id, payment.order_id, payment.amount, received)


@dataclass(frozen=True, slots=True)
class StatementLine:
    line: int  # 1-based, the header being line 1
    serial: str
    outcome: TransferOutcome | None
    error: str | None = None


async def import_statement(
    text: str, uow: UnitOfWork, *, recorded_by: str, deps: PaymentDeps
) -> list[StatementLine]:
    """Record every credit line of a bank statement CSV (columns ``date, amount,
    currency, reference, serial, payer``; ``amount`` in the currency's major unit, e.g.
    ``1234.50``). Importing the same statement again records nothing new. A line that
    cannot be read is reported with its error; the others are still recorded."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    missing = [c for c in STATEMENT_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise ValidationFailed(
            f"the statement needs the columns {', '.join(STATEMENT_COLUMNS)}; missing "
            f"{', '.join(missing)}",
            code="statement_columns",
            param="statement",
        )
    results = []
    for number, row in enumerate(reader, start=2):
        if number > MAX_STATEMENT_LINES + 1:
            raise ValidationFailed(
                f"a statement holds at most {MAX_STATEMENT_LINES} lines",
                code="statement_too_long",
                param="statement",
            )
        serial = (row.get("serial") or "").strip()
        try:
            currency = get_currency((row.get("currency") or "").strip(), param="currency")
            received = ReceivedTransfer(
                reference=(row.get("reference") or "").strip(),
                amount=parse_decimal_amount((row.get("amount") or "").strip(), currency),
                currency=currency.code,
                received_on=date.fromisoformat((row.get("date") or "").strip()),
                bank_serial=serial,
                payer=(row.get("payer") or "").strip(),
                recorded_by=recorded_by,
                source="statement",
            )
            outcome = await record_transfer(received, uow, deps=deps)
        except NotFound:
            outcome = TransferOutcome("unmatched", None)
        except (InvalidRequest, ValueError) as exc:
            results.append(StatementLine(number, serial, None, str(exc)))
            continue
        results.append(StatementLine(number, serial, outcome))
    return results
