"""What a paid subscription order does to its subscription, inside the one paid path.

services/entitlements.py calls :func:`membership_paid` from the transaction that marks a
membership order paid (services/settlement.py), so a renewal settles exactly like any
other payment: same notification, same recovery, same ledger entry, and the
subscription moves on in that same transaction or not at all.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tuition.domain.access_scope import membership_term
from tuition.domain.catalog import Product
from tuition.domain.orders import OrderStatus
from tuition.domain.subscriptions import SubscriptionStatus, transition
from tuition.store.orders import OrderRecord
from tuition.store.subscriptions import SubscriptionOrder, SubscriptionRecord
from tuition.store.uow import UnitOfWork

S = SubscriptionStatus
_LIVE = (S.TRIALING, S.ACTIVE, S.PAST_DUE)


def subscription_access_until(sub: SubscriptionRecord, grace: timedelta) -> datetime | None:
    """Until when a subscription gives access by itself (trial, or grace when past due).

    An active subscription's paid time is held by its membership grants (so a refund
    that takes a grant back ends that access); a trial and the grace after a failed
    renewal have no grant, so the subscription answers for them.
    """
    match sub.status:
        case S.TRIALING:
            return sub.trial_ends_at
        case S.ACTIVE:
            return None
        case S.PAST_DUE:
            return None if sub.current_period_end is None else sub.current_period_end + grace
        case S.CANCELED | S.EXPIRED:
            return None


async def subscription_term(
    uow: UnitOfWork,
    order_id: str,
    product: Product,
    quantity: int,
    *,
    paid_at: datetime,
    current_end: datetime | None,
) -> tuple[datetime, datetime] | None:
    """The term a subscription's order pays for; None for an order of no subscription.

    A first or renewal order extends from the later of the membership's current end and
    the time the subscription already holds (a trial's end); a plan change pays for the
    rest of the current period only.
    """
    link = await uow.subscriptions.order_by_order_id(order_id)
    if link is None:
        return None
    sub = await uow.subscriptions.get(link.subscription_id)
    held = None
    if sub is not None and sub.status in (S.TRIALING, S.ACTIVE):
        held = sub.current_period_end
    if link.kind == "change" and held is not None and held > paid_at:
        return paid_at, held
    if held is not None and (current_end is None or held > current_end):
        current_end = held
    return membership_term(paid_at, current_end, product, quantity)


async def membership_paid(
    uow: UnitOfWork,
    order: OrderRecord,
    terms: dict[int, tuple[datetime, datetime]],
    *,
    paid_at: datetime,
) -> None:
    """Inside the paid path: if ``order`` belongs to a subscription, record the period it
    paid for and make the subscription active for it. Runs once per order: the caller
    runs only for the one transaction that moved the order to paid."""
    link = await uow.subscriptions.order_by_order_id(order.id)
    if link is None:
        return
    start, end = terms.get(0) or next(iter(terms.values()))
    if not await uow.subscriptions.set_order(
        order.id,
        expected=("pending", "failed"),
        status="paid",
        paid_at=paid_at,
        period_start=start,
        period_end=end,
        next_attempt_at=None,
    ):
        return
    sub = await uow.subscriptions.get(link.subscription_id, for_update=True)
    if sub is None or sub.status not in _LIVE:
        # Paid after the subscription ended: the buyer keeps the grant the money bought.
        return
    if link.kind == "change":
        # The lower plan's time was credited against this order: its grants end now.
        for other in await uow.subscriptions.orders_of(sub.id):
            if other.order_id != order.id and other.status == "paid" and other.period_end == end:
                await uow.orders.revoke(other.order_id, None, paid_at)
        start = sub.current_period_start or start
    moved = await uow.subscriptions.update(
        sub.id,
        expected=_LIVE,
        at=paid_at,
        status=transition(sub.status, S.ACTIVE),
        current_period_start=start,
        current_period_end=end,
        period_index=max(sub.period_index, link.period_index),
        product_id=link.product_id,
    )
    if moved and link.kind == "renewal":
        await uow.events.emit(
            "subscription.renewed", sub.id, event_data(sub, link, end=end), at=paid_at
        )
    elif moved and link.kind == "change":
        await uow.events.emit(
            "subscription.plan_changed",
            sub.id,
            event_data(sub, link, previous_product_id=sub.product_id, product_id=link.product_id),
            at=paid_at,
        )


async def subscription_order_refunded(uow: UnitOfWork, order_id: str, *, at: datetime) -> None:
    """Inside the refund's transaction: a subscription whose current period's order was
    refunded in full is ``canceled`` at once (its access went with the refund's grant).

    A partial refund, or a refund of an earlier period's order, leaves it as it is.
    """
    link = await uow.subscriptions.order_by_order_id(order_id)
    if link is None or link.status != "paid" or link.period_end is None:
        return
    sub = await uow.subscriptions.get(link.subscription_id, for_update=True)
    if sub is None or sub.status not in _LIVE or sub.current_period_end != link.period_end:
        return
    if not await uow.subscriptions.update(
        sub.id,
        expected=(sub.status,),
        at=at,
        status=transition(sub.status, S.CANCELED),
        canceled_at=at,
        ended_at=at,
    ):
        return
    # The next period's order, if one was made, is no longer the subscription's renewal,
    # and it is closed: a charge already on its way (an agreement's) that succeeds after
    # this finds a cancelled order and is refunded, as any payment of a closed order is.
    upcoming = [
        link.order_id
        for link in await uow.subscriptions.orders_of(sub.id)
        if link.period_index == sub.period_index + 1 and link.status in ("pending", "failed")
    ]
    await uow.subscriptions.set_order_status_for_period(
        sub.id, sub.period_index + 1, expected=("pending", "failed"), status="void"
    )
    for upcoming_id in upcoming:
        await uow.orders.set_status(
            upcoming_id,
            expected=OrderStatus.PENDING_PAYMENT,
            target=OrderStatus.CANCELLED,
            at=at,
            closed_at=at,
        )
    await uow.events.emit(
        "subscription.canceled",
        sub.id,
        event_data(sub, link, reason="refunded") | {"status": S.CANCELED.value},
        at=at,
    )


def event_data(
    sub: SubscriptionRecord, link: SubscriptionOrder | None = None, **extra: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": sub.id,
        "customer_id": sub.customer_id,
        "product_id": sub.product_id,
        "status": sub.status.value,
    }
    if link is not None:
        data |= {"order_id": link.order_id, "period_index": link.period_index}
    for key, value in extra.items():
        data[key] = value.isoformat() if isinstance(value, datetime) else value
    return data
