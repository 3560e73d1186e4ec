"""Debit agreements: signing one for a subscription, following the gateway's word on it,
and charging a renewal order by it.

- **Sign** (:func:`start_signing`): an ``agreements`` row (``pending``) is written first,
  then the channel builds the buyer's sign page. Our row id is the agreement number the
  gateway keys it by, so opening the page twice is one agreement.
- **Notifications** (:func:`handle_agreement_notification`): the gateway's sign and
  unsign notifications, verified by the channel, move the row by compare-and-set. An
  agreement that ends (the buyer cancelled it in the Alipay / WeChat app, or it was
  terminated) ends automatic renewal: the subscription keeps its period, stays ``active``
  to its end and is renewed by hand (``subscription.renewal_upcoming`` with the link).
- **Charge** (:func:`charge_renewal`): one charge per attempt at a renewal order, claimed
  by the ``agreement_charges`` primary key before the gateway is called. The charge is an
  ordinary payment attempt (``method: agreement``) with its recovery query queued, so a
  lost answer is decided by ``reconcile_payment`` and a paid charge settles through the
  one paid path. An earlier charge whose outcome is still unknown is asked about first;
  while it stays unknown no new charge is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from tuition.channels.base import (
    Ack,
    AgreementCharge,
    AgreementSignRequest,
    AgreementState,
    ChannelTimeout,
    NextAction,
    NotificationRejected,
    PaymentState,
    SupportsAgreements,
)
from tuition.domain.agreements import AgreementStatus, transition
from tuition.domain.errors import (
    ChannelError,
    Conflict,
    IllegalTransition,
    NotFound,
    TuitionError,
)
from tuition.domain.ids import new_id
from tuition.domain.orders import OrderStatus
from tuition.domain.payments import PaymentStatus
from tuition.domain.subscriptions import SubscriptionStatus
from tuition.logs import mask
from tuition.services.payments import PaymentDeps, get_payment, hold_payable, reconcile_payment
from tuition.services.risk import active_rules
from tuition.services.settlement import apply_payment_state
from tuition.services.subscription_periods import event_data
from tuition.services.tender import end_payment
from tuition.store.agreements import AgreementChargeRecord, AgreementRecord
from tuition.store.events import NotificationRecord
from tuition.store.payments import PaymentRecord, new_attempt
from tuition.store.risk import RiskRepository
from tuition.store.subscriptions import SubscriptionOrder
from tuition.store.uow import UnitOfWork

AGREEMENT_METHOD = "agreement"
_LIVE = (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)
_OPEN = (PaymentStatus.CREATED, PaymentStatus.PENDING)
_DROP_HEADERS = frozenset({"authorization", "cookie"})


def agreement_channel(deps: PaymentDeps, slug: str) -> SupportsAgreements | None:
    """The channel ``slug`` if it can debit by agreement, else None."""
    if slug not in deps.registry:
        return None
    channel = deps.registry.get(slug)
    if isinstance(channel, SupportsAgreements) and channel.agreements_enabled:
        return channel
    return None


@dataclass(frozen=True, slots=True)
class SignStarted:
    agreement: AgreementRecord
    next_action: NextAction


async def start_signing(
    uow: UnitOfWork, subscription_id: str, *, deps: PaymentDeps, return_url: str | None
) -> SignStarted:
    """The buyer's sign page for ``subscription_id``'s channel (409 when there is nothing
    to sign: no automatic renewal, a channel without agreements, one already active)."""
    now = deps.clock.now()
    async with uow:
        sub = await uow.subscriptions.get(subscription_id)
        if sub is None:
            raise NotFound(f"no subscription {subscription_id!r}", code="subscription_not_found")
        product = (await uow.catalog.products_by_ids([sub.product_id])).get(sub.product_id)
        existing = await uow.agreements.of_subscription(sub.id)
    channel = agreement_channel(deps, sub.channel)
    if channel is None or not sub.auto_renew or sub.status not in _LIVE:
        raise Conflict(
            f"subscription {sub.id} does not renew by agreement (channel {sub.channel}, "
            f"auto_renew {sub.auto_renew}, {sub.status})",
            code="agreement_not_offered",
        )
    if any(a.status is AgreementStatus.ACTIVE for a in existing):
        raise Conflict(
            f"subscription {sub.id} already has a signed agreement", code="agreement_exists"
        )
    assert product is not None
    assert product.period is not None
    price = product.price_in(sub.currency)
    if price is None:
        raise Conflict(f"{product.id} has no {sub.currency} price", code="price_missing")
    pending = [a for a in existing if a.status is AgreementStatus.PENDING]
    if pending:
        record = pending[0]
    else:
        record = AgreementRecord(
            # Alipay's external_agreement_no takes letters and digits only (at most 32).
            id=new_id("agr").replace("_", ""),
            customer_id=sub.customer_id,
            channel=sub.channel,
            subscription_id=sub.id,
            status=AgreementStatus.PENDING,
            agreement_no=None,
            signed_at=None,
            ended_at=None,
            end_reason=None,
            created_at=now,
            updated_at=now,
        )
        async with uow:
            await uow.agreements.add(record)
            await uow.commit()
    first = sub.current_period_end or sub.trial_ends_at or now
    action = await channel.sign_agreement(
        AgreementSignRequest(
            agreement_id=record.id,
            customer_id=sub.customer_id,
            display_name=product.title[:60],
            period=product.period.value,
            single_amount=price,
            currency=sub.currency,
            first_charge_on=first.date(),
            notify_url=deps.notify_url(sub.channel) + "/agreements",
            return_url=return_url,
        )
    )
    return SignStarted(record, action)


async def handle_agreement_notification(
    channel_slug: str,
    headers: Mapping[str, str],
    body: bytes,
    uow: UnitOfWork,
    *,
    deps: PaymentDeps,
) -> Ack:
    """Verify and apply a sign / unsign notification; the channel's ACK to answer."""
    channel = agreement_channel(deps, channel_slug)
    if channel is None:
        return Ack(400, b"channel does not sign agreements", "text/plain")
    ack = deps.registry.get(channel_slug).ack
    received_at = deps.clock.now()
    try:
        verified = channel.verify_agreement_notification(headers, body)
    except NotificationRejected as exc:
        await _record(uow, channel_slug, headers, body, at=received_at, reason=exc.reason)
        return ack(False)
    if verified.app_id != deps.registry.get(channel_slug).app_id:
        reason = f"app id {verified.app_id!r} is not ours"
        await _record(uow, channel_slug, headers, body, at=received_at, reason=reason)
        return ack(False)
    applied = await apply_agreement_state(uow, channel_slug, verified.agreement, deps=deps)
    await _record(
        uow,
        channel_slug,
        headers,
        body,
        at=received_at,
        reason=None if applied else "no such agreement here",
        event=verified.event,
        trade_no=verified.agreement.agreement_no,
    )
    return ack(applied)


async def _record(
    uow: UnitOfWork,
    channel_slug: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    at: datetime,
    reason: str | None,
    event: str | None = None,
    trade_no: str | None = None,
) -> None:
    """Every agreement notification is kept for audit in ``notifications``, like the
    payment ones: verdict ``applied`` or ``rejected`` (with the reason)."""
    kept = [(k.lower(), v) for k, v in headers.items() if k.lower() not in _DROP_HEADERS]
    text = mask(body.decode("utf-8", errors="replace")).replace("\x00", "\\u0000")
    async with uow:
        await uow.events.record_notification(
            NotificationRecord(
                id=new_id("ntf"),
                channel=channel_slug,
                received_at=at,
                headers={k[:1000]: v[:1000] for k, v in kept[:50]},
                body=text if reason is None else text[:4096],
                verdict="applied" if reason is None else "rejected",
                reason=None if reason is None else reason[:500],
                payment_id=None,
                refund_id=None,
                event=None if event is None else event[:64],
                trade_no=None if trade_no is None else trade_no[:64],
            )
        )
        await uow.commit()


async def apply_agreement_state(
    uow: UnitOfWork, channel_slug: str, state: AgreementState, *, deps: PaymentDeps
) -> bool:
    """Move our agreement to what the gateway reports; False for one we do not know."""
    now = deps.clock.now()
    async with uow:
        record = await uow.agreements.get(state.agreement_id)
        if record is None or record.channel != channel_slug:
            return False
        if record.agreement_no and state.agreement_no and record.agreement_no != state.agreement_no:
            return False
        if state.status is record.status or state.status is AgreementStatus.PENDING:
            return True  # a copy of a notification already applied, or nothing new
        try:
            target = transition(record.status, state.status)
        except IllegalTransition:
            return True  # a late sign notification for an agreement already ended
        if target is AgreementStatus.ACTIVE:
            moved = await uow.agreements.set_status(
                record.id,
                expected=(AgreementStatus.PENDING,),
                at=now,
                status=target,
                agreement_no=state.agreement_no,
                signed_at=state.signed_at or now,
            )
            event = "agreement.signed"
        else:
            moved = await uow.agreements.set_status(
                record.id,
                expected=(AgreementStatus.PENDING, AgreementStatus.ACTIVE),
                at=now,
                status=target,
                agreement_no=record.agreement_no or state.agreement_no,
                ended_at=state.ended_at or now,
                end_reason="gateway",
            )
            event = "agreement.ended"
        if not moved:
            return True  # another copy got there first
        sub = (
            None
            if record.subscription_id is None
            else await uow.subscriptions.get(record.subscription_id)
        )
        data: dict[str, object] = {
            "id": record.id,
            "customer_id": record.customer_id,
            "channel": record.channel,
            "subscription_id": record.subscription_id,
            "status": target.value,
        }
        await uow.events.emit(event, record.id, data, at=now)
        # The buyer stopped the debits at the gateway: no more automatic renewal. The
        # period already paid runs to its end; renewing is by hand from now on.
        if (
            target is AgreementStatus.ENDED
            and sub is not None
            and sub.auto_renew
            and await uow.subscriptions.update(
                sub.id, expected=(sub.status,), at=now, auto_renew=False
            )
        ):
            await uow.events.emit(
                "subscription.auto_renew_ended",
                sub.id,
                event_data(sub, agreement_id=record.id, reason="agreement_ended"),
                at=now,
            )
        await uow.commit()
    return True


async def end_agreements_of_ended_subscriptions(
    uow: UnitOfWork, *, deps: PaymentDeps, limit: int = 100
) -> list[str]:
    """Unsign at the gateway every agreement whose subscription is over, so the buyer is
    not left with a signed debit authority; the ids of those now ``ended``.

    Safe to repeat: an agreement the gateway already ended counts as ended, and the row
    moves by compare-and-set (the unsign notification that follows is a copy).
    """
    async with uow:
        found = await uow.agreements.active_of_ended_subscriptions(limit=limit)
    ended: list[str] = []
    for record in found:
        channel = agreement_channel(deps, record.channel)
        if channel is None or record.agreement_no is None:
            continue
        try:
            await channel.end_agreement(record.id, record.agreement_no)
        except ChannelError:
            # Refused or unknown: ended already? The gateway's own record decides.
            try:
                state = await channel.query_agreement(record.id)
            except ChannelError:
                continue
            if state is not None and state.status is not AgreementStatus.ENDED:
                continue
        now = deps.clock.now()
        async with uow:
            if await uow.agreements.set_status(
                record.id,
                expected=(AgreementStatus.ACTIVE,),
                at=now,
                status=transition(record.status, AgreementStatus.ENDED),
                ended_at=now,
                end_reason="subscription_ended",
            ):
                await uow.events.emit(
                    "agreement.ended",
                    record.id,
                    {
                        "id": record.id,
                        "customer_id": record.customer_id,
                        "channel": record.channel,
                        "subscription_id": record.subscription_id,
                        "status": AgreementStatus.ENDED.value,
                        "reason": "subscription_ended",
                    },
                    at=now,
                )
                ended.append(record.id)
            await uow.commit()
    return ended


async def _held_for_review(uow: UnitOfWork, order_id: str, *, deps: PaymentDeps) -> bool:
    """Inside an open unit of work: risk control holds the order's payment for review (a
    renewal order is assessed when raised, services/renewals.py). No query while risk
    control is off."""
    if deps.risk.hold != "payment" or not await active_rules(uow):
        return False
    return await RiskRepository(uow.conn).open_review_of(order_id) is not None


async def charge_renewal(
    uow: UnitOfWork, link: SubscriptionOrder, attempt: int, *, deps: PaymentDeps
) -> PaymentStatus | None:
    """Charge attempt ``attempt`` of a renewal order by the subscription's agreement.

    None when there is nothing to charge (no active agreement, no automatic renewal, the
    order is no longer payable, this attempt was already charged, or an earlier charge
    is still unknown). Otherwise the charge's status as it stands after the call.
    """
    async with uow:
        sub = await uow.subscriptions.get(link.subscription_id)
        agreement = await uow.agreements.active_for(link.subscription_id)
        charges = await uow.agreements.charges_of(link.order_id)
    if sub is None or not sub.auto_renew or agreement is None or agreement.agreement_no is None:
        return None
    channel = agreement_channel(deps, agreement.channel)
    if channel is None:
        return None
    for earlier in charges:
        before = await get_payment(uow, earlier.payment_id)
        if before.status in _OPEN:
            # Its answer was lost (or a worker died mid-call): the query decides first.
            try:
                before = await reconcile_payment(uow, before.id, deps=deps)
            except ChannelError:
                return None
            if before.status is PaymentStatus.CREATED:
                # Claimed, but the call never returned (a worker died in it) and the
                # gateway has no such trade: send it again under the same trade number,
                # which the gateway keeps to one debit however often it arrives.
                return await _send_charge(uow, channel, before, agreement, deps=deps)
            if before.status in _OPEN or before.status is PaymentStatus.SUCCEEDED:
                return before.status
    if any(c.attempt >= attempt for c in charges):
        return None  # this attempt was charged already
    now = deps.clock.now()
    async with uow:
        found = await uow.orders.get_with_summary(link.order_id)
        if found is None:
            return None
        order, title, _lines = found
        if order.status is not OrderStatus.PENDING_PAYMENT or order.expires_at <= now:
            return None
        if await _held_for_review(uow, order.id, deps=deps):
            return None  # charged on a pass after an operator approves it
        try:
            await hold_payable(uow, order, at=now)
        except Conflict:
            return None  # paid or changed meanwhile (another worker's charge, the buyer)
        payment = new_attempt(
            payment_id=new_id("pay"),
            order_id=order.id,
            customer_id=order.customer_id,
            channel=agreement.channel,
            method=AGREEMENT_METHOD,
            app_id=deps.registry.get(agreement.channel).app_id,
            amount=order.total,
            currency=order.currency,
            at=now,
        )
        # The claim: whoever inserts this attempt's row is the one who calls the gateway.
        claimed = await uow.agreements.add_charge(
            AgreementChargeRecord(
                order_id=order.id,
                attempt=attempt,
                agreement_id=agreement.id,
                payment_id=payment.id,
                created_at=now,
            )
        )
        if not claimed:
            return None
        await uow.payments.add_with_job(
            payment, kind="reconcile_payment", run_at=now + deps.recover_after
        )
        await uow.commit()
    return await _send_charge(uow, channel, payment, agreement, deps=deps, subject=title)


async def _send_charge(
    uow: UnitOfWork,
    channel: SupportsAgreements,
    payment: PaymentRecord,
    agreement: AgreementRecord,
    *,
    deps: PaymentDeps,
    subject: str | None = None,
) -> PaymentStatus:
    """Call the gateway for a claimed charge and settle what it answers at once."""
    assert agreement.agreement_no is not None
    charge = AgreementCharge(
        payment_id=payment.id,
        agreement_no=agreement.agreement_no,
        amount=payment.amount,
        currency=payment.currency,
        subject=(subject or "renewal")[:120],
        notify_url=deps.notify_url(agreement.channel),
    )
    try:
        state = await channel.charge_agreement(charge)
    except ChannelTimeout:
        await _mark_pending(uow, payment, deps=deps)
        return PaymentStatus.PENDING
    except TuitionError as exc:
        async with uow:
            await end_payment(
                uow,
                payment,
                PaymentStatus.FAILED,
                at=deps.clock.now(),
                failure_code=exc.code,
                failure_message=exc.message,
            )
            await uow.commit()
        return PaymentStatus.FAILED
    await _mark_pending(uow, payment, deps=deps, trade_no=state.channel_trade_no)
    return await _settle(uow, payment.id, state, deps=deps)


async def _mark_pending(
    uow: UnitOfWork, payment: PaymentRecord, *, deps: PaymentDeps, trade_no: str | None = None
) -> None:
    async with uow.autocommit() as single:
        await single.payments.set_status(
            payment.id,
            expected=(PaymentStatus.CREATED,),
            target=PaymentStatus.PENDING,
            at=deps.clock.now(),
            channel_trade_no=trade_no,
        )
        await single.commit()


async def _settle(
    uow: UnitOfWork, payment_id: str, state: PaymentState, *, deps: PaymentDeps
) -> PaymentStatus:
    payment = await get_payment(uow, payment_id)
    if state.amount != payment.amount or state.currency != payment.currency:
        return payment.status  # left for the recovery query and an operator
    channel = deps.registry.get(payment.channel)
    async with uow:
        await apply_payment_state(
            uow, payment, state, fee_rate=channel.fee_rate, at=deps.clock.now(), hold=deps.hold
        )
        await uow.commit()
    return (await get_payment(uow, payment_id)).status
