"""The one paid path: what happens when a gateway says a payment settled (refunds:
services/refund_settlement.py).

Both a verified notification and the recovery job's query end here, inside the caller's
unit of work, so a payment is settled the same way whichever arrives first, and only
once: every step is a compare-and-set or a UNIQUE insert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from tuition.channels.base import PaymentState
from tuition.domain.catalog import ProductKind
from tuition.domain.errors import IllegalTransition
from tuition.domain.ledger import creator_shares, payment_succeeded_entry
from tuition.domain.orders import OrderStatus
from tuition.domain.payments import PAYMENT_TRANSITIONS, PaymentStatus, channel_fee
from tuition.domain.wallet import WALLET_CHANNEL, LotKind, TransactionCause
from tuition.services.balances import credit, topup_source
from tuition.services.orders import mark_order_paid
from tuition.services.refund_settlement import hold_payment, open_refund
from tuition.store.orders import OrderRecord
from tuition.store.payments import PaymentRecord
from tuition.store.uow import UnitOfWork

_OPEN = (PaymentStatus.CREATED, PaymentStatus.PENDING)
_MAY_SUCCEED = tuple(s for s in PaymentStatus if PaymentStatus.SUCCEEDED in PAYMENT_TRANSITIONS[s])
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
        expected=_MAY_SUCCEED,
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
        await _book_paid_order(uow, payment, order, fee=fee, paid_at=paid_at, at=at)
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
    await hold_payment(uow, payment, payment.amount, at)
    refund = await open_refund(uow, payment, amount=payment.amount, reason=reason, at=at)
    return Settled(changed=True, refunds_to_submit=[refund.id])


async def settle_wallet_payment(
    uow: UnitOfWork, payment: PaymentRecord, order: OrderRecord, *, at: datetime
) -> None:
    """Inside the unit of work that debited the balance: the payment from balance
    succeeds and pays the order (it is ``pending_payment``: the caller checked)."""
    moved = await uow.payments.set_status(
        payment.id,
        expected=_OPEN,
        target=PaymentStatus.SUCCEEDED,
        at=at,
        fee=0,
        succeeded_at=at,
    )
    if not moved or not await mark_order_paid(uow, order, at=at):
        raise IllegalTransition(f"order {order.id} was paid meanwhile", code="order_not_payable")
    await uow.events.emit("payment.succeeded", payment.id, _payment_data(payment), at=at)
    await _book_paid_order(uow, payment, order, fee=0, paid_at=at, at=at)


async def _book_paid_order(
    uow: UnitOfWork,
    payment: PaymentRecord,
    order: OrderRecord,
    *,
    fee: int,
    paid_at: datetime,
    at: datetime,
) -> None:
    """The paid order's entry (creator shares; top-ups credit the buyer's wallet, a
    liability, never revenue), the wallet credits themselves, and ``order.paid``."""
    credits = await topup_credits(uow, order)
    from_wallet = payment.channel == WALLET_CHANNEL
    # The wallet before the ledger, on every path that touches both: one lock order,
    # so a top-up, a payment from balance and a refund into it never deadlock.
    for line_index, amount in credits:
        await credit(
            uow,
            customer_id=order.customer_id,
            currency=order.currency,
            amount=amount,
            kind=LotKind.TOPUP,
            source=topup_source(order.id, line_index),
            cause=TransactionCause.TOPUP,
            cause_id=f"{order.id}:{line_index}",
            description=f"top-up, order {order.id}",
            created_by="system",
            at=at,
        )
    await uow.ledger.post(
        payment_succeeded_entry(
            payment_id=payment.id,
            channel=payment.channel,
            currency=payment.currency,
            amount=payment.amount,
            fee=fee,
            tax=order.tax_total,
            creator_shares=creator_shares_of(order),
            wallet_credits=[(order.customer_id, amount) for _, amount in credits],
            paid_from_wallet=order.customer_id if from_wallet else None,
            occurred_at=paid_at,
        ),
        at=at,
    )
    await uow.events.emit("order.paid", order.id, _order_data(order), at=at)


async def topup_credits(uow: UnitOfWork, order: OrderRecord) -> list[tuple[int, int]]:
    """(line index, amount credited) for each top-up line of the order."""
    topups = [line for line in order.lines if line.kind == ProductKind.TOPUP.value]
    if not topups:
        return []
    catalog = await uow.catalog.products_by_ids([line.product_id for line in topups])
    credits = []
    for line in topups:
        product = catalog.get(line.product_id)
        credit_each = product.topup_credit if product is not None else None
        if credit_each is None:
            raise AssertionError(f"top-up {line.product_id} of order {order.id} has no credit")
        credits.append((line.line_index, credit_each * line.quantity))
    return credits


def creator_shares_of(order: OrderRecord) -> list[tuple[str, int]]:
    """Each line's creator share. A bundle's share goes to the bundle's creator at the
    bundle's rate (as priced); a top-up has none (it is the buyer's money, not a sale)."""
    nets = [
        0 if line.kind == ProductKind.TOPUP.value else line.total - line.tax - line.surcharge
        for line in order.lines
    ]
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
