"""Payouts: take money from a payee's available balance, withhold tax, and settle the
transfer (see domain/payouts.py for statuses and entries, domain/tax.py for the tax).

A payout is created in one transaction that locks the payee's balance row, works out
the month's withholding with that lock held, takes the amount by a conditional UPDATE
and posts the entry; so two payouts at once never overdraw and never withhold the
month's tax twice. The bank route moves payouts to ``processing`` when finance exports
the batch file, and finance marks each paid (with the bank's reference) or failed.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from tuition.channels.base import (
    ChannelTimeout,
    SupportsTransfers,
    TransferRequest,
    TransferState,
    TransferStatus,
)
from tuition.channels.registry import ChannelRegistry
from tuition.clock import Clock
from tuition.domain.earnings import TaxProfile, mask_account
from tuition.domain.errors import Conflict, NotFound, ValidationFailed
from tuition.domain.ids import Prefix, new_id
from tuition.domain.modes import Mode, notify_url
from tuition.domain.money import format_amount, get_currency
from tuition.domain.payouts import (
    PayoutMethod,
    PayoutStatus,
    created_entry,
    failed_entry,
    paid_entry,
    payout_amount,
    returned_entry,
    transition,
)
from tuition.domain.tax import DEFAULT_TABLE, WithholdingTable, withhold
from tuition.services import audit
from tuition.services.audit import Actor
from tuition.services.earnings import payee_of
from tuition.store.payouts import PayoutRecord
from tuition.store.uow import UnitOfWork

TAX_ZONE = ZoneInfo("Asia/Shanghai")  # a month of income is a calendar month in China


@dataclass(frozen=True, slots=True)
class PayoutDeps:
    clock: Clock
    minimum: int = 100  # minor units: the smallest payout made
    tax_table: WithholdingTable = DEFAULT_TABLE
    registry: ChannelRegistry | None = None  # transfer channels; None: bank only
    base_url: str = ""  # this deployment's, for the gateways' transfer notifications
    mode: Mode = "live"  # whose payouts these are: each mode is notified at its own path


SUBMIT_JOB = "submit_payout"
RECHECK = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class CreatePayout:
    payee_id: str
    currency: str
    amount: int | None  # None: everything available
    requested_by: str
    run_key: str | None = None  # a scheduled run's: one payout per payee and period
    # (method, account) to pay to: a run's as approved; None: the payee's details now.
    destination: tuple[str, str] | None = None

    def __repr__(self) -> str:  # the account stays out of logs and tracebacks
        return f"CreatePayout(payee_id={self.payee_id!r}, currency={self.currency!r})"


def tax_month(at: datetime) -> str:
    return at.astimezone(TAX_ZONE).strftime("%Y-%m")


def run_period(at: datetime, schedule: str) -> str:
    """The period a scheduled run pays for: ``2026-11`` (monthly) or ``2026-W45``."""
    local = at.astimezone(TAX_ZONE)
    if schedule == "weekly":
        year, week, _day = local.isocalendar()
        return f"{year}-W{week:02d}"
    if schedule == "monthly":
        return local.strftime("%Y-%m")
    raise ValidationFailed(f"unknown payout schedule {schedule!r}", param="payout_schedule")


async def create_payout(
    cmd: CreatePayout, uow: UnitOfWork, *, deps: PayoutDeps, actor: Actor | None = None
) -> PayoutRecord:
    """Hold the amount from available, withhold the month's tax, record a pending payout.

    Raises NotFound (``payee_not_found``), Conflict (``payout_method_missing``,
    ``insufficient_available``, ``payout_channel_unavailable``) or ValidationFailed
    (``payout_below_minimum``); writes nothing then.
    """
    get_currency(cmd.currency)
    now = deps.clock.now()
    async with uow:
        payee = await payee_of(uow, cmd.payee_id)
        method_name, account = cmd.destination or (payee.payout_method, payee.payout_account)
        if method_name is None or not account:
            raise Conflict(
                f"payee {payee.id} has no payout account",
                code="payout_method_missing",
                param="payee_id",
            )
        method = PayoutMethod(method_name)
        if method is not PayoutMethod.BANK:
            _transfer_channel(deps, method)
        available = await uow.payouts.lock_available(payee.id, cmd.currency, now)
        # A run repeated after a crash (or racing another): its payout is made already,
        # and the balance it took must not make the repeat look short of money.
        if cmd.run_key is not None and await uow.payouts.by_run_key(cmd.run_key) is not None:
            raise Conflict(
                f"payee {payee.id} was paid by run {cmd.run_key} already", code="payout_run_done"
            )
        amount = payout_amount(available, cmd.amount, deps.minimum)
        if amount > available:
            raise Conflict(
                f"payee {payee.id} has {available} available, not {amount}",
                code="insufficient_available",
                param="amount",
            )
        month = tax_month(now)
        tax = 0
        if payee.tax_profile == TaxProfile.INDIVIDUAL.value and (
            cmd.currency == deps.tax_table.currency
        ):
            paid, withheld = await uow.payouts.month_totals(payee.id, cmd.currency, month)
            tax = withhold(
                amount, paid_this_month=paid, withheld_this_month=withheld, table=deps.tax_table
            ).withheld_now
        if await uow.payouts.take(payee.id, cmd.currency, amount, now) is None:
            raise AssertionError("the balance row is locked by this transaction")
        payout = PayoutRecord(
            id=new_id(Prefix.PAYOUT),
            payee_id=payee.id,
            currency=cmd.currency,
            amount=amount,
            tax_withheld=tax,
            tax_month=month,
            method=method.value,
            destination=mask_account(account),
            status=PayoutStatus.PENDING,
            reference=None,
            failure_code=None,
            failure_message=None,
            requested_by=cmd.requested_by,
            run_key=cmd.run_key,
            created_at=now,
            updated_at=now,
            paid_at=None,
            failed_at=None,
            payout_account=account,
        )
        if not await uow.payouts.add(payout):
            raise Conflict(
                f"payee {payee.id} was paid by run {cmd.run_key} already", code="payout_run_done"
            )
        await uow.ledger.post(
            created_entry(payout.id, payee.id, cmd.currency, amount, tax, at=now), at=now
        )
        await uow.events.emit("payout.created", payout.id, payout_data(payout), at=now)
        if actor is not None:  # asked for by someone (a run's payouts: the run's approval)
            await audit.record(
                uow.conn,
                actor,
                "payout.created",
                payout.id,
                clock=deps.clock,
                after={
                    "payee_id": payee.id,
                    "currency": payout.currency,
                    "amount": payout.amount,
                    "tax_withheld": payout.tax_withheld,
                    "destination": payout.destination,
                },
            )
        if method is not PayoutMethod.BANK:
            # Sent after commit (submit_payout); the job sends it if that never happens.
            await uow.work.enqueue(SUBMIT_JOB, payout.id, run_at=now + RECHECK, now=now)
        await uow.commit()
    return payout


def _transfer_channel(deps: PayoutDeps, method: PayoutMethod) -> SupportsTransfers:
    channel = None
    if deps.registry is not None and method.value in deps.registry:
        channel = deps.registry.get(method.value)
    if not isinstance(channel, SupportsTransfers):
        raise Conflict(
            f"transfers through {method} are not available here; use the bank route",
            code="payout_channel_unavailable",
            param="payee_id",
        )
    return channel


async def submit_payout(uow: UnitOfWork, payout_id: str, *, deps: PayoutDeps) -> PayoutStatus:
    """Send a payout to its transfer channel, or learn what became of it; its status now.

    The payout moves to ``processing`` before the gateway is called, and the query
    decides every time: a transfer it does not know is sent (the payout id is the
    gateway's ``out_biz_no`` / ``out_bill_no``, so a repeat is one transfer), one it
    knows is settled as it says. A lost answer leaves it ``processing`` for the job to
    ask again.
    """
    now = deps.clock.now()
    async with uow:
        payout = await uow.payouts.get(payout_id)
        if payout is None:
            raise NotFound(f"no payout {payout_id}", code="payout_not_found", param="payout_id")
        if payout.status is PayoutStatus.PENDING:
            transition(payout.status, PayoutStatus.PROCESSING)
            await uow.payouts.set_status(
                payout_id, expected=PayoutStatus.PENDING, target=PayoutStatus.PROCESSING, at=now
            )
            payout = await uow.payouts.get(payout_id)
            assert payout is not None
        payee = await payee_of(uow, payout.payee_id)
        await uow.commit()
    if payout.status is not PayoutStatus.PROCESSING or payout.method == PayoutMethod.BANK.value:
        return payout.status
    channel = _transfer_channel(deps, PayoutMethod(payout.method))
    try:
        state = await channel.query_transfer(payout_id)
        if state is None:
            state = await channel.transfer(
                TransferRequest(
                    payout_id=payout.id,
                    amount=payout.net,
                    currency=payout.currency,
                    account=payout.payout_account or payee.payout_account or "",
                    name=payee.name,
                    title=f"payout {payout.tax_month}",
                    notify_url=_notify_url(deps, payout.method),
                )
            )
    except ChannelTimeout:
        return PayoutStatus.PROCESSING
    async with uow:
        current = await uow.payouts.get(payout_id)
        assert current is not None
        await settle_transfer(uow, current, state, at=deps.clock.now())
        await uow.commit()
        settled = await uow.payouts.get(payout_id)
    assert settled is not None
    return settled.status


def _notify_url(deps: PayoutDeps, method: str) -> str | None:
    if not deps.base_url:
        return None
    return notify_url(deps.base_url, deps.mode, method)


async def settle_transfer(
    uow: UnitOfWork, payout: PayoutRecord, state: TransferState, *, at: datetime
) -> bool:
    """Inside an open unit of work: apply what the gateway says of a processing payout's
    transfer (a query answer or a verified notification); True if the payout moved.

    A payout no longer processing is left as it is: the state was applied already (by
    the job or the notification, whichever came first), so a repeat changes nothing.
    """
    if payout.status is not PayoutStatus.PROCESSING:
        return False
    match state.status:
        case TransferStatus.SUCCEEDED:
            reference = state.channel_transfer_no or f"{payout.method}:{payout.id}"
            return await _paid(uow, payout, reference=reference, now=at)
        case TransferStatus.FAILED | TransferStatus.RETURNED:
            return await _failed(
                uow,
                payout,
                code=state.failure_code or "transfer_failed",
                message=state.failure_message or "the gateway refused the transfer",
                now=at,
            )
        case TransferStatus.PROCESSING:
            package = state.confirm_package
            if package is not None and package != payout.transfer_package:
                await uow.payouts.set_transfer_package(payout.id, package[:1000], at=at)
            return False


TEST_BATCH_MARK = "TEST MODE - NOT A BANK FILE - DO NOT SEND"


def bank_batch_filename(mode: Mode, at: datetime) -> str:
    """The name a bank batch file is saved under: a test mode one says so first."""
    stamp = at.astimezone(TAX_ZONE).strftime("%Y%m%d-%H%M%S")
    if mode == "test":
        return f"TEST-MODE-DO-NOT-SEND-bank-batch-{stamp}.csv"
    return f"bank-batch-{stamp}.csv"


async def export_bank_batch(
    uow: UnitOfWork, *, deps: PayoutDeps, actor: Actor = audit.SYSTEM
) -> str:
    """The bank batch file (CSV) of every pending bank payout, each moved to
    ``processing``: a payout is in one batch only. Test mode's file starts with a
    ``test_mode`` column saying it is no bank file on every row, header included, so it
    can never pass for a real batch."""
    now = deps.clock.now()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    test = deps.mode == "test"
    mark = [TEST_BATCH_MARK] if test else []
    exported: list[str] = []
    writer.writerow(
        [
            *(["test_mode"] if test else []),
            "payout_id",
            "payee_name",
            "account",
            "currency",
            "amount",
        ]
    )
    async with uow:
        pending, _more = await uow.payouts.listing(
            payee_id=None, status=PayoutStatus.PENDING, limit=10_000, starting_after=None
        )
        for payout in sorted(pending, key=lambda p: p.id):
            if payout.method != PayoutMethod.BANK.value:
                continue
            payee = await payee_of(uow, payout.payee_id)
            if not await uow.payouts.set_status(
                payout.id, expected=PayoutStatus.PENDING, target=PayoutStatus.PROCESSING, at=now
            ):
                continue  # exported by another run meanwhile
            exported.append(payout.id)
            writer.writerow(
                [
                    *mark,
                    payout.id,
                    payee.name,
                    payout.payout_account or payee.payout_account or "",
                    payout.currency,
                    format_amount(payout.net, get_currency(payout.currency)),
                ]
            )
        if exported:
            await audit.record(
                uow.conn,
                actor,
                "payout.bank_batch_exported",
                exported[0],
                clock=deps.clock,
                after={"payouts": exported, "test_mode": test},
            )
        await uow.commit()
    return out.getvalue()


async def mark_paid(
    uow: UnitOfWork,
    payout_id: str,
    *,
    reference: str,
    deps: PayoutDeps,
    actor: Actor = audit.SYSTEM,
) -> PayoutRecord:
    if not reference.strip():
        raise ValidationFailed("the bank's reference is required", param="reference")
    now = deps.clock.now()
    async with uow:
        payout = await _current(uow, payout_id)
        _marked_by_hand(payout)
        transition(payout.status, PayoutStatus.PAID)
        if not await _paid(uow, payout, reference=reference, now=now):
            raise Conflict(f"payout {payout_id} changed meanwhile", code="payout_changed")
        await audit.record(
            uow.conn,
            actor,
            "payout.marked_paid",
            payout_id,
            clock=deps.clock,
            before={"status": payout.status.value},
            after={"status": PayoutStatus.PAID.value, "reference": reference[:200]},
        )
        await uow.commit()
    return await _current_after(uow, payout_id)


async def mark_failed(
    uow: UnitOfWork,
    payout_id: str,
    *,
    code: str,
    message: str,
    deps: PayoutDeps,
    actor: Actor = audit.SYSTEM,
) -> PayoutRecord:
    """A payout the bank or channel refused: its money is available again, with the
    reason; a payout already paid is ``returned`` instead."""
    now = deps.clock.now()
    async with uow:
        payout = await _current(uow, payout_id)
        _marked_by_hand(payout)
        target = (
            PayoutStatus.RETURNED if payout.status is PayoutStatus.PAID else PayoutStatus.FAILED
        )
        transition(payout.status, target)
        if not await _failed(uow, payout, code=code, message=message, now=now):
            raise Conflict(f"payout {payout_id} changed meanwhile", code="payout_changed")
        await audit.record(
            uow.conn,
            actor,
            f"payout.marked_{target.value}",
            payout_id,
            clock=deps.clock,
            before={"status": payout.status.value},
            after={"status": target.value, "code": code, "message": message[:500]},
        )
        await uow.commit()
    return await _current_after(uow, payout_id)


def _marked_by_hand(payout: PayoutRecord) -> None:
    """Only a bank payout is marked by hand: a transfer's outcome is the gateway's (its
    notification or query), and a transfer marked failed here while the gateway still
    pays it (WeChat's WAIT_USER_CONFIRM can last hours) would be paid twice."""
    if payout.method != PayoutMethod.BANK.value:
        raise Conflict(
            f"payout {payout.id} is a {payout.method} transfer: its outcome comes from the "
            "gateway (notification or query), not by hand",
            code="payout_not_manual",
        )


async def _current(uow: UnitOfWork, payout_id: str) -> PayoutRecord:
    payout = await uow.payouts.get(payout_id)
    if payout is None:
        raise NotFound(f"no payout {payout_id}", code="payout_not_found", param="payout_id")
    return payout


async def _current_after(uow: UnitOfWork, payout_id: str) -> PayoutRecord:
    async with uow:
        return await _current(uow, payout_id)


async def _paid(uow: UnitOfWork, payout: PayoutRecord, *, reference: str, now: datetime) -> bool:
    """Inside an open unit of work: compare-and-set ``payout`` paid and post its entry;
    False (nothing written) if it changed meanwhile."""
    transition(payout.status, PayoutStatus.PAID)
    if not await uow.payouts.set_status(
        payout.id,
        expected=payout.status,
        target=PayoutStatus.PAID,
        at=now,
        reference=reference[:200],
        paid_at=now,
    ):
        return False
    await uow.ledger.post(
        paid_entry(
            payout.id, payout.payee_id, payout.currency, payout.amount, payout.tax_withheld, at=now
        ),
        at=now,
    )
    moved = await _current(uow, payout.id)
    await uow.events.emit("payout.paid", payout.id, payout_data(moved), at=now)
    return True


async def _failed(
    uow: UnitOfWork, payout: PayoutRecord, *, code: str, message: str, now: datetime
) -> bool:
    """Inside an open unit of work: compare-and-set ``payout`` failed (returned, if it
    was paid), give its money back to available and post the entry; False (nothing
    written) if it changed meanwhile."""
    returned = payout.status is PayoutStatus.PAID
    target = PayoutStatus.RETURNED if returned else PayoutStatus.FAILED
    transition(payout.status, target)
    if not await uow.payouts.set_status(
        payout.id,
        expected=payout.status,
        target=target,
        at=now,
        failure_code=code[:64],
        failure_message=message[:500],
        failed_at=now,
    ):
        return False
    # The balance before the ledger, as on every path that touches both.
    await uow.payouts.add_available(payout.payee_id, payout.currency, payout.amount, now)
    build = returned_entry if returned else failed_entry
    await uow.ledger.post(
        build(
            payout.id, payout.payee_id, payout.currency, payout.amount, payout.tax_withheld, at=now
        ),
        at=now,
    )
    moved = await _current(uow, payout.id)
    await uow.events.emit(f"payout.{target.value}", payout.id, payout_data(moved), at=now)
    return True


async def get_payout(uow: UnitOfWork, payout_id: str) -> PayoutRecord:
    async with uow:
        payout = await uow.payouts.get(payout_id)
    if payout is None:
        raise NotFound(f"no payout {payout_id}", code="payout_not_found", param="payout_id")
    return payout


def payout_data(payout: PayoutRecord) -> dict[str, object]:
    return {
        "id": payout.id,
        "payee_id": payout.payee_id,
        "currency": payout.currency,
        "amount": payout.amount,
        "tax_withheld": payout.tax_withheld,
        "net": payout.net,
        "status": payout.status.value,
        "failure_code": payout.failure_code,
    }
