"""Channel notifications: verify, match, settle once, record every one for audit.

Order of trust: the signature is verified by the channel first; then the app id, amount
and currency are matched against our own payment; only then does anything change. A
notification that fails any check changes nothing, is stored with the reason, and gets
the channel's failure ACK. A copy of one already applied (redelivered, replayed or racing)
is recognised by the UNIQUE (channel, trade number, event) row and changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from tuition.channels.base import (
    Ack,
    Channel,
    NotificationKind,
    NotificationRejected,
    RefundState,
    VerifiedNotification,
)
from tuition.domain.ids import new_id
from tuition.domain.payments import RefundStatus
from tuition.logs import get_logger, mask
from tuition.services.payments import PaymentDeps, submit_refund
from tuition.services.payouts import settle_transfer
from tuition.services.refund_settlement import apply_refund_state
from tuition.services.settlement import Settled, apply_payment_state
from tuition.store.events import NotificationRecord
from tuition.store.payments import PaymentRecord
from tuition.store.payouts import PayoutRecord
from tuition.store.refunds import RefundRecord
from tuition.store.uow import UnitOfWork

log = get_logger(__name__)

# Headers worth keeping for audit; cookies and auth never are.
_DROP_HEADERS = frozenset({"authorization", "cookie"})
# What is kept of a notification that anyone could have sent: enough to diagnose it,
# too little to fill the disk with (verified ones are bounded by the body size limit).
MAX_UNVERIFIED_BODY_CHARS = 4096
_MAX_HEADERS = 50
_MAX_HEADER_CHARS = 1000
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: str  # applied | duplicate | ignored | rejected
    reason: str | None
    ack: Ack


async def handle_notification(
    channel_slug: str,
    headers: Mapping[str, str],
    body: bytes,
    uow: UnitOfWork,
    *,
    deps: PaymentDeps,
) -> Outcome:
    channel = deps.registry.get(channel_slug)
    record = _Recorder(channel_slug, headers, body, deps)
    if b"\x00" in body:  # no channel sends one; it could reach text columns unchanged
        return await record.reject(uow, "the body contains a NUL byte", channel)
    try:
        verified = channel.verify_notification(headers, body)
    except NotificationRejected as exc:
        return await record.reject(uow, exc.reason, channel)
    unstorable = _unstorable(verified)
    if unstorable is not None:  # signed, yet it cannot be ours: nothing of it is looked up
        return await record.reject(uow, unstorable, channel, verified=True)

    settled = Settled()
    async with uow:
        reason, loaded = await _mismatch(uow, channel, verified)
        if reason is not None:
            await record.write(uow, "rejected", reason, verified)
            await uow.commit()
            log.warning("notification_rejected", channel=channel_slug, reason=reason)
            return Outcome("rejected", reason, channel.ack(False))
        first = await uow.events.claim_effect(
            channel=channel_slug,
            trade_no=verified.trade_no,
            event=verified.event,
            notification_id=record.id,
        )
        verdict = "duplicate"
        if first:
            assert loaded is not None
            settled = await _settle(uow, channel, verified, loaded, deps)
            verdict = "applied" if settled.changed else "ignored"
        await record.write(uow, verdict, None, verified)
        await uow.commit()
    for refund_id in settled.refunds_to_submit:
        # The notification is applied and committed: the gateway must get the success ACK
        # whatever the refund call does, or it redelivers what is already done. A refund
        # that could not be submitted stays pending; the worker's sweep submits it again.
        try:
            await submit_refund(uow, refund_id, deps=deps)
        except Exception:
            log.exception("refund_submission_failed", channel=channel_slug, refund_id=refund_id)
    return Outcome(verdict, None, channel.ack(True))


# Column lengths of what a verified notification's ids are stored in or looked up by.
_ID_CHARS = 40
_TRADE_CHARS = 64


def _unstorable(n: VerifiedNotification) -> str | None:
    """Why a verified notification's fields cannot be ours (None if they can): too long
    for our columns, or text no column can hold (NUL, a lone surrogate)."""
    fields: list[tuple[str, str | None, int]] = [
        ("app id", n.app_id, 200),
        ("event", n.event, _TRADE_CHARS),
        ("trade number", n.trade_no, _TRADE_CHARS),
    ]
    if n.payment is not None:
        fields += [
            ("payment id", n.payment.payment_id, _ID_CHARS),
            ("channel trade number", n.payment.channel_trade_no, _TRADE_CHARS),
            ("currency", n.payment.currency, 3),
        ]
    if n.transfer is not None:
        fields += [
            ("payout id", n.transfer.payout_id, _ID_CHARS),
            ("transfer number", n.transfer.channel_transfer_no, _TRADE_CHARS),
        ]
    if n.refund is not None:
        fields += [
            ("refund id", n.refund.refund_id, _ID_CHARS),
            ("payment id", n.refund.payment_id, _ID_CHARS),
            ("channel refund number", n.refund.channel_refund_no, _TRADE_CHARS),
            ("currency", n.refund.currency, 3),
        ]
    for name, value, limit in fields:
        if value is None:
            continue
        if len(value) > limit:
            return f"the {name} is longer than {limit} characters"
        if _BAD_TEXT.search(value):
            return f"the {name} contains a NUL or an invalid character"
    return None


async def _mismatch(
    uow: UnitOfWork, channel: Channel, n: VerifiedNotification
) -> tuple[str | None, PaymentRecord | RefundRecord | PayoutRecord | None]:
    """Why ``n`` does not match our records (None if it does), and the payment or refund
    it was matched against, read in this unit of work so that settling need not read it
    again (every change to it is a compare-and-set on its status anyway)."""
    if n.app_id != channel.app_id:
        return f"app id {n.app_id!r} is not ours", None
    if n.kind is NotificationKind.PAYMENT:
        state = n.payment
        assert state is not None
        payment = await uow.payments.get(state.payment_id)
        if payment is None:
            return f"unknown payment {state.payment_id!r}", None
        if payment.channel != channel.slug:
            return f"payment {payment.id} was made through {payment.channel}", payment
        if state.amount != payment.amount:
            reason = f"amount {state.amount} does not match payment amount {payment.amount}"
            return reason, payment
        if state.currency != payment.currency:
            reason = f"currency {state.currency} does not match payment currency {payment.currency}"
            return reason, payment
        return None, payment
    if n.kind is NotificationKind.TRANSFER:
        return await _transfer_mismatch(uow, channel, n)
    refund_state = n.refund
    assert refund_state is not None
    refund = await uow.refunds.get(refund_state.refund_id, with_lines=False)
    if refund is None:
        return f"unknown refund {refund_state.refund_id!r}", None
    return await _refund_mismatch(uow, refund, refund_state), refund


async def _transfer_mismatch(
    uow: UnitOfWork, channel: Channel, n: VerifiedNotification
) -> tuple[str | None, PayoutRecord | None]:
    transfer = n.transfer
    assert transfer is not None
    payout = await uow.payouts.get(transfer.payout_id)
    if payout is None:
        return f"unknown payout {transfer.payout_id!r}", None
    if payout.method != channel.slug:
        return f"payout {payout.id} is paid through {payout.method}", payout
    if n.transfer_amount != payout.net:
        return f"transfer amount {n.transfer_amount} does not match payout net {payout.net}", payout
    return None, payout


async def _refund_mismatch(
    uow: UnitOfWork, refund: RefundRecord, refund_state: RefundState
) -> str | None:
    if refund.payment_id != refund_state.payment_id:
        return f"refund {refund.id} belongs to payment {refund.payment_id}"
    if refund_state.currency != refund.currency:
        return f"refund currency {refund_state.currency} does not match {refund.currency}"
    expected = refund.amount
    if refund_state.amount_is_cumulative:
        payment = await uow.payments.get(refund.payment_id)
        assert payment is not None
        # This refund settled means the total refunded is what we had counted plus it
        # (or just what we counted, when this is a redelivery after it was applied).
        counted = payment.amount_refunded
        expected = counted if refund.status is RefundStatus.SUCCEEDED else counted + refund.amount
    if refund_state.amount != expected:
        return f"refund amount {refund_state.amount} does not match {expected}"
    return None


async def _settle(
    uow: UnitOfWork,
    channel: Channel,
    n: VerifiedNotification,
    loaded: PaymentRecord | RefundRecord | PayoutRecord,
    deps: PaymentDeps,
) -> Settled:
    now = deps.clock.now()
    if n.kind is NotificationKind.TRANSFER:
        assert n.transfer is not None
        assert isinstance(loaded, PayoutRecord)
        return Settled(changed=await settle_transfer(uow, loaded, n.transfer, at=now))
    if n.kind is NotificationKind.PAYMENT:
        assert n.payment is not None
        assert isinstance(loaded, PaymentRecord)
        assert loaded.id == n.payment.payment_id
        return await apply_payment_state(
            uow, loaded, n.payment, fee_rate=channel.fee_rate, at=now, hold=deps.hold
        )
    assert n.refund is not None
    refund = loaded
    assert isinstance(refund, RefundRecord)
    assert refund.id == n.refund.refund_id
    moved = await apply_refund_state(
        uow, refund, n.refund, fee_policy=channel.refund_fee_policy, at=now
    )
    return Settled(changed=moved)


class _Recorder:
    """Writes the audit row for one received notification."""

    def __init__(
        self, channel: str, headers: Mapping[str, str], body: bytes, deps: PaymentDeps
    ) -> None:
        self.id = new_id("ntf")
        # Stamped on arrival, so the audit trail orders causes before their effects.
        self.received_at = deps.clock.now()
        self.channel = channel
        kept = [(k.lower(), v) for k, v in headers.items() if k.lower() not in _DROP_HEADERS]
        self.headers = {
            _storable(k)[:_MAX_HEADER_CHARS]: _storable(v)[:_MAX_HEADER_CHARS]
            for k, v in kept[:_MAX_HEADERS]
        }
        self.body = _storable(mask(body.decode("utf-8", errors="replace")))
        self.deps = deps

    async def write(
        self, uow: UnitOfWork, verdict: str, reason: str | None, n: VerifiedNotification | None
    ) -> None:
        await uow.events.record_notification(
            NotificationRecord(
                id=self.id,
                channel=self.channel,
                received_at=self.received_at,
                headers=self.headers,
                body=self.body,
                verdict=verdict,
                reason=reason[:500] if reason else None,
                payment_id=_payment_id(n),
                refund_id=n.refund.refund_id if n and n.refund else None,
                event=n.event[:64] if n else None,
                trade_no=n.trade_no[:64] if n else None,
            )
        )

    async def reject(
        self, uow: UnitOfWork, reason: str, channel: Channel, *, verified: bool = False
    ) -> Outcome:
        if not verified:
            self.body = self.body[:MAX_UNVERIFIED_BODY_CHARS]
        async with uow:
            await self.write(uow, "rejected", reason, None)
            await uow.commit()
        log.warning("notification_rejected", channel=self.channel, reason=reason)
        return Outcome("rejected", reason, channel.ack(False))


def _payment_id(n: VerifiedNotification | None) -> str | None:
    if n is None:
        return None
    if n.payment is not None:
        return n.payment.payment_id
    return n.refund.payment_id if n.refund is not None else None


def _storable(text: str) -> str:
    """``text`` as any text column holds it: NUL (PostgreSQL refuses it) shown escaped."""
    return text.replace("\x00", "\\u0000")
