"""The dependencies of the worker's subscription pass, built from the settings."""

from __future__ import annotations

from datetime import timedelta

from tuition.config import Settings
from tuition.container import Container
from tuition.domain.subscriptions import RenewalPolicy
from tuition.services.orders import OrderPolicy
from tuition.services.renewals import RenewalDeps
from tuition.web.links import checkout_url


def renewal_policy(settings: Settings) -> RenewalPolicy:
    return RenewalPolicy(
        lead=timedelta(days=settings.subscription_renewal_lead_days),
        retry_after=tuple(timedelta(days=d) for d in settings.subscription_retry_days),
        grace=timedelta(days=settings.subscription_grace_days),
    )


def renewal_deps(container: Container) -> RenewalDeps:
    settings = container.settings
    return RenewalDeps(
        clock=container.clock,
        orders=OrderPolicy(
            order_ttl=timedelta(seconds=settings.order_ttl_seconds),
            channel_fee_rates=settings.channel_fee_rates,
            risk=settings.risk_thresholds(),  # subscription orders are assessed when raised
            rates=container.rate_source(),  # a partner's share: as for any order
        ),
        policy=renewal_policy(settings),
        checkout_link=lambda order_id: checkout_url(settings, order_id),
        payments=container.payment_deps(),
    )
