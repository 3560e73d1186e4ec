"""Refund use cases: refund an order (all of it, an amount, or lines) under the refund
rules, retry a failed refund, preview what may be refunded, read refunds, and record the
consumption the rules read.

A refund is recorded with its holds in one transaction (the holds are conditional
UPDATEs, so concurrent refunds never give back more than was paid), then sent to the
channel after commit; what the channel answers is settled by services/refund_settlement.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from tuition.domain.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    ValidationFailed,
)
from tuition.domain.ids import Prefix, new_id
from tuition.domain.money import CURRENCIES
from tuition.domain.orders import OrderStatus
from tuition.domain.payments import PaymentStatus, RefundStatus
from tuition.domain.refunds import (
    LineAllowance,
    LinePart,
    LineRequest,
    RefundDestination,
    RefundPolicy,
    RefundReason,
    RefundRefused,
    line_allowance,
    plan_refund,
    split_line,
)
from tuition.logs import get_logger
from tuition.services.balances import take_back_topup, take_back_topup_short, topup_source
from tuition.services.payments import PaymentDeps, submit_refund
from tuition.services.refund_facts import line_facts
from tuition.services.refund_settlement import hold_payment, open_refund
from tuition.services.risk import refund_subject, refusing, screen_refund
from tuition.store.orders import OrderRecord
from tuition.store.payments import PaymentRecord
from tuition.store.refunds import (
    Consumption,
    RefundFilter,
    RefundLineRecord,
    RefundRecord,
)
from tuition.store.uow import UnitOfWork

log = get_logger(__name__)

_REFUNDABLE = (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED)


@dataclass(frozen=True, slots=True)
class RefundDeps:
    payments: PaymentDeps
    default_policy: RefundPolicy


@dataclass(frozen=True, slots=True)
class CreateRefund:
    order_id: str | None = None
    payment_id: str | None = None
    amount: int | None = None
    lines: tuple[LineRequest, ...] | None = None
    reason: RefundReason = RefundReason.REQUESTED_BY_CUSTOMER
    metadata: Mapping[str, Any] = field(default_factory=dict)
    destination: RefundDestination = RefundDestination.ORIGINAL
    override: bool = False
    requested_by: str = "system"  # "api_key:key_…" or "admin:<email>"
    # A refund the gateway made on its own, which cannot be refused (Apple's): the
    # whole of each line comes back whatever the rules (a membership's used time, a
    # spent top-up); a top-up's spent credit becomes the wallet's flagged shortfall.
    unrefusable: bool = False


_INDEX = re.compile(r"[0-9]{1,3}")


def line_id(order_id: str, index: int) -> str:
    """The public id of an order line: ``<order id>:<index>``."""
    return f"{order_id}:{index}"


def parse_line_id(value: str | int, order_id: str, *, param: str) -> int:
    """A line named by its id (``ord_…:1``) or by its index (``1``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        prefix, sep, index = value.rpartition(":")
        if sep and prefix == order_id and _INDEX.fullmatch(index):
            return int(index)
        if not sep and _INDEX.fullmatch(value):
            return int(value)
    raise InvalidRequest(
        f"{value!r} is not a line of order {order_id}", code="line_not_found", param=param
    )


async def create_refund(cmd: CreateRefund, uow: UnitOfWork, *, deps: RefundDeps) -> RefundRecord:
    """Refund an order or a payment under the rules; the refund as the channel left it
    (``pending`` if the channel settles later, ``succeeded`` or ``failed`` if at once).

    Writes nothing when refused: RefundRefused names the rule (``refund_window_closed``,
    ``consumption_limit_exceeded``, ``refund_exceeds_refundable``), Conflict
    ``order_not_refundable`` an order that was never paid or is refunded in full.
    """
    if cmd.amount is not None and cmd.lines:
        raise ValidationFailed("give either amount or lines, not both", param="amount")
    return await refusing(uow, _create_refund(cmd, uow, deps=deps))  # risk: audit a block


async def _create_refund(cmd: CreateRefund, uow: UnitOfWork, *, deps: RefundDeps) -> RefundRecord:
    async with uow:
        refund = await _open(uow, cmd, deps=deps)
        uow.outcome(refund.id)  # what a retry with the same Idempotency-Key gets back
        await uow.commit()
    return await _sent(uow, refund.id, deps)


async def retry_refund(
    uow: UnitOfWork, refund_id: str, *, requested_by: str, deps: RefundDeps
) -> RefundRecord:
    """A new refund of what a failed one was for, the same lines and amounts. The rules
    were met when the first was asked for, so they are not applied again."""
    async with uow:
        failed = await uow.refunds.get(refund_id)
        if failed is None:
            raise NotFound(f"no refund {refund_id!r}", code="refund_not_found", param="refund_id")
        if failed.status is not RefundStatus.FAILED:
            raise Conflict(
                f"refund {refund_id} is {failed.status}; only a failed refund can be retried",
                code="refund_not_retryable",
            )
        lines = tuple(LineRequest(line.line_index, line.amount) for line in failed.lines)
        cmd = CreateRefund(
            payment_id=failed.payment_id,
            amount=None if lines else failed.amount,
            lines=lines or None,
            reason=RefundReason(failed.reason) if failed.reason in _REASONS else RefundReason.OTHER,
            metadata=failed.metadata or {},
            destination=RefundDestination(failed.destination),
            override=True,
            requested_by=requested_by,
        )
        refund = await _open(uow, cmd, deps=deps, retry_of=failed.id, record_override=False)
        uow.outcome(refund.id)  # what a retry with the same Idempotency-Key gets back
        await uow.commit()
    return await _sent(uow, refund.id, deps)


async def open_refund_in(uow: UnitOfWork, cmd: CreateRefund, *, deps: RefundDeps) -> RefundRecord:
    """Inside the caller's unit of work: record the refund ``cmd`` asks for, with its
    holds (for a refund the gateway already made, settled by the caller in the same
    transaction)."""
    return await _open(uow, cmd, deps=deps)


async def _open(
    uow: UnitOfWork,
    cmd: CreateRefund,
    *,
    deps: RefundDeps,
    retry_of: str | None = None,
    record_override: bool = True,
) -> RefundRecord:
    """Inside the unit of work: record the refund ``cmd`` asks for, with its holds."""
    order, payment = await _resolve(uow, cmd)
    if payment.duplicate_of is None:
        return await _refund_order(
            uow, order, payment, cmd, deps=deps, retry_of=retry_of, record_override=record_override
        )
    if cmd.destination is RefundDestination.WALLET:
        raise InvalidRequest(
            f"payment {payment.id} is a double charge: it goes back where it came from",
            code="wallet_refund_not_applicable",
            param="to",
        )
    return await _refund_duplicate(
        uow, payment, cmd, now=deps.payments.clock.now(), retry_of=retry_of
    )


_REASONS = {reason.value for reason in RefundReason}


async def _sent(uow: UnitOfWork, refund_id: str, deps: RefundDeps) -> RefundRecord:
    """Send a refund just recorded and read it as the channel left it. It is committed
    with its job, so a channel that cannot be reached now (or a crash here) leaves it
    pending for the worker, never turns the answer into an error."""
    try:
        await submit_refund(uow, refund_id, deps=deps.payments)
    except Exception as exc:
        log.warning("refund_submission_deferred", refund=refund_id, error=type(exc).__name__)
    return await get_refund(uow, refund_id)


@dataclass(frozen=True, slots=True)
class LinePreview:
    index: int
    product_id: str
    title: str
    total: int
    refunded: int  # held by pending and succeeded refunds
    refundable: int
    refused_by: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class RefundPreview:
    order_id: str
    currency: str
    refundable: int
    lines: tuple[LinePreview, ...]


async def preview_refund(uow: UnitOfWork, order_id: str, *, deps: RefundDeps) -> RefundPreview:
    """What the rules allow to be refunded on the order now, line by line."""
    now = deps.payments.clock.now()
    async with uow:
        order = await uow.orders.get(order_id)
        if order is None:
            raise NotFound(f"no order {order_id!r}", code="order_not_found", param="order_id")
        if order.status not in _REFUNDABLE or order.paid_at is None:
            allowances: list[LineAllowance] = [
                LineAllowance(line.line_index, 0, 0, "order_not_refundable", None)
                for line in order.lines
            ]
        else:
            facts = await line_facts(uow, order, deps.default_policy)
            allowances = [
                line_allowance(f, paid_at=order.paid_at, now=now, override=False) for f in facts
            ]
    by_index = {a.index: a for a in allowances}
    lines = tuple(
        LinePreview(
            index=line.line_index,
            product_id=line.product_id,
            title=line.title,
            total=line.total,
            refunded=line.refund_reserved,
            refundable=by_index[line.line_index].refundable,
            refused_by=by_index[line.line_index].refused_by,
            message=by_index[line.line_index].message,
        )
        for line in order.lines
    )
    return RefundPreview(order.id, order.currency, sum(p.refundable for p in lines), lines)


async def get_refund(uow: UnitOfWork, refund_id: str) -> RefundRecord:
    async with uow:
        refund = await uow.refunds.get(refund_id)
    if refund is None:
        raise NotFound(f"no refund {refund_id!r}", code="refund_not_found", param="refund_id")
    return refund


async def list_refunds(
    uow: UnitOfWork, filt: RefundFilter, *, limit: int, starting_after: str | None
) -> tuple[list[RefundRecord], bool]:
    async with uow:
        return await uow.refunds.find(filt, limit=limit, starting_after=starting_after)


async def report_progress(
    uow: UnitOfWork,
    customer_id: str,
    product_id: str,
    *,
    progress: Decimal,
    lessons: tuple[int, int] | None,
    deps: RefundDeps,
) -> Consumption:
    """Record how much of a product the customer has consumed (what the rules read)."""
    now = deps.payments.clock.now()
    record = Consumption(
        customer_id=customer_id,
        product_id=product_id,
        progress=progress,
        lessons_consumed=lessons[0] if lessons else None,
        lessons_total=lessons[1] if lessons else None,
        updated_at=now,
    )
    async with uow:
        held = await uow.orders.entitlements_of(customer_id, product_id=product_id)
        if not held:
            raise NotFound(
                f"customer {customer_id} has no entitlement to {product_id}",
                code="entitlement_not_found",
                param="product_id",
            )
        await uow.refunds.put_consumption(record)
        await uow.commit()
    return record


# --- inside the unit of work --------------------------------------------------------------


async def _resolve(uow: UnitOfWork, cmd: CreateRefund) -> tuple[OrderRecord, PaymentRecord]:
    """The order and the payment a refund comes from: the payment named, else the one that
    paid the order (not a duplicate that came after it)."""
    if cmd.payment_id is None and cmd.order_id is None:
        raise ValidationFailed("give order_id or payment_id", param="order_id")
    payment: PaymentRecord | None = None
    if cmd.payment_id is not None:
        payment = await uow.payments.get(cmd.payment_id)
        if payment is None:
            raise NotFound(
                f"no payment {cmd.payment_id!r}", code="payment_not_found", param="payment_id"
            )
        if cmd.order_id is not None and cmd.order_id != payment.order_id:
            raise InvalidRequest(
                f"payment {payment.id} belongs to order {payment.order_id}",
                code="payment_order_mismatch",
                param="payment_id",
            )
    order_id = payment.order_id if payment is not None else cmd.order_id
    assert order_id is not None
    order = await uow.orders.get(order_id)
    if order is None:
        raise NotFound(f"no order {order_id!r}", code="order_not_found", param="order_id")
    if payment is None:
        payment = await uow.payments.paying(order.id)
        if payment is None:
            raise Conflict(
                f"order {order.id} is {order.status}; only a paid order can be refunded",
                code="order_not_refundable",
            )
    if payment.status is not PaymentStatus.SUCCEEDED:
        raise Conflict(
            f"payment {payment.id} is {payment.status}; only a succeeded payment can be refunded",
            code="order_not_refundable",
        )
    known = CURRENCIES.get(order.currency)
    if known is None or known.virtual:
        # Its entry is booked at the coins' money value, which a refund in coins does not
        # take back line by line yet; an operator credits coins by an adjustment.
        raise RefundRefused(
            f"order {order.id} was paid in coins ({order.currency}); coin purchases are not "
            "refunded through /v1/refunds: credit the coins back with a wallet adjustment",
            code="coin_order_not_refundable",
        )
    return order, payment


async def _refund_duplicate(
    uow: UnitOfWork,
    payment: PaymentRecord,
    cmd: CreateRefund,
    *,
    now: Any,
    retry_of: str | None = None,
) -> RefundRecord:
    """Money that came for an order that no longer wanted it: no lines, no rules."""
    if cmd.lines:
        raise InvalidRequest(
            f"payment {payment.id} paid nothing of the order (it arrived after the order "
            "was settled): refund an amount, not lines",
            code="refund_lines_not_applicable",
            param="lines",
        )
    amount = cmd.amount if cmd.amount is not None else payment.amount - payment.refund_reserved
    if amount <= 0:
        raise RefundRefused(
            f"nothing is left to refund on payment {payment.id}", code="refund_exceeds_refundable"
        )
    await hold_payment(uow, payment, amount, now)
    return await open_refund(
        uow,
        payment,
        amount=amount,
        reason=cmd.reason.value,
        at=now,
        requested_by=cmd.requested_by,
        retry_of=retry_of,
        metadata=cmd.metadata,
    )


async def _refund_order(
    uow: UnitOfWork,
    order: OrderRecord,
    payment: PaymentRecord,
    cmd: CreateRefund,
    *,
    deps: RefundDeps,
    retry_of: str | None = None,
    record_override: bool = True,
) -> RefundRecord:
    if order.status not in _REFUNDABLE or order.paid_at is None:
        raise Conflict(
            f"order {order.id} is {order.status}; only a paid order can be refunded",
            code="order_not_refundable",
        )
    now = deps.payments.clock.now()
    # Lock the payment row first: refunds of one order then plan one after another from
    # what the one before committed (the holds below would refuse a stale plan anyway).
    await uow.refunds.lock_payment(payment.id, now)
    fresh = await uow.orders.get(order.id)
    assert fresh is not None
    if fresh.status not in _REFUNDABLE or fresh.paid_at is None:
        raise Conflict(
            f"order {order.id} is {fresh.status}; only a paid order can be refunded",
            code="order_not_refundable",
        )
    order = fresh
    facts = await line_facts(uow, order, deps.default_policy)
    if cmd.unrefusable:  # the money is back with the buyer already: nothing limits it
        facts = [replace(f, topup_unspent=True, access_start=None, access_end=None) for f in facts]
    allowances = [
        line_allowance(f, paid_at=fresh.paid_at, now=now, override=cmd.override) for f in facts
    ]
    plan = plan_refund(facts, allowances, amount=cmd.amount, requested=cmd.lines)
    if cmd.amount is None and not cmd.lines:
        # "Everything" of one payment of a split order is what that payment has left.
        current = await uow.payments.get(payment.id)
        assert current is not None
        left = current.amount - current.refund_reserved
        if 0 < left < sum(amount for amount, _cap in plan.values()):
            plan = plan_refund(facts, allowances, amount=left, requested=None)
    # The holds: each a conditional UPDATE, so a concurrent refund that committed first
    # is counted and this one is refused rather than both passing the same check.
    refund_amount = sum(amount for amount, _cap in plan.values())
    if retry_of is None and not cmd.override:  # risk hook: large or frequent refunds
        await screen_refund(
            uow, refund_subject(order, refund_amount), at=now, thresholds=deps.payments.risk
        )
    await hold_payment(uow, payment, refund_amount, now)
    held: dict[int, int] = {}
    for index, (amount, cap) in sorted(plan.items()):
        reserved = await uow.refunds.hold_on_line(order.id, index, amount, cap)
        if reserved is None:
            raise RefundRefused(
                f"line {index} cannot give back {amount} more under the refund rules",
                code="refund_exceeds_refundable",
                param="amount",
            )
        held[index] = reserved
    # Read after the holds: every refund that holds part of these lines is now visible.
    taken = await uow.refunds.taken_by_line(order.id)
    by_index = {f.index: f for f in facts}
    parts: list[LinePart] = []
    for index, (amount, cap) in sorted(plan.items()):
        parts.append(
            split_line(
                by_index[index],
                amount,
                cap=cap,
                reserved_after=held[index],
                taken=taken.get(index, (0, 0, 0, 0)),
            )
        )
    refund_id = new_id(Prefix.REFUND)
    for part in parts:
        if part.wallet_amount and cmd.destination is RefundDestination.WALLET:
            raise InvalidRequest(
                f"line {part.index} is a top-up: it is refunded to where it was paid from",
                code="wallet_refund_not_applicable",
                param="to",
            )
        if part.wallet_amount:  # a top-up: its lot comes back out of the wallet, whole
            take_back = take_back_topup_short if cmd.unrefusable else take_back_topup
            await take_back(
                uow,
                source=topup_source(order.id, part.index),
                refund_id=refund_id,
                line_index=part.index,
                at=now,
            )
    override_by = cmd.requested_by if cmd.override and record_override else None
    return await open_refund(
        uow,
        payment,
        refund_id=refund_id,
        destination=cmd.destination,
        amount=refund_amount,
        reason=cmd.reason.value,
        at=now,
        lines=[
            RefundLineRecord(
                line_index=p.index,
                amount=p.amount,
                creator_id=p.creator_id,
                creator_amount=p.creator_amount,
                tax_amount=p.tax_amount,
                platform_amount=p.platform_amount,
                wallet_amount=p.wallet_amount,
                revokes_access=p.revokes_access,
            )
            for p in parts
        ],
        requested_by=cmd.requested_by,
        override_by=override_by,
        retry_of=retry_of,
        metadata=cmd.metadata,
    )
