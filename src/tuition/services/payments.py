"""Payment use cases: start a payment attempt, read payments, recover one, submit refunds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from tuition.channels.base import (
    ChannelTimeout,
    PaymentNotFound,
    PaymentRequest,
    RefundFeePolicy,
    RefundNotFound,
    RefundRequest,
    RefundState,
    SupportsLongerExpiry,
)
from tuition.channels.registry import ChannelRegistry
from tuition.clock import Clock
from tuition.domain.channel_choice import Breaker
from tuition.domain.coins import CoinUnit, SpendOrder
from tuition.domain.earnings import DEFAULT_HOLD, HoldRule
from tuition.domain.errors import (
    ChannelError,
    Conflict,
    NotFound,
    TuitionError,
    ValidationFailed,
)
from tuition.domain.ids import new_id
from tuition.domain.modes import Mode, notify_url
from tuition.domain.money import get_currency
from tuition.domain.orders import OrderStatus
from tuition.domain.payments import PaymentStatus, RefundStatus
from tuition.domain.risk import RiskPolicy
from tuition.domain.wallet import WALLET_CHANNEL
from tuition.services.channel_choice import note_call
from tuition.services.partners import RateSource
from tuition.services.refund_settlement import apply_refund_state
from tuition.services.risk import payment_subject, refusing, screen_payment
from tuition.services.settlement import apply_payment_state
from tuition.services.tender import check_split, end_payment, hold_wallet_part
from tuition.store.orders import OrderRecord
from tuition.store.payments import PaymentFilter, PaymentRecord, new_attempt
from tuition.store.uow import UnitOfWork


@dataclass(frozen=True, slots=True)
class CreatePayment:
    order_id: str
    channel: str
    method: str
    client_ip: str | None = None
    payer_id: str | None = None
    # Where the gateway sends the buyer back; the order's own return_url when None
    # (the hosted checkout page passes itself, so the buyer sees the outcome there).
    return_url: str | None = None
    # Split tender: this much from the buyer's balance (held until the channel payment
    # ends), the rest through the channel (services/tender.py).
    wallet_amount: int | None = None
    # The total the caller priced the order at for this channel (the checkout page in
    # surcharge mode): a different total now (re-priced for another channel meanwhile)
    # is ``409 order_changed``, never a payment carrying another channel's surcharge.
    expected_total: int | None = None


RECOVER_AFTER = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class PaymentDeps:
    registry: ChannelRegistry
    clock: Clock
    base_url: str  # where gateways reach this deployment (domain/modes.py notify_url)
    mode: Mode = "live"  # whose payments these are: each mode is notified apart
    # An open payment is first asked about this long after it was created (its
    # ``reconcile_payment`` job, queued with it); see docs/operations.md.
    recover_after: timedelta = RECOVER_AFTER
    # The platform's coin (TUITION_COINS), None when coins are off.
    coins: CoinUnit | None = None
    # How long paid orders' earnings are held (TUITION_REFUND_POLICY, TUITION_PAYOUT_HOLD_DAYS).
    hold: HoldRule = DEFAULT_HOLD

    def notify_url(self, channel: str) -> str:
        """Where ``channel`` sends its notifications for this mode's payments."""
        return notify_url(self.base_url, self.mode, channel)

    # Risk control's score thresholds (TUITION_RISK_REVIEW_SCORE, _BLOCK_SCORE).
    risk: RiskPolicy = RiskPolicy.NONE
    # When a channel's calls keep failing, it is skipped for a while (channel choice).
    breaker: Breaker = field(default_factory=Breaker)
    # Where a partner's share takes its exchange rate when released (Container.rate_source());
    # None: the rates recorded through PUT /v1/fx_rates.
    fx_rates: RateSource | None = None

    @property
    def coin_spend_order(self) -> SpendOrder:
        return SpendOrder.FIFO if self.coins is None else self.coins.spend_order


async def create_payment(
    cmd: CreatePayment, uow: UnitOfWork, *, deps: PaymentDeps
) -> PaymentRecord:
    """Open a payment attempt for an unpaid order and ask the channel for the next action.

    The attempt is stored before the gateway is called, so a crash in between leaves a
    ``created`` payment for the recovery job rather than money we do not know of. A
    gateway timeout leaves it ``pending`` (the gateway may have it); a refusal fails it.
    Risk control may refuse it first (403 ``risk_blocked``, 409 ``risk_review_pending``).
    """
    return await refusing(uow, _create_payment(cmd, uow, deps=deps))


async def _create_payment(
    cmd: CreatePayment, uow: UnitOfWork, *, deps: PaymentDeps
) -> PaymentRecord:
    channel = deps.registry.get(cmd.channel)
    if cmd.method not in channel.methods:
        raise ValidationFailed(
            f"channel {cmd.channel} offers {', '.join(sorted(channel.methods))}, "
            f"not {cmd.method!r}",
            code="method_unsupported",
            param="method",
        )
    now = deps.clock.now()
    async with uow:
        # The order and just what the subject line needs of its lines, in one statement.
        found = await uow.orders.get_with_summary(cmd.order_id)
        if found is None:
            raise NotFound(f"no order {cmd.order_id!r}", code="order_not_found", param="order_id")
        order, first_title, line_count = found
        if order.total == 0 and order.status is OrderStatus.PENDING_PAYMENT:
            raise Conflict(
                f"order {order.id} is free: complete it with POST /v1/orders/{order.id}/complete",
                code="order_is_free",
            )
        await hold_payable(uow, order, at=now)
        if cmd.expected_total is not None and order.total != cmd.expected_total:
            raise Conflict(
                f"order {order.id} is now {order.total}, not {cmd.expected_total}; try again",
                code="order_changed",
            )
        if isinstance(channel, SupportsLongerExpiry):  # e.g. a bank transfer: days, not minutes
            await uow.orders.extend_expiry(order.id, until=now + channel.attempt_ttl, at=now)
        if get_currency(order.currency).virtual:
            raise Conflict(
                f"order {order.id} is priced in coins ({order.currency}): pay it with "
                '{"channel": "wallet"}',
                code="coin_order_needs_wallet",
                param="channel",
            )
        part = None
        if cmd.wallet_amount is not None:
            with_lines = await uow.orders.get(order.id)
            assert with_lines is not None
            check_split(with_lines, cmd.wallet_amount)
            part = await hold_wallet_part(uow, with_lines, cmd.wallet_amount, at=now)
        payment = new_attempt(
            payment_id=new_id("pay"),
            order_id=order.id,
            customer_id=order.customer_id,
            channel=channel.slug,
            method=cmd.method,
            app_id=channel.app_id,
            amount=order.total - (0 if part is None else part.amount),
            currency=order.currency,
            at=now,
            wallet_part_id=None if part is None else part.id,
        )
        # Risk hook: a block or a review refuses the attempt before it is stored.
        assessed = payment_subject(
            order, payment.id, payment.amount, ip=cmd.client_ip, payer=cmd.payer_id
        )
        await screen_payment(uow, assessed, at=now, thresholds=deps.risk)
        # With its recovery query, in the same transaction: every open payment has one,
        # whatever else is open (see worker/jobs.py ``reconcile``).
        await uow.payments.add_with_job(
            payment, kind="reconcile_payment", run_at=now + deps.recover_after
        )
        uow.outcome(payment.id)  # what a retry with the same Idempotency-Key gets back
        await uow.commit()

    if first_title is None:  # an order always has lines
        raise IndexError(f"order {order.id} has no lines")
    subject = first_title if line_count == 1 else f"{first_title} +{line_count - 1}"
    request = PaymentRequest(
        payment_id=payment.id,
        order_id=order.id,
        amount=payment.amount,
        currency=order.currency,
        subject=subject[:120],
        method=cmd.method,
        notify_url=deps.notify_url(channel.slug),
        return_url=cmd.return_url or order.return_url,
        expires_at=order.expires_at,
        client_ip=cmd.client_ip,
        payer_id=cmd.payer_id,
    )
    # Each write after the call is one compare-and-set statement: no transaction needs to
    # wrap it, so it runs in an autocommit unit of work (two round trips fewer).
    try:
        created = await channel.create_payment(request)
    except ChannelTimeout as exc:
        await note_call(uow, channel.slug, deps.breaker, at=deps.clock.now(), error=exc)
        async with uow.autocommit() as single:
            await single.payments.set_status(
                payment.id,
                expected=(PaymentStatus.CREATED,),
                target=PaymentStatus.PENDING,
                at=deps.clock.now(),
            )
            await single.commit()
        raise
    except TuitionError as exc:
        # The gateway refused, or the channel refused our request before sending it
        # (e.g. a JSAPI payment without payer_id): this attempt is over either way, and
        # a held balance part comes back with it (one transaction then).
        await note_call(uow, channel.slug, deps.breaker, at=deps.clock.now(), error=exc)
        async with uow if payment.wallet_part_id else uow.autocommit() as ending:
            await end_payment(
                ending,
                payment,
                PaymentStatus.FAILED,
                at=deps.clock.now(),
                emit=False,
                failure_code=exc.code,
                failure_message=exc.message,
            )
            await ending.commit()
        raise
    await note_call(uow, channel.slug, deps.breaker, at=deps.clock.now())  # closes a breaker
    async with uow.autocommit() as single:
        # RETURNING gives the row as written, so no third transaction reads it back.
        pending = await single.payments.set_status_returning(
            payment.id,
            expected=(PaymentStatus.CREATED,),
            target=PaymentStatus.PENDING,
            at=deps.clock.now(),
            channel_trade_no=created.channel_trade_no,
            next_action={k: v for k, v in asdict(created.next_action).items()},
        )
        await single.commit()
    if pending is not None:
        return pending
    # Settled (or failed) by someone else meanwhile: return the payment as it now is.
    return await get_payment(uow, payment.id)


async def hold_payable(uow: UnitOfWork, order: OrderRecord, *, at: datetime) -> None:
    """Inside an open unit of work: refuse an order that cannot be paid now (409
    ``order_not_payable``), and lock it at the total read. A coupon change committing
    meanwhile makes this fail (``order_changed``) instead of leaving a payment for the
    old total, and a change that read the order before us finds it updated and refuses
    (see services/checkout)."""
    if order.status is not OrderStatus.PENDING_PAYMENT:
        raise Conflict(
            f"order {order.id} is {order.status}; only a pending_payment order can be paid",
            code="order_not_payable",
        )
    if order.expires_at <= at:
        raise Conflict(
            f"order {order.id} expired at {order.expires_at.isoformat()}",
            code="order_not_payable",
        )
    if not await uow.orders.hold_total(order.id, total=order.total, at=at):
        raise Conflict(
            f"order {order.id} changed while the payment was being started; try again",
            code="order_changed",
        )


async def get_payment(uow: UnitOfWork, payment_id: str) -> PaymentRecord:
    async with uow:
        payment = await uow.payments.get(payment_id)
    if payment is None:
        raise NotFound(f"no payment {payment_id!r}", code="payment_not_found", param="payment_id")
    return payment


async def list_payments(
    uow: UnitOfWork, filt: PaymentFilter, *, limit: int, starting_after: str | None
) -> tuple[list[PaymentRecord], bool]:
    async with uow:
        return await uow.payments.find(filt, limit=limit, starting_after=starting_after)


async def reconcile_payment(
    uow: UnitOfWork, payment_id: str, *, deps: PaymentDeps
) -> PaymentRecord:
    """Ask the channel for a payment's state and settle it through the same paid path.

    This is how a lost notification is recovered; a gateway that cannot answer leaves
    the payment as it was. A gateway that has no such trade (the API died before it
    reached it, or an attempt never opened) closes the attempt once the order no longer
    waits for it (paid by another attempt, cancelled, expired, or past its expiry);
    before that the attempt stays open for the next query.
    """
    payment = await get_payment(uow, payment_id)
    if payment.status not in (PaymentStatus.CREATED, PaymentStatus.PENDING):
        return payment
    if payment.channel == WALLET_CHANNEL:  # a held balance part ends with its channel's
        return payment
    channel = deps.registry.get(payment.channel)
    try:
        state = await channel.query_payment(payment.id)
    except PaymentNotFound as exc:
        return await _close_unknown(uow, payment, exc, deps=deps)
    if state.amount != payment.amount or state.currency != payment.currency:
        raise ChannelError(
            f"channel reports {state.amount} {state.currency} for payment {payment.id} of "
            f"{payment.amount} {payment.currency}; left for an operator",
            code="amount_mismatch",
        )
    async with uow:
        settled = await apply_payment_state(
            uow, payment, state, fee_rate=channel.fee_rate, at=deps.clock.now(), hold=deps.hold
        )
        await uow.commit()
    for refund_id in settled.refunds_to_submit:
        await submit_refund(uow, refund_id, deps=deps)
    return await get_payment(uow, payment_id)


async def _close_unknown(
    uow: UnitOfWork, payment: PaymentRecord, exc: PaymentNotFound, *, deps: PaymentDeps
) -> PaymentRecord:
    """Close an attempt the gateway never saw, if its order no longer waits for it."""
    now = deps.clock.now()
    async with uow:
        order = await uow.orders.get(payment.order_id, with_lines=False)
        if order is None:
            raise NotFound(f"no order {payment.order_id!r}", code="order_not_found")
        if order.status is OrderStatus.PENDING_PAYMENT and order.expires_at > now:
            return payment  # the order still waits: asked again later
        why = "expired" if order.status is OrderStatus.PENDING_PAYMENT else order.status.value
        await end_payment(
            uow,
            payment,
            PaymentStatus.CLOSED,
            at=now,
            failure_code=exc.code,
            failure_message=f"the gateway has no such trade and the order is {why}",
        )
        await uow.commit()
    return await get_payment(uow, payment.id)


async def submit_refund(uow: UnitOfWork, refund_id: str, *, deps: PaymentDeps) -> RefundStatus:
    """Send a pending refund to its channel and settle what the channel answers at once.

    Safe to repeat: a refund sent before (whose answer may have been lost) is first
    asked about with the channel's query, and sent again only if the gateway has no
    record of it; gateways de-duplicate by our refund id anyway, and settling is a
    compare-and-set. A timeout leaves the refund pending for the next attempt; a refusal
    fails it (its holds are released, so it may be retried as a new refund).
    """
    async with uow:
        refund = await uow.refunds.get(refund_id, with_lines=False)
        payment = None if refund is None else await uow.payments.get(refund.payment_id)
    if refund is None or payment is None:
        raise NotFound(f"no refund {refund_id!r}", code="refund_not_found", param="refund_id")
    if refund.status is not RefundStatus.PENDING:
        return refund.status
    if payment.channel == WALLET_CHANNEL or refund.destination == "wallet":
        # Paid from balance, or asked to go to the balance: at once, no gateway.
        done = RefundState(
            refund.id, payment.id, RefundStatus.SUCCEEDED, refund.amount, refund.currency
        )
        async with uow:
            await apply_refund_state(
                uow, refund, done, fee_policy=RefundFeePolicy.KEPT, at=deps.clock.now()
            )
            await uow.commit()
        return RefundStatus.SUCCEEDED
    channel = deps.registry.get(payment.channel)
    message: str | None = None
    state: RefundState | None = None
    if refund.submitted_at is not None:
        try:
            state = await channel.query_refund(refund.id, payment.id)
        except ChannelTimeout:
            return RefundStatus.PENDING
        except RefundNotFound:
            state = None  # the first submission never arrived: send it again
    if state is None:
        async with uow.autocommit() as single:
            await single.refunds.mark_submitted(refund.id, deps.clock.now())
            await single.commit()
        try:
            state = await channel.refund(
                RefundRequest(
                    refund_id=refund.id,
                    payment_id=payment.id,
                    channel_trade_no=payment.channel_trade_no,
                    amount=refund.amount,
                    payment_amount=payment.amount,
                    currency=refund.currency,
                    reason=refund.reason,
                    notify_url=deps.notify_url(channel.slug),
                )
            )
        except ChannelTimeout:
            return RefundStatus.PENDING
        except ChannelError as exc:
            # The gateway answered and refused: nothing was applied there.
            message = exc.message
            state = RefundState(
                refund_id=refund.id,
                payment_id=payment.id,
                status=RefundStatus.FAILED,
                amount=refund.amount,
                currency=refund.currency,
                raw_status=exc.code,
            )
    if state.status is RefundStatus.PENDING:
        return RefundStatus.PENDING
    async with uow:
        await apply_refund_state(
            uow,
            refund,
            state,
            fee_policy=channel.refund_fee_policy,
            at=deps.clock.now(),
            failure_message=message,
        )
        await uow.commit()
    return state.status
