"""What the checkout page says about a subscription's order: the period it pays for,
the price of each renewal and how renewals are paid."""

from __future__ import annotations

from dataclasses import dataclass

from tuition.channels.base import SupportsAgreements
from tuition.channels.registry import ChannelRegistry
from tuition.domain.agreements import AgreementStatus
from tuition.domain.catalog import MembershipPeriod
from tuition.store.agreements import AgreementRecord
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
    agreement: str | None = None
    """``offer`` (the sign step is linked), ``signed``, or None (no agreement here)."""


async def subscription_terms(
    uow: UnitOfWork, order: OrderRecord, *, registry: ChannelRegistry | None = None
) -> SubscriptionTerms | None:
    """The terms to show for ``order``, or None when it belongs to no subscription.

    With ``registry``, a subscription that renews automatically through a channel that
    debits by agreement gets the agreement step (``agreement``)."""
    if "subscription_id" not in order.metadata:
        return None
    async with uow:
        link = await uow.subscriptions.order_by_order_id(order.id)
        if link is None:
            return None
        sub = await uow.subscriptions.get(link.subscription_id)
        product = (await uow.catalog.products_by_ids([link.product_id])).get(link.product_id)
        agreements = [] if sub is None else await uow.agreements.of_subscription(sub.id)
    if sub is None or product is None or product.period is None:
        return None
    return SubscriptionTerms(
        headline=KINDS[link.kind],
        every=PERIODS[product.period],
        renewal_price=product.price_in(sub.currency) or 0,
        currency=sub.currency,
        auto_renew=sub.auto_renew,
        agreement=_agreement_step(sub.auto_renew, sub.channel, agreements, registry),
    )


def _agreement_step(
    auto_renew: bool,
    channel: str,
    agreements: list[AgreementRecord],
    registry: ChannelRegistry | None,
) -> str | None:
    if any(a.status is AgreementStatus.ACTIVE for a in agreements):
        return "signed"
    if not auto_renew or registry is None or channel not in registry:
        return None
    found = registry.get(channel)
    if isinstance(found, SupportsAgreements) and found.agreements_enabled:
        return "offer"
    return None
