"""The one refund path: record a refund with its holds, and settle what the gateway says.

Automatic refunds (a duplicate payment, money for a closed order) and refunds on request
both open here and settle here, whichever of a notification, the submission's answer or
the recovery query arrives first, and only once: every step is a compare-and-set, a
conditional UPDATE or a UNIQUE insert, inside the caller's unit of work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from tuition.channels.base import RefundFeePolicy, RefundState
from tuition.domain.errors import IllegalTransition
from tuition.domain.ids import new_id
from tuition.domain.ledger import (
    AccountKind,
    AccountRef,
    payment_source,
    refund_entry,
    refund_source,
)
from tuition.domain.orders import OrderStatus, transition
from tuition.domain.payments import RefundStatus
from tuition.domain.refund_entries import RefundedPart, order_refund_entry, pro_rata_fee
from tuition.domain.refunds import RefundDestination, RefundRefused
from tuition.domain.wallet import WALLET_CHANNEL, LotKind, TransactionCause
from tuition.services.balances import credit, restore_topup, topup_source
from tuition.services.earnings import claw_back
from tuition.services.fx import in_product_currency
from tuition.services.subscription_periods import subscription_order_refunded
from tuition.store.payments import PaymentRecord
from tuition.store.refunds import RefundLineRecord, RefundRecord
from tuition.store.uow import UnitOfWork

# A refund not settled by the answer to its submission is looked at again after this.
REFUND_RECHECK = timedelta(seconds=60)
_ORDER_REFUND_TRIES = 20


async def hold_payment(uow: UnitOfWork, payment: PaymentRecord, amount: int, at: datetime) -> None:
    """Hold ``amount`` of the payment for a refund, first of a refund's holds: every
    refund path locks the payment row before its order lines, so they never deadlock.

    Raises RefundRefused (``refund_exceeds_refundable``) when the payment cannot give
    that much back any more.
    """
    if not await uow.refunds.hold_on_payment(payment.id, amount, at):
        raise RefundRefused(
            f"payment {payment.id} cannot give back {amount} more",
            code="refund_exceeds_refundable",
            param="amount",
        )


async def open_refund(
    uow: UnitOfWork,
    payment: PaymentRecord,
    *,
    amount: int,
    reason: str,
    at: datetime,
    lines: Sequence[RefundLineRecord] = (),
    requested_by: str = "system",
    override_by: str | None = None,
    retry_of: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    refund_id: str | None = None,
    destination: RefundDestination = RefundDestination.ORIGINAL,
) -> RefundRecord:
    """Record a pending refund whose amount the caller has held (:func:`hold_payment`,
    then the lines' holds); the channel is asked after commit
    (services/payments.submit_refund), and a job asks again if that answer never comes.
    """
    refund = RefundRecord(
        id=refund_id or new_id("re"),
        payment_id=payment.id,
        order_id=payment.order_id,
        customer_id=payment.customer_id,
        amount=amount,
        currency=payment.currency,
        status=RefundStatus.PENDING,
        reason=reason,
        destination=destination.value,
        channel_refund_no=None,
        failure_code=None,
        failure_message=None,
        fee_returned=None,
        requested_by=requested_by,
        override_by=override_by,
        retry_of=retry_of,
        metadata=dict(metadata) if metadata else None,
        submitted_at=None,
        succeeded_at=None,
        failed_at=None,
        created_at=at,
        updated_at=at,
        lines=tuple(lines),
    )
    await uow.refunds.add(refund)
    await uow.work.enqueue("submit_refund", refund.id, run_at=at + REFUND_RECHECK, now=at)
    await uow.events.emit("refund.created", refund.id, refund_data(refund), at=at)
    return refund


async def apply_refund_state(
    uow: UnitOfWork,
    refund: RefundRecord,
    state: RefundState,
    *,
    fee_policy: RefundFeePolicy,
    at: datetime,
    failure_message: str | None = None,
) -> bool:
    """Settle a refund the gateway reported as done or failed; True if it moved."""
    match state.status:
        case RefundStatus.SUCCEEDED:
            return await _succeed(uow, refund, state, fee_policy=fee_policy, at=at)
        case RefundStatus.FAILED:
            current = await uow.refunds.get(refund.id)
            assert current is not None
            moved = await uow.refunds.set_status(
                refund.id,
                expected=RefundStatus.PENDING,
                target=RefundStatus.FAILED,
                at=at,
                failed_at=at,
                failure_code=(state.raw_status or "refund_failed")[:64],
                failure_message=(failure_message or "refused by the channel")[:500],
            )
            if moved:
                await uow.refunds.release(current, at)
                for line in current.lines:
                    if line.wallet_amount:
                        await restore_topup(
                            uow,
                            source=topup_source(current.order_id, line.line_index),
                            refund_id=refund.id,
                            line_index=line.line_index,
                            at=at,
                        )
                failed = await uow.refunds.get(refund.id)
                assert failed is not None
                await uow.events.emit("refund.failed", refund.id, refund_data(failed), at=at)
            return moved
        case RefundStatus.PENDING:
            return False


async def _succeed(
    uow: UnitOfWork,
    refund: RefundRecord,
    state: RefundState,
    *,
    fee_policy: RefundFeePolicy,
    at: datetime,
) -> bool:
    moved = await uow.refunds.set_status(
        refund.id,
        expected=RefundStatus.PENDING,
        target=RefundStatus.SUCCEEDED,
        at=at,
        succeeded_at=at,
        channel_refund_no=state.channel_refund_no,
    )
    if not moved:
        return False
    # Counted first: the row lock it takes orders concurrent refunds of one payment, so
    # the fee share below is computed from what was refunded before this one.
    refunded = await uow.payments.add_refunded(refund.payment_id, refund.amount, at)
    if refunded is None:
        raise AssertionError(f"refund {refund.id} exceeds payment {refund.payment_id}")
    payment = await uow.payments.get(refund.payment_id)
    assert payment is not None, "a refund always has its payment"
    fee = payment.fee or 0
    fee_left = fee - await uow.refunds.fee_returned(payment.id)
    to_wallet = refund.destination == RefundDestination.WALLET.value
    if to_wallet:
        fee_returned = 0  # no gateway refund: the channel keeps what it took
    elif state.fee_returned is not None:
        fee_returned = min(max(state.fee_returned, 0), fee_left)
    elif fee_policy is RefundFeePolicy.PRO_RATA:
        before = refunded - refund.amount
        fee_returned = min(pro_rata_fee(fee, payment.amount, before, refund.amount), fee_left)
    else:
        fee_returned = 0
    await uow.refunds.set_fee_returned(refund.id, fee_returned)
    loaded = await uow.refunds.get(refund.id)
    assert loaded is not None
    # The wallet before the ledger (see services/settlement.py on the lock order): before
    # the clawback too, which posts a converted partner share's conversion.
    if to_wallet or payment.channel == WALLET_CHANNEL:  # the money goes to the balance
        await credit(
            uow,
            customer_id=payment.customer_id,
            currency=payment.currency,
            amount=refund.amount,
            kind=LotKind.REFUND,
            source=f"refund:{refund.id}",
            cause=TransactionCause.REFUND,
            cause_id=refund.id,
            description=f"refund {refund.id} of order {refund.order_id}",
            created_by=refund.requested_by,
            at=at,
        )
    original = await uow.ledger.entry_by_source(payment_source(refund.payment_id))
    assert original is not None, "a refunded payment was posted"
    if loaded.lines:
        clawback = await claw_back(uow, loaded, at=at)
        entry = order_refund_entry(
            original,
            refund_id=refund.id,
            parts=[
                RefundedPart(
                    line.creator_id,
                    line.creator_amount,
                    line.tax_amount,
                    line.platform_amount,
                    line.wallet_amount,
                    tuple(clawback.by_line.get(line.line_index, ())),
                )
                for line in loaded.lines
            ],
            occurred_at=at,
            fee_returned=fee_returned,
            customer_id=payment.customer_id,
            pay_to=(
                AccountRef(AccountKind.CUSTOMER_WALLET, payment.currency, payment.customer_id)
                if to_wallet
                else None
            ),
            pending_creators=clawback.pending,
        )
        if any(p.account.kind is AccountKind.FX_CONVERSION for p in original.postings):
            # The sale's revenue was booked in the product's currency: take it back there,
            # at the order's recorded rate (docs/fx.md#ledger).
            # Counted on from the payment's earlier refunds (ordered by the payment row's
            # lock above), so their conversions add up to the sale's exactly.
            fx_side = AccountRef(AccountKind.FX_CONVERSION, payment.currency)
            moved_before = 0
            for other in await uow.refunds.of_payment(refund.payment_id):
                if other.id != refund.id and (
                    posted := await uow.ledger.entry_by_source(refund_source(other.id))
                ):
                    moved_before += sum(p.amount for p in posted.postings if p.account == fx_side)
            order = await uow.orders.get(refund.order_id, with_lines=False)
            assert order is not None
            entry = in_product_currency(
                entry, order.pricing, payment.currency, moved_before=moved_before
            )
    else:
        prior = []
        for other in await uow.refunds.of_payment(refund.payment_id):
            if other.id != refund.id and (
                posted := await uow.ledger.entry_by_source(refund_source(other.id))
            ):
                prior.append(posted)
        entry = refund_entry(
            original,
            refund_id=refund.id,
            amount=refund.amount,
            occurred_at=at,
            prior_refunds=prior,
            fee_returned=fee_returned,
        )
    await uow.ledger.post(entry, at=at)
    await uow.events.emit("refund.succeeded", refund.id, refund_data(loaded), at=at)
    if loaded.lines:
        await _refund_order(uow, loaded, at=at)
    return True


async def _refund_order(uow: UnitOfWork, refund: RefundRecord, *, at: datetime) -> None:
    """Count a succeeded refund on its order's lines and the order, move the order to
    partially_refunded or refunded, and end access where the refund says so."""
    await uow.refunds.count_refunded_lines(refund)
    for line in refund.lines:
        if not line.revokes_access:
            continue
        for revoked in await uow.orders.revoke(refund.order_id, line.line_index, at):
            await uow.events.emit(
                "entitlement.revoked",
                revoked.id,
                {
                    "id": revoked.id,
                    "customer_id": revoked.customer_id,
                    "product_id": revoked.product_id,
                    "order_id": revoked.order_id,
                    "refund_id": refund.id,
                },
                at=at,
            )
    for _ in range(_ORDER_REFUND_TRIES):
        order = await uow.orders.get(refund.order_id, with_lines=False)
        assert order is not None
        refunded = order.amount_refunded + refund.amount
        target = OrderStatus.REFUNDED if refunded >= order.total else OrderStatus.PARTIALLY_REFUNDED
        try:
            transition(order.status, target)
        except IllegalTransition:
            raise AssertionError(f"order {order.id} is {order.status}; cannot refund") from None
        if await uow.refunds.count_refunded_order(
            order.id,
            refund.amount,
            status_now=order.status.value,
            refunded_now=order.amount_refunded,
            target=target.value,
            at=at,
        ):
            await uow.events.emit(
                f"order.{target.value}",
                order.id,
                {
                    "id": order.id,
                    "customer_id": order.customer_id,
                    "total": order.total,
                    "amount_refunded": refunded,
                    "currency": order.currency,
                    "status": target.value,
                    "refund_id": refund.id,
                },
                at=at,
            )
            if target is OrderStatus.REFUNDED:
                await subscription_order_refunded(uow, order.id, at=at)
            return
    raise RuntimeError(f"order {refund.order_id} kept changing; the refund is retried")


def refund_data(refund: RefundRecord) -> dict[str, object]:
    return {
        "id": refund.id,
        "payment_id": refund.payment_id,
        "order_id": refund.order_id,
        "customer_id": refund.customer_id,
        "amount": refund.amount,
        "currency": refund.currency,
        "status": refund.status.value,
        "reason": refund.reason,
        "lines": [{"index": line.line_index, "amount": line.amount} for line in refund.lines],
        "failure_code": refund.failure_code,
        "failure_message": refund.failure_message,
    }
