"""The one paid path: what happens when a gateway says a payment or refund settled.

Both a verified notification and the recovery job's query end here, inside the caller's
unit of work, so a payment is settled the same way whichever arrives first, and only
once: every step is a compare-and-set or a UNIQUE insert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from tuition.channels.base import PaymentState, RefundState
from tuition.domain.errors import IllegalTransition
from tuition.domain.ids import new_id
from tuition.domain.ledger import (
    creator_shares,
    payment_source,
    payment_succeeded_entry,
    refund_entry,
    refund_source,
)
from tuition.domain.orders import OrderStatus
from tuition.domain.payments import PaymentStatus, RefundStatus, channel_fee
from tuition.services.orders import mark_order_paid
from tuition.store.orders import OrderRecord
from tuition.store.payments import PaymentRecord, RefundRecord
from tuition.store.uow import UnitOfWork

_OPEN = (PaymentStatus.CREATED, PaymentStatus.PENDING)
_RETURN_REASONS = {OrderStatus.EXPIRED: "order_expired", OrderStatus.CANCELLED: "order_cancelled"}


@dataclass(slots=True)
class Settled:
    """What a settlement changed; ``refunds_to_submit`` go to the channel after commit."""

    changed: bool = False
    refunds_to_submit: list[str] = field(default_factory=list)


async def apply_payment_state(
    uow: UnitOfWork,
    payment: PaymentRecord,
    state: PaymentState,
    *,
    fee_rate: Decimal,
    at: datetime,
) -> Settled:
    """Move ``payment`` to what the gateway reported; the caller verified and commits."""
    match state.status:
        case PaymentStatus.SUCCEEDED:
            return await _succeed(uow, payment, state, fee_rate=fee_rate, at=at)
        case PaymentStatus.FAILED | PaymentStatus.CLOSED:
            moved = await uow.payments.set_status(
                payment.id,
                expected=_OPEN,
                target=state.status,
                at=at,
                closed_at=at,
                failure_code=state.raw_status or None,
            )
            if moved:
                await uow.events.emit(
                    f"payment.{state.status.value}", payment.id, _payment_data(payment), at=at
                )
            return Settled(changed=moved)
        case PaymentStatus.CREATED | PaymentStatus.PENDING:
            return Settled()


async def _succeed(
    uow: UnitOfWork,
    payment: PaymentRecord,
    state: PaymentState,
    *,
    fee_rate: Decimal,
    at: datetime,
) -> Settled:
    fee = channel_fee(payment.amount, fee_rate)
    paid_at = state.paid_at or at
    moved = await uow.payments.set_status(
        payment.id,
        expected=_OPEN,
        target=PaymentStatus.SUCCEEDED,
        at=at,
        fee=fee,
        succeeded_at=paid_at,
        channel_trade_no=state.channel_trade_no or payment.channel_trade_no,
    )
    if not moved:
        return Settled()
    order = await uow.orders.get(payment.order_id)
    assert order is not None, "a payment always has its order"
    try:
        paid_now = await mark_order_paid(uow, order, at=at)
    except IllegalTransition:  # cancelled or expired before this money came
        paid_now = False
    await uow.events.emit("payment.succeeded", payment.id, _payment_data(payment), at=at)
    if paid_now:
        await uow.ledger.post(
            payment_succeeded_entry(
                payment_id=payment.id,
                channel=payment.channel,
                currency=payment.currency,
                amount=payment.amount,
                fee=fee,
                tax=order.tax_total,
                creator_shares=_creator_shares(order),
                occurred_at=paid_at,
            ),
            at=at,
        )
        await uow.events.emit("order.paid", order.id, _order_data(order), at=at)
        return Settled(changed=True)
    # The order was paid by another attempt, or closed, before this money came: keep the
    # order as it is, book the money as revenue, and send it back through its channel
    # (the refund's entry then reverses it).
    current = await uow.orders.get(order.id, with_lines=False)
    assert current is not None
    await uow.payments.mark_duplicate(payment.id, of_order=order.id)
    await uow.ledger.post(
        payment_succeeded_entry(
            payment_id=payment.id,
            channel=payment.channel,
            currency=payment.currency,
            amount=payment.amount,
            fee=fee,
            tax=0,
            creator_shares=(),
            occurred_at=paid_at,
        ),
        at=at,
    )
    reason = _RETURN_REASONS.get(current.status, "duplicate_payment")
    refund_id = await open_refund(uow, payment, amount=payment.amount, reason=reason, at=at)
    return Settled(changed=True, refunds_to_submit=[refund_id])


async def open_refund(
    uow: UnitOfWork, payment: PaymentRecord, *, amount: int, reason: str, at: datetime
) -> str:
    """Record a pending refund; the channel is asked after commit (see submit_refund)."""
    refund_id = new_id("re")
    await uow.payments.add_refund(
        RefundRecord(
            id=refund_id,
            payment_id=payment.id,
            order_id=payment.order_id,
            amount=amount,
            currency=payment.currency,
            status=RefundStatus.PENDING,
            reason=reason,
            channel_refund_no=None,
            failure_message=None,
            succeeded_at=None,
            created_at=at,
            updated_at=at,
        )
    )
    await uow.events.emit(
        "refund.created",
        refund_id,
        {"id": refund_id, "payment_id": payment.id, "amount": amount, "reason": reason},
        at=at,
    )
    return refund_id


async def apply_refund_state(
    uow: UnitOfWork, refund: RefundRecord, state: RefundState, *, at: datetime
) -> bool:
    """Settle a refund the gateway reported as done or failed; True if it moved."""
    match state.status:
        case RefundStatus.SUCCEEDED:
            moved = await uow.payments.set_refund_status(
                refund.id,
                expected=RefundStatus.PENDING,
                target=RefundStatus.SUCCEEDED,
                at=at,
                succeeded_at=at,
                channel_refund_no=state.channel_refund_no,
            )
            if not moved:
                return False
            if not await uow.payments.add_refunded(refund.payment_id, refund.amount, at):
                raise AssertionError(f"refund {refund.id} exceeds payment {refund.payment_id}")
            original = await uow.ledger.entry_by_source(payment_source(refund.payment_id))
            assert original is not None, "a refunded payment was posted"
            prior = []
            for other in await uow.payments.refunds_of(refund.payment_id):
                if other.id != refund.id and (
                    entry := await uow.ledger.entry_by_source(refund_source(other.id))
                ):
                    prior.append(entry)
            await uow.ledger.post(
                refund_entry(
                    original,
                    refund_id=refund.id,
                    amount=refund.amount,
                    occurred_at=at,
                    prior_refunds=prior,
                ),
                at=at,
            )
            await uow.events.emit("refund.succeeded", refund.id, _refund_data(refund), at=at)
            return True
        case RefundStatus.FAILED:
            moved = await uow.payments.set_refund_status(
                refund.id,
                expected=RefundStatus.PENDING,
                target=RefundStatus.FAILED,
                at=at,
                failure_message=state.raw_status or "refused by the channel",
            )
            if moved:
                await uow.events.emit("refund.failed", refund.id, _refund_data(refund), at=at)
            return moved
        case RefundStatus.PENDING:
            return False


def _creator_shares(order: OrderRecord) -> list[tuple[str, int]]:
    # A bundle's share goes to the bundle's creator at the bundle's rate (as priced).
    nets = [line.total - line.tax - line.surcharge for line in order.lines]
    amounts = creator_shares(nets, [line.revenue_share for line in order.lines])
    return [(line.creator_id, share) for line, share in zip(order.lines, amounts, strict=True)]


def _order_data(order: OrderRecord) -> dict[str, object]:
    return {
        "id": order.id,
        "customer_id": order.customer_id,
        "total": order.total,
        "currency": order.currency,
        "status": "paid",
    }


def _payment_data(payment: PaymentRecord) -> dict[str, object]:
    return {
        "id": payment.id,
        "order_id": payment.order_id,
        "amount": payment.amount,
        "currency": payment.currency,
        "channel": payment.channel,
        "customer_id": payment.customer_id,
    }


def _refund_data(refund: RefundRecord) -> dict[str, object]:
    return {
        "id": refund.id,
        "payment_id": refund.payment_id,
        "order_id": refund.order_id,
        "amount": refund.amount,
        "currency": refund.currency,
        "reason": refund.reason,
    }
