"""Renewals and dunning: the worker's subscription pass.

One pass (:func:`run_renewals`) does four things, each safe to run twice, on two
workers at once, or again after a crash at any point:

1. **prepare**: a renewal order for each subscription whose period ends within the
   lead time. ``subscription_orders`` is UNIQUE per (subscription, period, kind): the
   worker that loses the insert cancels the order it made, so one order per period
   exists and only that one is ever charged or shown. A crash between making the order
   and recording it leaves an unlinked order that simply expires.
2. **lapse**: at the period's end, a subscription set to cancel is ``canceled``; one
   whose renewal is unpaid becomes ``past_due`` (``subscription.payment_failed`` and
   ``subscription.past_due``), keeping access through the grace period.
3. **dun**: each retry on the schedule is another ``subscription.payment_failed`` with
   the link to pay by hand.
4. **expire**: a ``past_due`` subscription whose grace has run out is ``expired``: its
   access ends and its renewal order is cancelled.

Renewal orders are ordinary orders: paid on the checkout page through the one paid
path, which moves the subscription on (services/subscription_periods.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from tuition.clock import Clock
from tuition.domain.catalog import period_end
from tuition.domain.errors import Conflict, IllegalTransition, NotFound, ValidationFailed
from tuition.domain.orders import OrderStatus
from tuition.domain.payments import PaymentStatus
from tuition.domain.risk import RiskBlocked
from tuition.domain.subscriptions import RenewalPolicy, SubscriptionStatus, transition
from tuition.logs import get_logger
from tuition.services.agreements import (
    agreement_channel,
    charge_renewal,
    end_agreements_of_ended_subscriptions,
)
from tuition.services.orders import (
    CreateOrder,
    ItemRequest,
    OrderPolicy,
    cancel_order,
    create_order,
)
from tuition.services.payments import PaymentDeps
from tuition.services.subscription_periods import event_data
from tuition.services.subscriptions import period_order
from tuition.store.subscriptions import SubscriptionOrder, SubscriptionRecord
from tuition.store.uow import UnitOfWork

log = get_logger(__name__)

S = SubscriptionStatus
_UNPAID_ENDS = (OrderStatus.EXPIRED, OrderStatus.CANCELLED)


@dataclass(frozen=True, slots=True)
class RenewalDeps:
    clock: Clock
    orders: OrderPolicy
    policy: RenewalPolicy
    checkout_link: Callable[[str], str]
    """The buyer's link to pay an order by hand (built below services)."""
    payments: PaymentDeps | None = None
    """The channels, to charge renewals by agreement; None: every renewal is by hand."""


@dataclass(slots=True)
class RenewalRun:
    prepared: list[str] = field(default_factory=list)
    charged: list[str] = field(default_factory=list)
    past_due: list[str] = field(default_factory=list)
    reminded: list[str] = field(default_factory=list)
    canceled: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    unsigned: list[str] = field(default_factory=list)


async def run_renewals(uow: UnitOfWork, *, deps: RenewalDeps, limit: int = 100) -> RenewalRun:
    """One pass of the subscription clock (see the module docstring)."""
    run = RenewalRun()
    now = deps.clock.now()
    async with uow:
        due = await uow.subscriptions.due_for_renewal(before=now + deps.policy.lead, limit=limit)
    for sub in due:
        if await prepare_renewal(uow, sub, deps=deps):
            run.prepared.append(sub.id)
        if await _charge_prepared(uow, sub, deps=deps):
            run.charged.append(sub.id)
    async with uow:
        ended = await uow.subscriptions.ended_before(
            statuses=[S.ACTIVE.value, S.TRIALING.value], before=now, limit=limit
        )
    for sub in ended:
        outcome = await _lapse(uow, sub, deps=deps)
        if outcome == "canceled":
            run.canceled.append(sub.id)
        elif outcome == "past_due":
            run.past_due.append(sub.id)
    async with uow:
        retries = await uow.subscriptions.retries_due(now=now, limit=limit)
    for link in retries:
        if await _remind(uow, link, deps=deps):
            run.reminded.append(link.subscription_id)
    async with uow:
        lapsed = await uow.subscriptions.ended_before(
            statuses=[S.PAST_DUE.value], before=now - deps.policy.grace, limit=limit
        )
    for sub in lapsed:
        if await _expire(uow, sub, deps=deps):
            run.expired.append(sub.id)
    async with uow:
        unstarted = await uow.subscriptions.never_started(
            before=now - deps.orders.order_ttl, limit=limit
        )
    for sub in unstarted:
        if await _abandon(uow, sub, deps=deps):
            run.expired.append(sub.id)
    if deps.payments is not None:
        # 6. unsign: a subscription that is over leaves no signed agreement behind.
        run.unsigned = await end_agreements_of_ended_subscriptions(
            uow, deps=deps.payments, limit=limit
        )
    return run


async def _abandon(uow: UnitOfWork, sub: SubscriptionRecord, *, deps: RenewalDeps) -> bool:
    """A subscription whose first order expired or was cancelled unpaid never started:
    it is ``expired``, and a new one may be made."""
    now = deps.clock.now()
    async with uow:
        link = await uow.subscriptions.order_for_period(sub.id, 1, "first")
        order = None if link is None else await uow.orders.get(link.order_id, with_lines=False)
        if link is None or order is None or order.status not in _UNPAID_ENDS:
            return False
        if not await uow.subscriptions.update(
            sub.id,
            expected=(S.ACTIVE,),
            at=now,
            status=transition(sub.status, S.EXPIRED),
            ended_at=now,
        ):
            return False
        await uow.subscriptions.set_order(link.order_id, expected=("pending",), status="void")
        await uow.events.emit(
            "subscription.expired", sub.id, replace_status(sub, S.EXPIRED), at=now
        )
        await uow.commit()
    return True


# Refusals of a renewal's referral code or partner (the product's commission or revenue
# share changed since it was sold): the renewal is placed without them instead.
_ATTRIBUTION_REFUSALS = frozenset(
    {
        "referral_code_unknown",
        "referral_self",
        "commission_exceeds_share",
        "partner_not_found",
        "partner_share_exceeds_platform",
        "fx_rate_missing",
    }
)


async def prepare_renewal(uow: UnitOfWork, sub: SubscriptionRecord, *, deps: RenewalDeps) -> bool:
    """Make the renewal order of the period after ``sub``'s current one, once.

    Returns True for the call whose order became the period's renewal.
    """
    index = sub.period_index + 1
    async with uow:
        if await uow.subscriptions.order_for_period(sub.id, index, "renewal") is not None:
            return False
        product = (await uow.catalog.products_by_ids([sub.product_id])).get(sub.product_id)
    if product is None or sub.current_period_end is None:
        return False
    price = product.price_in(sub.currency)
    if price is None:
        return False
    if sub.credit_balance >= price:
        return await _renew_from_credit(uow, sub, price, deps=deps)
    unit_prices = {product.id: price - sub.credit_balance} if sub.credit_balance else {}
    now = deps.clock.now()
    # Payable until the grace period ends; the expiry job closes it after that.
    ttl = max(sub.current_period_end + deps.policy.grace - now, deps.orders.order_ttl)
    renewal = CreateOrder(
        customer_id=sub.customer_id,
        currency=sub.currency,
        items=(ItemRequest(product.id),),
        metadata={"subscription_id": sub.id, "period_index": index},
        unit_prices=unit_prices,
        # As the subscription was sold: its promoter's code (the split fixed anew with
        # this order, from the product's commission setting now) and its partner.
        referral_code=sub.referral_code,
        partner_id=sub.partner_id,
    )
    policy = replace(deps.orders, order_ttl=ttl)
    try:  # assessed by risk control as any order (deps.orders.risk): a review holds it
        try:
            order = await create_order(renewal, uow, clock=deps.clock, policy=policy)
        except ValidationFailed as exc:
            if exc.code not in _ATTRIBUTION_REFUSALS:
                raise
            # The renewal is never lost for its attribution: placed without it, and said.
            log.warning("renewal_attribution_dropped", subscription_id=sub.id, code=exc.code)
            order = await create_order(
                replace(renewal, referral_code=None, partner_id=None),
                uow,
                clock=deps.clock,
                policy=policy,
            )
    except RiskBlocked as blocked:
        await _renewal_blocked(uow, sub, blocked, deps=deps)
        return False
    link = period_order(sub, order, index=index, kind="renewal", product_id=product.id)
    async with uow:
        added = await uow.subscriptions.add_order(link)
        if added:
            if sub.credit_balance:
                await uow.subscriptions.update(
                    sub.id, expected=(sub.status,), at=now, credit_balance=0
                )
            # Charged by agreement right after (services/agreements.py); the buyer hears
            # of it only if that charge fails.
            if not await _by_agreement(uow, sub, deps=deps):
                await _announce(uow, sub, link, order.total, order.currency, deps=deps)
            await uow.commit()
    if not added:  # another worker's order is the period's: ours must never be paid
        with contextlib.suppress(Conflict, IllegalTransition, NotFound):
            await cancel_order(uow, order.id, clock=deps.clock)
    return added


async def _renewal_blocked(
    uow: UnitOfWork, sub: SubscriptionRecord, blocked: RiskBlocked, *, deps: RenewalDeps
) -> None:
    """Risk control blocked the renewal order (the attempt is audited): no order is
    raised and the subscription ends with its paid period, as one set to cancel does
    (``subscription.renewal_blocked`` says why); the next pass no longer renews it."""
    now = deps.clock.now()
    async with uow:
        if await uow.subscriptions.update(
            sub.id, expected=(sub.status,), at=now, cancel_at_period_end=True, canceled_at=now
        ):
            data = event_data(sub) | {
                "cancel_at_period_end": True,
                "risk": blocked.attempt.assessment.to_dict(),
            }
            await uow.events.emit("subscription.renewal_blocked", sub.id, data, at=now)
            await uow.commit()


async def _by_agreement(uow: UnitOfWork, sub: SubscriptionRecord, *, deps: RenewalDeps) -> bool:
    """Inside an open unit of work: will ``sub``'s renewals be charged by agreement?"""
    if deps.payments is None or not sub.auto_renew:
        return False
    agreement = await uow.agreements.active_for(sub.id)
    return agreement is not None and agreement_channel(deps.payments, agreement.channel) is not None


async def _announce(
    uow: UnitOfWork,
    sub: SubscriptionRecord,
    link: SubscriptionOrder,
    amount: int,
    currency: str,
    *,
    deps: RenewalDeps,
    **extra: object,
) -> None:
    await uow.events.emit(
        "subscription.renewal_upcoming",
        sub.id,
        event_data(
            sub,
            link,
            amount=amount,
            currency=currency,
            period_end=sub.current_period_end,
            checkout_url=deps.checkout_link(link.order_id),
            **extra,
        ),
        at=deps.clock.now(),
    )


async def _charge_prepared(uow: UnitOfWork, sub: SubscriptionRecord, *, deps: RenewalDeps) -> bool:
    """Charge the next period's renewal order by agreement, once (its first attempt).

    Runs on every pass for a due subscription, so a worker that died between making the
    order and charging it is followed by one that charges; the ``agreement_charges`` row
    makes the charge happen once however many passes or workers get here.
    """
    if deps.payments is None:
        return False
    async with uow:
        link = await uow.subscriptions.order_for_period(sub.id, sub.period_index + 1, "renewal")
    if link is None or link.status != "pending" or link.attempts:
        return False
    status = await charge_renewal(uow, link, 1, deps=deps.payments)
    if status is PaymentStatus.FAILED:
        # Refused (balance too low, agreement gone): the buyer may pay by hand meanwhile;
        # the period end and the dunning schedule then try the agreement again.
        async with uow:
            await _announce(
                uow, sub, link, link.amount, sub.currency, deps=deps, charge_failed=True
            )
            await uow.commit()
    return status is not None


async def _renew_from_credit(
    uow: UnitOfWork, sub: SubscriptionRecord, price: int, *, deps: RenewalDeps
) -> bool:
    """A downgrade's credit that covers a whole period renews it without an order."""
    now = deps.clock.now()
    async with uow:
        product = (await uow.catalog.products_by_ids([sub.product_id]))[sub.product_id]
        assert sub.current_period_end is not None
        assert product.period is not None
        end = period_end(sub.current_period_end, product.period)
        moved = await uow.subscriptions.update(
            sub.id,
            expected=(sub.status,),
            at=now,
            period_index_was=sub.period_index,
            period_index=sub.period_index + 1,
            current_period_start=sub.current_period_end,
            current_period_end=end,
            credit_balance=sub.credit_balance - price,
        )
        # Only the first of racing workers finds the old period: the CAS is on its index.
        if moved:
            await uow.events.emit(
                "subscription.renewed", sub.id, event_data(sub, end=end, from_credit=price), at=now
            )
            await uow.commit()
    return moved


async def _lapse(uow: UnitOfWork, sub: SubscriptionRecord, *, deps: RenewalDeps) -> str | None:
    now = deps.clock.now()
    if sub.cancel_at_period_end:
        async with uow:
            if not await uow.subscriptions.update(
                sub.id,
                expected=(sub.status,),
                at=now,
                period_index_was=sub.period_index,
                status=transition(sub.status, S.CANCELED),
                ended_at=now,
            ):
                return None
            await uow.events.emit(
                "subscription.canceled", sub.id, replace_status(sub, S.CANCELED), at=now
            )
            await uow.commit()
        return "canceled"
    async with uow:
        link = await uow.subscriptions.order_for_period(sub.id, sub.period_index + 1, "renewal")
    if link is None:
        # The renewal was not prepared in time (a lead of zero, a worker down): make it
        # now; the next pass finds it unpaid.
        await prepare_renewal(uow, sub, deps=deps)
        return None
    first_failed = now
    retry = deps.policy.next_retry(first_failed, 1)
    async with uow:
        if not await uow.subscriptions.update(
            sub.id,
            expected=(sub.status,),
            at=now,
            # A renewal paid since this pass read the subscription moved its period on.
            period_index_was=sub.period_index,
            status=transition(sub.status, S.PAST_DUE),
        ):
            return None
        await uow.subscriptions.set_order(
            link.order_id,
            expected=("pending",),
            status="failed",
            attempts=1,
            first_failed_at=first_failed,
            next_attempt_at=retry,
        )
        data = replace_status(sub, S.PAST_DUE) | {
            "order_id": link.order_id,
            "attempt": 1,
            "next_attempt_at": retry.isoformat() if retry else None,
            "access_until": deps.policy.access_until(now).isoformat(),
            "checkout_url": deps.checkout_link(link.order_id),
        }
        await uow.events.emit("subscription.payment_failed", sub.id, data, at=now)
        await uow.events.emit("subscription.past_due", sub.id, data, at=now)
        await uow.commit()
    return "past_due"


async def _remind(uow: UnitOfWork, link: SubscriptionOrder, *, deps: RenewalDeps) -> bool:
    """A retry on the dunning schedule: another attempt, another notice with the link."""
    now = deps.clock.now()
    attempt = link.attempts + 1
    assert link.first_failed_at is not None
    retry = deps.policy.next_retry(link.first_failed_at, attempt)
    async with uow:
        sub = await uow.subscriptions.get(link.subscription_id)
        if sub is None or sub.status is not S.PAST_DUE:
            await uow.subscriptions.set_order(
                link.order_id, expected=("failed",), next_attempt_at=None
            )
            await uow.commit()
            return False
        # The CAS on attempts makes a retry happen once, however many workers see it.
        if not await uow.subscriptions.set_order_attempt(
            link.order_id, attempts=link.attempts, next_attempt_at=retry
        ):
            return False
        by_agreement = await _by_agreement(uow, sub, deps=deps)
        data = replace_status(sub, S.PAST_DUE) | {
            "order_id": link.order_id,
            "attempt": attempt,
            "next_attempt_at": retry.isoformat() if retry else None,
            "checkout_url": deps.checkout_link(link.order_id),
        }
        if not by_agreement:
            await uow.events.emit("subscription.payment_failed", sub.id, data, at=now)
        await uow.commit()
    if not by_agreement or deps.payments is None:
        return True
    # With an agreement this retry is a charge (its attempt number is the count); the
    # buyer hears of it only if it did not go through.
    status = await charge_renewal(uow, link, attempt, deps=deps.payments)
    # A pending charge (WeChat Pay deducts asynchronously, or the answer was lost) is
    # settled by its notification or query; only one that did not go through is told.
    if status in (None, PaymentStatus.FAILED, PaymentStatus.CLOSED):
        async with uow:
            data["charge_status"] = None if status is None else status.value
            await uow.events.emit("subscription.payment_failed", sub.id, data, at=now)
            await uow.commit()
    return True


async def _expire(uow: UnitOfWork, sub: SubscriptionRecord, *, deps: RenewalDeps) -> bool:
    now = deps.clock.now()
    async with uow:
        if not await uow.subscriptions.update(
            sub.id,
            expected=(S.PAST_DUE,),
            at=now,
            period_index_was=sub.period_index,
            status=transition(sub.status, S.EXPIRED),
            ended_at=now,
        ):
            return False
        link = await uow.subscriptions.order_for_period(sub.id, sub.period_index + 1, "renewal")
        if link is not None:
            await uow.subscriptions.set_order(
                link.order_id, expected=("pending", "failed"), status="void", next_attempt_at=None
            )
        await uow.events.emit(
            "subscription.expired", sub.id, replace_status(sub, S.EXPIRED), at=now
        )
        await uow.commit()
    if link is not None:  # paid at the last second: the paid path already kept the money
        with contextlib.suppress(Conflict, IllegalTransition, NotFound):
            await cancel_order(uow, link.order_id, clock=deps.clock)
    return True


def replace_status(sub: SubscriptionRecord, status: SubscriptionStatus) -> dict[str, object]:
    return event_data(sub) | {"status": status.value}
