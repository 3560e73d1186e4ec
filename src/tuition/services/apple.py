"""App Store in-app purchases: a verified transaction pays one order, once.

The iOS app buys through StoreKit; the platform's backend posts the signed transaction
(``POST /v1/channels/apple/transactions``), and Apple posts App Store Server
Notifications V2 (``POST /v1/notify/apple``). The App Store product id maps to a
Tuition product (``TUITION_APPLE_PRODUCTS``: a top-up pack or a membership); the
transaction becomes an order priced at what Apple charged, paid through the one paid
path (services/settlement.py) with Apple's commission as the channel fee.

Exactly once: the transaction id is the primary key of ``apple_transactions``; its row
is claimed first, names its order by a compare-and-set, and moves ``received`` ->
``credited`` in the same transaction that pays the order. ``REFUND`` moves it to
``refunded`` in the transaction that books the refund (Apple's refunds cannot be
refused: a spent top-up leaves a flagged wallet shortfall); ``DID_RENEW`` is a new
transaction of the same original purchase, credited like the first (a membership
extends from its current end); ``REVOKE`` ends access that family sharing gave.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tuition.channels.apple.client import (
    METHOD,
    AppleChannel,
    AppleDataInvalid,
    AppleNotification,
    AppleTransaction,
)
from tuition.channels.base import (
    NotificationRejected,
    PaymentState,
    RefundFeePolicy,
    RefundState,
)
from tuition.clock import Clock
from tuition.domain.errors import Conflict, ValidationFailed
from tuition.domain.ids import Prefix, new_id
from tuition.domain.orders import OrderStatus
from tuition.domain.payments import PaymentStatus, RefundStatus
from tuition.domain.refunds import RefundReason
from tuition.logs import get_logger, mask
from tuition.services.orders import CreateOrder, ItemRequest, OrderPolicy, create_order
from tuition.services.payments import hold_payable
from tuition.services.refund_settlement import apply_refund_state
from tuition.services.refunds import CreateRefund, RefundDeps, open_refund_in
from tuition.services.settlement import apply_payment_state
from tuition.store.apple import AppleRepository, AppleTransactionRecord
from tuition.store.events import NotificationRecord
from tuition.store.orders import OrderRecord
from tuition.store.payments import PaymentRecord, new_attempt
from tuition.store.uow import UnitOfWork

log = get_logger(__name__)

IOS_SURFACE = "ios"
_MAX_KEPT_BODY = 4096
# Notifications that carry a new paid transaction of a known purchase.
_PAID_TYPES = frozenset({"DID_RENEW", "SUBSCRIBED", "ONE_TIME_CHARGE", "OFFER_REDEEMED"})


@dataclass(frozen=True, slots=True)
class AppleDeps:
    channel: AppleChannel
    clock: Clock
    orders: OrderPolicy
    refunds: RefundDeps


@dataclass(frozen=True, slots=True)
class Credited:
    """A transaction as Tuition booked it; ``created`` is False for a repeat."""

    transaction: AppleTransactionRecord
    order: OrderRecord
    payment: PaymentRecord
    created: bool


async def record_transaction(
    signed_transaction: str, customer_id: str | None, uow: UnitOfWork, *, deps: AppleDeps
) -> Credited:
    """Verify a signed transaction from the app and credit or grant what it bought."""
    transaction = deps.channel.verify_transaction(signed_transaction)
    return await credit_transaction(transaction, customer_id, uow, deps=deps)


async def credit_transaction(
    tx: AppleTransaction, customer_id: str | None, uow: UnitOfWork, *, deps: AppleDeps
) -> Credited:
    """Pay one order for a verified transaction, once, whoever asks how often."""
    if tx.revoked_at is not None:
        raise Conflict(
            f"App Store transaction {tx.transaction_id} was refunded or revoked by Apple",
            code="apple_transaction_revoked",
        )
    if tx.family_shared:
        raise Conflict(
            f"App Store transaction {tx.transaction_id} is family-shared: it was paid by "
            "another Apple account, and Tuition books only purchases",
            code="apple_family_shared",
        )
    sold = deps.channel.product(tx.product_id)
    if tx.amount is None or tx.currency is None or tx.amount <= 0:
        raise AppleDataInvalid(
            f"App Store transaction {tx.transaction_id} has no price",
            param="signed_transaction",
        )
    if tx.amount % tx.quantity:
        raise AppleDataInvalid(
            f"price {tx.amount} does not divide by quantity {tx.quantity}",
            param="signed_transaction",
        )
    now = deps.clock.now()
    record = await _claim(tx, customer_id, sold.product_id, uow, at=now)
    if record.status != "received":
        return await _booked(uow, record)
    if record.order_id is None or not await _payable(uow, record.order_id, at=now):
        # First time, or a crash left an order that expired before this retry.
        record = await _order_for(tx, record, uow, deps=deps)
    order_id = record.order_id
    assert order_id is not None
    won = False
    async with uow:
        repo = AppleRepository(uow.conn)
        # First, so a concurrent credit of the same transaction waits here and then
        # finds it credited: nothing below runs twice.
        won = await repo.move(tx.transaction_id, expected="received", target="credited", at=now)
        if won:
            await _pay(tx, order_id, uow, deps=deps, at=now)
            await uow.commit()
    async with uow:
        done = await AppleRepository(uow.conn).get(tx.transaction_id)
    assert done is not None
    booked = await _booked(uow, done)
    return Credited(booked.transaction, booked.order, booked.payment, created=won)


async def _pay(
    tx: AppleTransaction, order_id: str, uow: UnitOfWork, *, deps: AppleDeps, at: datetime
) -> None:
    """Inside the unit of work that marked the transaction credited: pay its order."""
    sold = deps.channel.product(tx.product_id)
    repo = AppleRepository(uow.conn)
    now = at
    order = await uow.orders.get(order_id)
    assert order is not None
    if order.total != tx.amount or order.currency != tx.currency:
        raise Conflict(
            f"order {order.id} came to {order.total} {order.currency}, not the "
            f"{tx.amount} {tx.currency} Apple charged; check the product's ios price",
            code="apple_price_mismatch",
        )
    await hold_payable(uow, order, at=now)
    payment = new_attempt(
        payment_id=new_id(Prefix.PAYMENT),
        order_id=order.id,
        customer_id=order.customer_id,
        channel=deps.channel.slug,
        method=METHOD,
        app_id=deps.channel.app_id,
        amount=order.total,
        currency=order.currency,
        at=now,
    )
    await uow.payments.add(payment)
    await repo.move(
        tx.transaction_id,
        expected="credited",
        target="credited",
        at=now,
        payment_id=payment.id,
    )
    state = PaymentState(
        payment_id=payment.id,
        status=PaymentStatus.SUCCEEDED,
        amount=payment.amount,
        currency=payment.currency,
        channel_trade_no=tx.transaction_id,
        paid_at=tx.purchased_at,
        raw_status="PURCHASED",
    )
    settled = await apply_payment_state(uow, payment, state, fee_rate=sold.commission, at=now)
    if not settled.changed or settled.refunds_to_submit:
        raise AssertionError(f"order {order.id} of {tx.transaction_id} was not paid")


async def _claim(
    tx: AppleTransaction, customer_id: str | None, product_id: str, uow: UnitOfWork, *, at: datetime
) -> AppleTransactionRecord:
    async with uow:
        repo = AppleRepository(uow.conn)
        existing = await repo.get(tx.transaction_id)
        if existing is None:
            customer = customer_id
            if customer is None:
                first = await repo.first_of(tx.original_transaction_id)
                customer = None if first is None else first.customer_id
            if customer is None:
                raise ValidationFailed(
                    f"App Store transaction {tx.transaction_id} is the first of its purchase "
                    "seen here: give the customer_id it is for",
                    code="customer_required",
                    param="customer_id",
                )
            await repo.claim(
                AppleTransactionRecord(
                    transaction_id=tx.transaction_id,
                    original_transaction_id=tx.original_transaction_id,
                    customer_id=customer,
                    app_store_product_id=tx.product_id,
                    product_id=product_id,
                    order_id=None,
                    payment_id=None,
                    refund_id=None,
                    family_shared=tx.family_shared,
                    status="received",
                    created_at=at,
                    updated_at=at,
                )
            )
            await uow.commit()
        record = await repo.get(tx.transaction_id)
    assert record is not None
    if customer_id is not None and customer_id != record.customer_id:
        raise Conflict(
            f"App Store transaction {tx.transaction_id} was credited to another customer",
            code="apple_transaction_other_customer",
            param="customer_id",
        )
    return record


async def _order_for(
    tx: AppleTransaction, record: AppleTransactionRecord, uow: UnitOfWork, *, deps: AppleDeps
) -> AppleTransactionRecord:
    """The transaction's order, priced at what Apple charged (its ``ios`` price list must
    price the product in the storefront's currency); a concurrent caller's order wins."""
    assert tx.amount is not None
    assert tx.currency is not None
    order = await create_order(
        CreateOrder(
            customer_id=record.customer_id,
            currency=tx.currency,
            items=(ItemRequest(record.product_id, tx.quantity),),
            surface=IOS_SURFACE,
            unit_prices={record.product_id: tx.amount // tx.quantity},
            metadata={"apple_transaction_id": tx.transaction_id},
        ),
        uow,
        clock=deps.clock,
        policy=deps.orders,
    )
    now = deps.clock.now()
    async with uow:
        repo = AppleRepository(uow.conn)
        named = await repo.name_order(tx.transaction_id, order.id, record.order_id, at=now)
        if not named:  # another caller named its order first: this one is not needed
            await uow.orders.set_status(
                order.id,
                expected=OrderStatus.PENDING_PAYMENT,
                target=OrderStatus.CANCELLED,
                at=now,
                closed_at=now,
            )
        await uow.commit()
        current = await repo.get(tx.transaction_id)
    assert current is not None
    return current


async def _payable(uow: UnitOfWork, order_id: str, *, at: datetime) -> bool:
    async with uow:
        order = await uow.orders.get(order_id, with_lines=False)
    return (
        order is not None and order.status is OrderStatus.PENDING_PAYMENT and order.expires_at > at
    )


async def _booked(uow: UnitOfWork, record: AppleTransactionRecord) -> Credited:
    if record.order_id is None or record.payment_id is None:
        raise Conflict(
            f"App Store transaction {record.transaction_id} is being credited; try again",
            code="apple_transaction_in_progress",
        )
    async with uow:
        order = await uow.orders.get(record.order_id)
        payment = await uow.payments.get(record.payment_id)
    assert order is not None
    assert payment is not None
    return Credited(record, order, payment, created=False)


# -- App Store Server Notifications V2 --------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotificationOutcome:
    verdict: str  # applied | duplicate | ignored | rejected
    reason: str | None


async def handle_apple_notification(
    body: bytes, headers: dict[str, str], uow: UnitOfWork, *, deps: AppleDeps
) -> NotificationOutcome:
    """Verify and apply one notification; every one is recorded for audit."""
    received_at = deps.clock.now()
    notification_id = new_id("ntf")
    kept_body = mask(body.decode("utf-8", errors="replace")).replace("\x00", "\\u0000")
    kept_headers = {
        k.lower()[:1000]: v[:1000]
        for k, v in list(headers.items())[:50]
        if k.lower() not in ("authorization", "cookie")
    }

    async def record(
        verdict: str, reason: str | None, n: AppleNotification | None, payment_id: str | None
    ) -> None:
        async with uow:
            await uow.events.record_notification(
                NotificationRecord(
                    id=notification_id,
                    channel=deps.channel.slug,
                    received_at=received_at,
                    headers=kept_headers,
                    body=kept_body[:_MAX_KEPT_BODY],
                    verdict=verdict,
                    reason=reason[:500] if reason else None,
                    payment_id=payment_id,
                    refund_id=None,
                    event=n.type[:64] if n else None,
                    trade_no=(n.transaction.transaction_id[:64] if n and n.transaction else None),
                )
            )
            await uow.commit()

    try:
        notification = deps.channel.verify_apple_notification(body)
    except NotificationRejected as exc:
        await record("rejected", exc.reason, None, None)
        log.warning("notification_rejected", channel="apple", reason=exc.reason)
        return NotificationOutcome("rejected", exc.reason)
    async with uow:
        first = await uow.events.claim_effect(
            channel=deps.channel.slug,
            trade_no=notification.uuid[:64],
            event=notification.type[:64],
            notification_id=notification_id,
        )
        await uow.commit()
    if not first:
        await record("duplicate", None, notification, None)
        return NotificationOutcome("duplicate", None)
    verdict, reason, payment_id = await _apply(notification, uow, deps=deps)
    await record(verdict, reason, notification, payment_id)
    return NotificationOutcome(verdict, reason)


async def _apply(
    n: AppleNotification, uow: UnitOfWork, *, deps: AppleDeps
) -> tuple[str, str | None, str | None]:
    tx = n.transaction
    if tx is None:
        return "ignored", f"{n.type} carries no transaction", None
    if n.type in _PAID_TYPES:
        try:
            credited = await credit_transaction(tx, None, uow, deps=deps)
        except ValidationFailed:  # a first purchase: the app posts it with its customer
            return "ignored", "first transaction of its purchase: the app posts it", None
        return ("applied" if credited.created else "ignored"), None, credited.payment.id
    if n.type == "REFUND":
        return await refund_transaction(tx, uow, deps=deps)
    if n.type == "REVOKE":
        return await revoke_transaction(tx, uow, deps=deps)
    return "ignored", f"{n.type} changes nothing here", None


async def refund_transaction(
    tx: AppleTransaction, uow: UnitOfWork, *, deps: AppleDeps
) -> tuple[str, str | None, str | None]:
    """Book Apple's refund of a credited transaction: the whole order back, the coins or
    access taken back, in one transaction with the transaction's ``refunded`` mark."""
    now = deps.clock.now()
    async with uow:
        repo = AppleRepository(uow.conn)
        record = await repo.get(tx.transaction_id)
        if record is None or record.payment_id is None:
            return "ignored", "a transaction Tuition never credited", None
        if not await repo.move(tx.transaction_id, expected="credited", target="refunded", at=now):
            return "ignored", f"the transaction is {record.status}", record.payment_id
        refund = await open_refund_in(
            uow,
            CreateRefund(
                payment_id=record.payment_id,
                reason=RefundReason.REQUESTED_BY_CUSTOMER,
                metadata={"apple_transaction_id": tx.transaction_id},
                override=True,
                requested_by="apple",
                unrefusable=True,
            ),
            deps=deps.refunds,
        )
        state = RefundState(
            refund_id=refund.id,
            payment_id=record.payment_id,
            status=RefundStatus.SUCCEEDED,
            amount=refund.amount,
            currency=refund.currency,
            channel_refund_no=tx.transaction_id,
            raw_status="REFUND",
        )
        await apply_refund_state(uow, refund, state, fee_policy=RefundFeePolicy.PRO_RATA, at=now)
        await repo.move(
            tx.transaction_id, expected="refunded", target="refunded", at=now, refund_id=refund.id
        )
        await uow.commit()
    return "applied", None, record.payment_id


async def revoke_transaction(
    tx: AppleTransaction, uow: UnitOfWork, *, deps: AppleDeps
) -> tuple[str, str | None, str | None]:
    """End the access a family-shared transaction gave (the purchaser stopped sharing or
    was refunded). A family-shared transaction is never booked as a sale (no money came),
    so only access of a credited, family-shared record is ended."""
    now = deps.clock.now()
    async with uow:
        repo = AppleRepository(uow.conn)
        record = await repo.get(tx.transaction_id)
        if record is None or record.order_id is None or not record.family_shared:
            return "ignored", "no family-shared access of this transaction here", None
        if not await repo.move(tx.transaction_id, expected="credited", target="revoked", at=now):
            return "ignored", f"the transaction is {record.status}", record.payment_id
        for revoked in await uow.orders.revoke(record.order_id, None, now):
            await uow.events.emit(
                "entitlement.revoked",
                revoked.id,
                {
                    "id": revoked.id,
                    "customer_id": revoked.customer_id,
                    "product_id": revoked.product_id,
                    "order_id": revoked.order_id,
                    "apple_transaction_id": tx.transaction_id,
                },
                at=now,
            )
        await uow.commit()
    return "applied", None, record.payment_id
