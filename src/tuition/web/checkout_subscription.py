"""What the checkout page says about a subscription's order: the period it pays for,
the price of each renewal and how renewals are paid."""

from __future__ import annotations

from dataclasses import dataclass

from tuition.domain.catalog import MembershipPeriod
from tuition.store.orders import OrderRecord
from tuition.store.uow import UnitOfWork
from tuition.web.i18n import N_

PERIODS = {
    MembershipPeriod.MONTH: N_("every month"),
    MembershipPeriod.QUARTER: N_("every three months"),
    MembershipPeriod.YEAR: N_("every year"),
}
KINDS = {
    "first": N_("This pays for the first period of your subscription."),
    "renewal": N_("This pays for the next period of your subscription."),
    "change": N_("This pays for the rest of this period on the new plan."),
}


@dataclass(frozen=True, slots=True)
class SubscriptionTerms:
    headline: str
    every: str
    renewal_price: int
    currency: str
    auto_renew: bool


async def subscription_terms(uow: UnitOfWork, order: OrderRecord) -> SubscriptionTerms | None:
    """The terms to show for ``order``, or None when it belongs to no subscription."""
    if "subscription_id" not in order.metadata:
        return None
    async with uow:
        link = await uow.subscriptions.order_by_order_id(order.id)
        if link is None:
            return None
        sub = await uow.subscriptions.get(link.subscription_id)
        product = (await uow.catalog.products_by_ids([link.product_id])).get(link.product_id)
    if sub is None or product is None or product.period is None:
        return None
    return SubscriptionTerms(
        headline=KINDS[link.kind],
        every=PERIODS[product.period],
        renewal_price=product.price_in(sub.currency) or 0,
        currency=sub.currency,
        auto_renew=sub.auto_renew,
    )
