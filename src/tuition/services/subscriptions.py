"""Subscription use cases: subscribe, read, cancel, resume and change plan.

A subscription sells a membership period after period. Its orders are ordinary orders
(priced, paid and booked by the one paid path); ``subscription_orders`` ties each to the
period it pays for, and services/subscription_periods.py moves the subscription on when
one is paid. Renewals and dunning are in services/renewals.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from tuition.clock import Clock
from tuition.domain.catalog import Product, ProductKind
from tuition.domain.errors import Conflict, InvalidRequest, NotFound, ValidationFailed
from tuition.domain.ids import new_id
from tuition.domain.proration import Proration, prorate
from tuition.domain.subscriptions import (
    RenewalPolicy,
    SubscriptionStatus,
    transition,
    validate_trial_days,
)
from tuition.services.orders import (
    CreateOrder,
    ItemRequest,
    OrderPolicy,
    cancel_order,
    create_order,
)
from tuition.services.subscription_periods import event_data
from tuition.store.orders import EntitlementRecord, OrderRecord
from tuition.store.subscriptions import (
    SubscriptionFilter,
    SubscriptionOrder,
    SubscriptionRecord,
)
from tuition.store.uow import UnitOfWork

S = SubscriptionStatus
LIVE = (S.TRIALING, S.ACTIVE, S.PAST_DUE)


@dataclass(frozen=True, slots=True)
class NewSubscription:
    customer_id: str
    product_id: str
    channel: str
    method: str
    auto_renew: bool = True
    trial_days: int | None = None
    coupon_code: str | None = None
    currency: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # A promoter's referral code and the partner platform that sold it: every order of
    # the subscription (the first and each renewal) is placed with them.
    referral_code: str | None = None
    partner_id: str | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionDeps:
    clock: Clock
    orders: OrderPolicy
    renewal: RenewalPolicy = field(default_factory=RenewalPolicy)


@dataclass(frozen=True, slots=True)
class Subscribed:
    subscription: SubscriptionRecord
    order: OrderRecord | None


@dataclass(frozen=True, slots=True)
class PlanChange:
    """A plan change as shown before it is confirmed (and as made once it is)."""

    subscription: SubscriptionRecord
    product_id: str
    proration: Proration
    order: OrderRecord | None = None


def _not_found(subscription_id: str) -> NotFound:
    return NotFound(
        f"no subscription {subscription_id!r}",
        code="subscription_not_found",
        param="subscription_id",
    )


async def _membership(uow: UnitOfWork, product_id: str, *, param: str) -> Product:
    product = (await uow.catalog.products_by_ids([product_id])).get(product_id)
    if product is None:
        raise NotFound(f"no product {product_id!r}", code="product_not_found", param=param)
    if product.kind is not ProductKind.MEMBERSHIP:
        raise InvalidRequest(
            f"product {product_id} is a {product.kind}; only memberships are subscribed to",
            code="not_a_membership",
            param=param,
        )
    if not product.is_active:
        raise InvalidRequest(
            f"product {product_id} is archived", code="product_archived", param=param
        )
    return product


def _currency(product: Product, wanted: str | None) -> str:
    if wanted is not None:
        if wanted not in product.prices:
            raise InvalidRequest(
                f"product {product.id} has no price in {wanted}",
                code="currency_not_priced",
                param="currency",
            )
        return wanted
    return "CNY" if "CNY" in product.prices else sorted(product.prices)[0]


def _price(product: Product, currency: str, *, param: str) -> int:
    price = product.price_in(currency)
    if price is None:
        raise InvalidRequest(
            f"product {product.id} has no price in {currency}",
            code="currency_not_priced",
            param=param,
        )
    return price


def period_order(
    sub: SubscriptionRecord, order: OrderRecord, *, index: int, kind: str, product_id: str
) -> SubscriptionOrder:
    return SubscriptionOrder(
        order_id=order.id,
        subscription_id=sub.id,
        period_index=index,
        kind=kind,
        product_id=product_id,
        amount=order.total,
        status="pending",
        attempts=0,
        created_at=order.created_at,
    )


async def _check_attribution(uow: UnitOfWork, cmd: NewSubscription) -> None:
    """A subscription with a trial places no order yet: its referral code and partner
    are checked now (the first order checks them again, with the split)."""
    code = cmd.referral_code
    if code is not None and await uow.commissions.promoter_by_code(code) is None:
        raise ValidationFailed(
            f"no promoter has the referral code {code!r}",
            code="referral_code_unknown",
            param="referral_code",
        )
    if cmd.partner_id is not None and await uow.commissions.partner(cmd.partner_id) is None:
        raise ValidationFailed(
            f"no partner platform {cmd.partner_id!r}",
            code="partner_not_found",
            param="partner_id",
        )


async def create_subscription(
    cmd: NewSubscription, uow: UnitOfWork, *, deps: SubscriptionDeps
) -> Subscribed:
    """Subscribe ``cmd.customer_id`` to a membership.

    With a trial the subscription starts ``trialing`` and its first charge is the
    renewal at the trial's end. Without one it starts with its first order (at the
    plan's first-period price, if set), which the buyer pays on the checkout page.
    """
    now = deps.clock.now()
    trial_days = validate_trial_days(cmd.trial_days)
    if cmd.channel not in deps.orders.channel_fee_rates:
        raise InvalidRequest(
            f"unknown channel {cmd.channel!r}; known: "
            + ", ".join(sorted(deps.orders.channel_fee_rates)),
            code="channel_unknown",
            param="channel",
        )
    async with uow:
        product = await _membership(uow, cmd.product_id, param="product_id")
        currency = _currency(product, cmd.currency)
        first_prices = await uow.memberships.first_period_prices(product.id)
        await _check_attribution(uow, cmd)
    record = SubscriptionRecord(
        id=new_id("sub"),
        customer_id=cmd.customer_id,
        product_id=product.id,
        currency=currency,
        status=S.TRIALING if trial_days else S.ACTIVE,
        channel=cmd.channel,
        method=cmd.method,
        auto_renew=cmd.auto_renew,
        cancel_at_period_end=False,
        trial_ends_at=now + timedelta(days=trial_days) if trial_days else None,
        current_period_start=now if trial_days else None,
        current_period_end=now + timedelta(days=trial_days) if trial_days else None,
        period_index=0,
        credit_balance=0,
        metadata=dict(cmd.metadata),
        canceled_at=None,
        ended_at=None,
        created_at=now,
        updated_at=now,
        referral_code=cmd.referral_code,
        partner_id=cmd.partner_id,
    )
    order = None
    if not trial_days:
        unit_prices = {}
        first = first_prices.get(currency)
        if first is not None and first < _price(product, currency, param="product_id"):
            unit_prices[product.id] = first
        order = await create_order(
            CreateOrder(
                customer_id=cmd.customer_id,
                currency=currency,
                items=(ItemRequest(product.id),),
                coupon_code=cmd.coupon_code,
                metadata={"subscription_id": record.id},
                unit_prices=unit_prices,
                referral_code=cmd.referral_code,
                partner_id=cmd.partner_id,
            ),
            uow,
            clock=deps.clock,
            policy=deps.orders,
        )
    async with uow:
        added = await uow.subscriptions.add(record)
        if added and order is not None:
            await uow.subscriptions.add_order(
                period_order(record, order, index=1, kind="first", product_id=product.id)
            )
        if added:
            await uow.events.emit("subscription.created", record.id, event_data(record), at=now)
            await uow.commit()
    if not added:
        if order is not None:
            await cancel_order(uow, order.id, clock=deps.clock)
        raise Conflict(
            f"customer {cmd.customer_id} already has a live subscription to {product.id}",
            code="subscription_exists",
            param="product_id",
        )
    return Subscribed(record, order)


async def get_subscription(uow: UnitOfWork, subscription_id: str) -> SubscriptionRecord:
    async with uow:
        found = await uow.subscriptions.get(subscription_id)
    if found is None:
        raise _not_found(subscription_id)
    return found


async def subscription_orders(uow: UnitOfWork, subscription_id: str) -> list[SubscriptionOrder]:
    async with uow:
        return await uow.subscriptions.orders_of(subscription_id)


async def list_subscriptions(
    uow: UnitOfWork, filt: SubscriptionFilter, *, limit: int, starting_after: str | None
) -> tuple[list[SubscriptionRecord], bool]:
    async with uow:
        return await uow.subscriptions.find(filt, limit=limit, starting_after=starting_after)


async def cancel_subscription(
    uow: UnitOfWork, subscription_id: str, *, at_period_end: bool, clock: Clock
) -> SubscriptionRecord:
    """Cancel now (access ends with it), or at the period's end (nothing renews)."""
    now = clock.now()
    async with uow:
        sub = await uow.subscriptions.get(subscription_id, for_update=True)
        if sub is None:
            raise _not_found(subscription_id)
        if at_period_end and sub.status in (S.ACTIVE, S.TRIALING):
            if sub.cancel_at_period_end:
                return sub  # asked before: nothing changes, nothing is written or audited
            moved = await uow.subscriptions.update(
                sub.id, expected=(sub.status,), at=now, cancel_at_period_end=True, canceled_at=now
            )
            event = None
        else:
            transition(sub.status, S.CANCELED)
            moved = await uow.subscriptions.update(
                sub.id,
                expected=(sub.status,),
                at=now,
                status=S.CANCELED,
                canceled_at=now,
                ended_at=now,
            )
            event = "subscription.canceled"
        if not moved:
            raise Conflict(f"subscription {sub.id} changed meanwhile; fetch it again")
        current = await uow.subscriptions.get(sub.id)
        assert current is not None
        if event is not None:
            await uow.events.emit(event, sub.id, event_data(current), at=now)
            await _revoke_current_grants(uow, current, at=now)
        await uow.commit()
    return current


async def _revoke_current_grants(uow: UnitOfWork, sub: SubscriptionRecord, *, at: Any) -> None:
    """An immediate cancel ends the access the paid periods still hold."""
    for link in await uow.subscriptions.orders_of(sub.id):
        if link.status == "paid" and link.period_end is not None and link.period_end > at:
            await uow.orders.revoke(link.order_id, None, at)


async def resume_subscription(
    uow: UnitOfWork, subscription_id: str, *, clock: Clock
) -> SubscriptionRecord:
    """Undo a cancel at period end while the period runs."""
    now = clock.now()
    async with uow:
        sub = await uow.subscriptions.get(subscription_id, for_update=True)
        if sub is None:
            raise _not_found(subscription_id)
        if sub.status not in (S.ACTIVE, S.TRIALING) or not sub.cancel_at_period_end:
            raise Conflict(
                f"subscription {sub.id} is {sub.status} and not set to cancel; "
                "only a cancel at period end can be resumed",
                code="not_resumable",
                param="status",
            )
        if not await uow.subscriptions.update(
            sub.id, expected=(sub.status,), at=now, cancel_at_period_end=False, canceled_at=None
        ):
            raise Conflict(f"subscription {sub.id} changed meanwhile; fetch it again")
        current = await uow.subscriptions.get(sub.id)
        assert current is not None
        await uow.events.emit("subscription.resumed", sub.id, event_data(current), at=now)
        await uow.commit()
    return current


async def change_plan(
    uow: UnitOfWork,
    subscription_id: str,
    product_id: str,
    *,
    confirm: bool,
    deps: SubscriptionDeps,
) -> PlanChange:
    """Prorate a change to ``product_id``; make it only when ``confirm`` is set.

    An upgrade raises an order for the difference (the plan switches when it is paid);
    a downgrade switches at once and carries the difference to the next renewal.
    """
    now = deps.clock.now()
    async with uow:
        sub = await uow.subscriptions.get(subscription_id)
        if sub is None:
            raise _not_found(subscription_id)
        if sub.status is not S.ACTIVE or sub.current_period_end is None:
            raise Conflict(
                f"subscription {sub.id} is {sub.status} without a paid period; "
                "only an active subscription changes plan",
                code="not_changeable",
                param="status",
            )
        if product_id == sub.product_id:
            raise ValidationFailed(
                "the subscription is already on this plan", code="same_plan", param="product_id"
            )
        new = await _membership(uow, product_id, param="product_id")
        links = await uow.subscriptions.orders_of(sub.id)
        paid = [x for x in links if x.status == "paid" and x.period_end == sub.current_period_end]
        paid_amount = sum(x.amount for x in paid)
        assert sub.current_period_start is not None
        proration = prorate(
            period_start=sub.current_period_start,
            period_end=sub.current_period_end,
            at=now,
            paid_for_period=paid_amount,
            new_period_price=_price(new, sub.currency, param="product_id"),
        )
    if not confirm:
        return PlanChange(sub, product_id, proration)
    if proration.amount_due > 0:
        return await _upgrade(uow, sub, new, proration, deps=deps)
    return await _downgrade(uow, sub, new, proration, paid, deps=deps)


async def _upgrade(
    uow: UnitOfWork,
    sub: SubscriptionRecord,
    new: Product,
    proration: Proration,
    *,
    deps: SubscriptionDeps,
) -> PlanChange:
    order = await create_order(
        CreateOrder(
            customer_id=sub.customer_id,
            currency=sub.currency,
            items=(ItemRequest(new.id),),
            metadata={"subscription_id": sub.id, "change": "upgrade"},
            unit_prices={new.id: proration.amount_due},
        ),
        uow,
        clock=deps.clock,
        policy=deps.orders,
    )
    async with uow:
        added = await uow.subscriptions.add_order(
            period_order(sub, order, index=sub.period_index, kind="change", product_id=new.id)
        )
        await uow.commit()
    if not added:
        await cancel_order(uow, order.id, clock=deps.clock)
        raise Conflict(
            f"subscription {sub.id} already changed plan in this period",
            code="plan_change_pending",
            param="product_id",
        )
    return PlanChange(sub, new.id, proration, order)


async def _downgrade(
    uow: UnitOfWork,
    sub: SubscriptionRecord,
    new: Product,
    proration: Proration,
    paid: list[SubscriptionOrder],
    *,
    deps: SubscriptionDeps,
) -> PlanChange:
    now = deps.clock.now()
    async with uow:
        moved = await uow.subscriptions.update(
            sub.id,
            expected=(S.ACTIVE,),
            at=now,
            product_id=new.id,
            credit_balance=sub.credit_balance + proration.carried_credit,
        )
        if not moved:
            raise Conflict(f"subscription {sub.id} changed meanwhile; fetch it again")
        # The higher plan's time was credited back: its grants end now. The lower plan
        # is granted on the period's latest paid order until the period ends, so a
        # refund of that order takes it back like any other grant.
        for link in paid:
            await uow.orders.revoke(link.order_id, None, now)
        if paid:
            latest = max(paid, key=lambda x: (x.paid_at or now, x.order_id))
            await uow.orders.grant(
                [
                    EntitlementRecord(
                        id=new_id("ent"),
                        customer_id=sub.customer_id,
                        product_id=new.id,
                        order_id=latest.order_id,
                        line_index=0,
                        source_product_id=None,
                        granted_at=now,
                        expires_at=sub.current_period_end,
                        revoked_at=None,
                    )
                ]
            )
        current = await uow.subscriptions.get(sub.id)
        assert current is not None
        await uow.events.emit(
            "subscription.plan_changed",
            sub.id,
            event_data(
                current, credit=proration.carried_credit, previous_product_id=sub.product_id
            ),
            at=now,
        )
        await uow.commit()
    return PlanChange(current, new.id, proration)
