"""Job handlers: recovery of lost notifications, order expiry, refund submission.

A handler returns ``None`` when the work is done, or a time to look again (the job stays
queued); raising records the error and retries with backoff. Every handler is safe to run
again after a crash at any point: each step is a compare-and-set or asks the gateway,
which de-duplicates by our ids.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from tuition.channels.base import CloseOutcome
from tuition.domain.errors import Conflict, IllegalTransition
from tuition.domain.orders import OrderStatus
from tuition.domain.payments import PaymentStatus, RefundStatus
from tuition.services.orders import expire_order
from tuition.services.payments import PaymentDeps, reconcile_payment, submit_refund
from tuition.store.uow import UnitOfWork

Handler = Callable[[UnitOfWork, str, PaymentDeps], Awaitable[datetime | None]]

RECHECK = timedelta(seconds=60)
GIVE_UP_POLLING = timedelta(days=1)


async def reconcile(uow: UnitOfWork, payment_id: str, deps: PaymentDeps) -> datetime | None:
    """Query the channel for a payment whose notification has not come."""
    payment = await reconcile_payment(uow, payment_id, deps=deps)
    if payment.status in (PaymentStatus.CREATED, PaymentStatus.PENDING):
        if deps.clock.now() - payment.created_at > GIVE_UP_POLLING:
            return None  # the expiry job closes it on the channel; nothing more to learn
        return deps.clock.now() + RECHECK
    return None


async def expire(uow: UnitOfWork, order_id: str, deps: PaymentDeps) -> datetime | None:
    """Close the order's open payments on their channels, then expire the order.

    A close that reports "already paid" takes the paid path instead, so a buyer who paid
    at the last second ends with a paid order, never an expired one that kept the money.
    """
    async with uow:
        order = await uow.orders.get(order_id, with_lines=False)
        open_payments = await uow.payments.open_for_order(order_id) if order else []
    if order is None or order.status is not OrderStatus.PENDING_PAYMENT:
        return None
    now = deps.clock.now()
    if order.expires_at > now:
        return order.expires_at
    for payment in open_payments:
        channel = deps.registry.get(payment.channel)
        outcome = await channel.close_payment(payment.id)  # a timeout raises: retried later
        if outcome is CloseOutcome.ALREADY_PAID:
            settled = await reconcile_payment(uow, payment.id, deps=deps)
            if settled.status is not PaymentStatus.SUCCEEDED:
                raise RuntimeError(f"{payment.id}: channel says paid but reports {settled.status}")
            continue
        async with uow:
            if await uow.payments.set_status(
                payment.id,
                expected=(PaymentStatus.CREATED, PaymentStatus.PENDING),
                target=PaymentStatus.CLOSED,
                at=now,
                closed_at=now,
            ):
                await uow.events.emit(
                    "payment.closed", payment.id, {"id": payment.id, "order_id": order_id}, at=now
                )
            await uow.commit()
    # Paid meanwhile (through the close above or a notification): nothing to expire.
    with contextlib.suppress(Conflict, IllegalTransition):
        await expire_order(uow, order_id, clock=deps.clock)
    return None


async def refund(uow: UnitOfWork, refund_id: str, deps: PaymentDeps) -> datetime | None:
    """Send a pending refund to its channel; look again while the channel is settling it."""
    status = await submit_refund(uow, refund_id, deps=deps)
    if status is RefundStatus.PENDING:
        return deps.clock.now() + RECHECK
    return None


HANDLERS: dict[str, Handler] = {
    "reconcile_payment": reconcile,
    "expire_order": expire,
    "submit_refund": refund,
}
