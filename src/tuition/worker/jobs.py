"""Job handlers: recovery of lost notifications, order expiry, closing the attempts an
order no longer needs, refund submission.

A handler returns ``None`` when the work is done, or a time to look again (the job stays
queued); raising records the error and retries with backoff. Every handler is safe to run
again after a crash at any point: each step is a compare-and-set or asks the gateway,
which de-duplicates by our ids.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from tuition.domain.errors import Conflict, IllegalTransition
from tuition.domain.orders import OrderStatus
from tuition.domain.payments import PaymentStatus, RefundStatus
from tuition.domain.payouts import PayoutStatus
from tuition.domain.wallet import WALLET_CHANNEL
from tuition.services.closing import close_open_payments
from tuition.services.earnings import RELEASE_JOB, release_earnings
from tuition.services.orders import expire_order
from tuition.services.payments import PaymentDeps, reconcile_payment, submit_refund
from tuition.services.payouts import RECHECK as PAYOUT_RECHECK
from tuition.services.payouts import SUBMIT_JOB, PayoutDeps, submit_payout
from tuition.store.uow import UnitOfWork

_OPEN = (PaymentStatus.CREATED, PaymentStatus.PENDING)

Handler = Callable[[UnitOfWork, str, PaymentDeps], Awaitable[datetime | None]]

RECHECK = timedelta(seconds=60)
MAX_RECHECK = timedelta(minutes=5)
GIVE_UP_POLLING = timedelta(days=1)


def recheck_after(age: timedelta) -> timedelta:
    """How long an open payment of ``age`` waits before its next query: as long as it
    has been open, between one and five minutes (checks at 1, 2, 4, 8, 13, 18, ...
    minutes). Attempts never paid thus cost a handful of queries before their order
    expires, and each waits at the back of the queue, behind what is due now."""
    return min(max(age, RECHECK), MAX_RECHECK)


async def reconcile(uow: UnitOfWork, payment_id: str, deps: PaymentDeps) -> datetime | None:
    """Query the channel for a payment whose notification has not come.

    The job is queued with the payment, due ``recover_after`` after it was created; it
    runs again on the schedule of :func:`recheck_after` while the payment is open.
    """
    async with uow:
        found = await uow.payments.get(payment_id)
    if found is None or found.status not in _OPEN or found.channel == WALLET_CHANNEL:
        return None  # settled by its notification (a held balance part: by its channel's)
    now = deps.clock.now()
    if found.created_at + deps.recover_after > now:
        return found.created_at + deps.recover_after  # this worker waits longer
    payment = await reconcile_payment(uow, payment_id, deps=deps)
    if payment.status in _OPEN:
        now = deps.clock.now()
        age = now - payment.created_at
        if age > GIVE_UP_POLLING:
            return None  # the expiry job closes it on the channel; nothing more to learn
        return now + recheck_after(age)
    return None


async def expire(uow: UnitOfWork, order_id: str, deps: PaymentDeps) -> datetime | None:
    """Close the order's open payments on their channels, then expire the order.

    A close that reports "already paid" takes the paid path instead, so a buyer who paid
    at the last second ends with a paid order, never an expired one that kept the money.
    """
    async with uow:
        order = await uow.orders.get(order_id, with_lines=False)
    if order is None or order.status is not OrderStatus.PENDING_PAYMENT:
        return None
    if order.expires_at > deps.clock.now():
        return order.expires_at
    await close_open_payments(uow, order_id, deps=deps)  # a timeout raises: retried later
    # Paid meanwhile (through the close above or a notification): nothing to expire.
    with contextlib.suppress(Conflict, IllegalTransition):
        await expire_order(uow, order_id, clock=deps.clock)
    return None


async def close_attempts(uow: UnitOfWork, order_id: str, deps: PaymentDeps) -> datetime | None:
    """Close the other open attempts of an order one attempt paid (queued with
    ``order.paid``), so none lingers open; one the buyer paid too is refunded."""
    await close_open_payments(uow, order_id, deps=deps)  # a timeout raises: retried later
    return None


async def refund(uow: UnitOfWork, refund_id: str, deps: PaymentDeps) -> datetime | None:
    """Send a pending refund to its channel; look again while the channel is settling it."""
    status = await submit_refund(uow, refund_id, deps=deps)
    if status is RefundStatus.PENDING:
        return deps.clock.now() + RECHECK
    return None


async def reconcile_day(uow: UnitOfWork, subject: str, deps: PaymentDeps) -> datetime | None:
    """Reconcile one channel's business day against its bill (services/reconciliation.py)."""
    from tuition.services import reconciliation

    return await reconciliation.run_job(uow, subject, deps.registry, deps.clock, deps.hold)


async def release(uow: UnitOfWork, payment_id: str, deps: PaymentDeps) -> datetime | None:
    """Make a payment's earnings available when its refund hold ends."""
    return await release_earnings(uow, payment_id, clock=deps.clock, rates=deps.fx_rates)


async def payout(uow: UnitOfWork, payout_id: str, deps: PaymentDeps) -> datetime | None:
    """Send a payout to its transfer channel; look again while it is processing."""
    status = await submit_payout(
        uow,
        payout_id,
        deps=PayoutDeps(
            clock=deps.clock, registry=deps.registry, base_url=deps.base_url, mode=deps.mode
        ),
    )
    if status is PayoutStatus.PROCESSING:
        return deps.clock.now() + PAYOUT_RECHECK
    return None


HANDLERS: dict[str, Handler] = {
    "reconcile_payment": reconcile,
    "expire_order": expire,
    "submit_refund": refund,
    "close_attempts": close_attempts,
    RELEASE_JOB: release,
    SUBMIT_JOB: payout,
    "reconcile_day": reconcile_day,
}
