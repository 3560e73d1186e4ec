"""Closing an unpaid order: its open payment attempts are closed on their channels first.

A buyer must not be able to pay an attempt of an order that is no longer for sale: the
platform would then pay the channel's fee on an automatic refund. So cancel and expiry
both close each open attempt at the gateway before the order moves. A close that answers
"already paid" takes the paid path instead, so a buyer who paid at the last second ends
with a paid order, never a closed one that kept the money.
"""

from __future__ import annotations

from tuition.channels.base import CloseOutcome
from tuition.domain.errors import NotFound
from tuition.domain.orders import OrderStatus, transition
from tuition.domain.payments import PaymentStatus
from tuition.services.orders import cancel_order as close_cancelled
from tuition.services.payments import PaymentDeps, reconcile_payment
from tuition.services.tender import end_payment
from tuition.store.orders import OrderRecord
from tuition.store.uow import UnitOfWork


async def close_open_payments(uow: UnitOfWork, order_id: str, *, deps: PaymentDeps) -> bool:
    """Close the order's open attempts on their channels; True if one turned out paid.

    A channel timeout raises (ChannelTimeout) and leaves the rest for a retry.
    """
    async with uow:
        open_payments = await uow.payments.open_for_order(order_id)
    paid = False
    for payment in open_payments:
        channel = deps.registry.get(payment.channel)
        outcome = await channel.close_payment(payment.id)
        if outcome is CloseOutcome.ALREADY_PAID:
            settled = await reconcile_payment(uow, payment.id, deps=deps)
            if settled.status is not PaymentStatus.SUCCEEDED:
                raise RuntimeError(f"{payment.id}: channel says paid but reports {settled.status}")
            paid = True
            continue
        now = deps.clock.now()
        # An attempt the gateway never saw (the API died creating it) is closed here too,
        # with the reason recorded.
        unseen = outcome is CloseOutcome.NOT_FOUND
        async with uow:
            await end_payment(
                uow,
                payment,
                PaymentStatus.CLOSED,
                at=now,
                failure_code="trade_not_found" if unseen else None,
                failure_message="the gateway has no such trade; closed with its order"
                if unseen
                else None,
            )
            await uow.commit()
    return paid


async def cancel_order(uow: UnitOfWork, order_id: str, *, deps: PaymentDeps) -> OrderRecord:
    """Cancel an unpaid order: close its attempts on their channels, then the order.

    409 ``illegal_transition`` when it is not pending payment, or turned out paid while
    its attempts were being closed.
    """
    async with uow:
        order = await uow.orders.get(order_id, with_lines=False)
    if order is None:
        raise NotFound(f"no order {order_id!r}", code="order_not_found", param="order_id")
    transition(order.status, OrderStatus.CANCELLED)  # raises, naming both states
    await close_open_payments(uow, order_id, deps=deps)
    return await close_cancelled(uow, order_id, clock=deps.clock)
