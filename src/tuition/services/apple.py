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
extends from its current end, or to the transaction's ``expiresDate`` where Apple
gives one); ``REVOKE`` ends access that family sharing gave.

Family sharing: a family member's transaction (``inAppOwnershipType: FAMILY_SHARED``)
carries no money, so it is booked as a grant alone: no order, no payment, no ledger
entry, no coins. Its row in ``apple_transactions`` (the family member's own transaction
id, claimed once) names the one entitlement it gave (``entitlement_id``), made in the
transaction that moves the row ``received`` -> ``credited``; ``REVOKE`` (or a
``REFUND``) ends that entitlement and moves the row to ``revoked``, once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

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
from tuition.domain.catalog import Product, ProductKind, period_end
from tuition.domain.errors import Conflict, NotFound, TuitionError, ValidationFailed
from tuition.domain.ids import Prefix, new_id
from tuition.domain.money import Rounding, apply_rate
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
from tuition.store.orders import EntitlementRecord, OrderRecord
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


_FULL_PERCENTAGE = 100_000  # Apple's revocationPercentage for all of it
_SHAREABLE = frozenset(
    {
        ProductKind.MEMBERSHIP,
        ProductKind.COURSE,
        ProductKind.ARTICLE,
        ProductKind.COLUMN,
        ProductKind.CONSULTATION,
    }
)


@dataclass(frozen=True, slots=True)
class Credited:
    """A transaction as Tuition booked it; ``created`` is False for a repeat. A
    family-shared one has no order or payment, only its ``entitlement``."""

    transaction: AppleTransactionRecord
    order: OrderRecord | None
    payment: PaymentRecord | None
    created: bool
    entitlement: EntitlementRecord | None = None


async def record_transaction(
    signed_transaction: str, customer_id: str | None, uow: UnitOfWork, *, deps: AppleDeps
) -> Credited:
    """Verify a signed transaction from the app and credit or grant what it bought."""
    # Verification may ask Apple's OCSP service (synchronous HTTP): off the event loop.
    transaction = await asyncio.to_thread(deps.channel.verify_transaction, signed_transaction)
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
    if tx.expires_at is not None and tx.expires_at <= tx.purchased_at:
        raise AppleDataInvalid(
            f"App Store transaction {tx.transaction_id} expires before it was bought",
            param="signed_transaction",
        )
    if tx.family_shared:
        return await _grant_family(tx, customer_id, uow, deps=deps)
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
    settled = await apply_payment_state(
        uow, payment, state, fee_rate=sold.commission, at=now, hold=deps.refunds.payments.hold
    )
    if not settled.changed or settled.refunds_to_submit:
        raise AssertionError(f"order {order.id} of {tx.transaction_id} was not paid")
    if tx.auto_renewable and tx.expires_at is not None:
        # Apple's period is the term: its expiresDate, not the product's period counted
        # from the purchase (a membership order's grant is its only expiring one).
        await repo.follow_expiry(order.id, until=tx.expires_at)


# -- family sharing ----------------------------------------------------------------------


async def _grant_family(
    tx: AppleTransaction, customer_id: str | None, uow: UnitOfWork, *, deps: AppleDeps
) -> Credited:
    """Grant a family member the access a shared purchase gives, once per transaction
    id: an entitlement with no order, named by the transaction's row. No money moves:
    the purchaser's own transaction paid (and is booked as a sale when it is posted)."""
    sold = deps.channel.product(tx.product_id)
    async with uow:
        product = (await uow.catalog.products_by_ids([sold.product_id])).get(sold.product_id)
    if product is None:
        raise NotFound(f"no product {sold.product_id!r}", code="product_not_found")
    if product.kind not in _SHAREABLE:
        raise Conflict(
            f"App Store transaction {tx.transaction_id} is family-shared, but product "
            f"{product.id} is a {product.kind.value}: only memberships and single products "
            "are shared (coins are consumable; share a bundle's products one by one)",
            code="apple_family_not_shareable",
        )
    now = deps.clock.now()
    record = await _claim(tx, customer_id, product.id, uow, at=now)
    won = False
    if record.status == "received":
        grant = EntitlementRecord(
            id=new_id("ent"),
            customer_id=record.customer_id,
            product_id=product.id,
            order_id=None,
            line_index=0,
            source_product_id=None,
            granted_at=now,
            expires_at=_family_term(tx, product),
            revoked_at=None,
        )
        async with uow:
            repo = AppleRepository(uow.conn)
            won = await repo.move(
                tx.transaction_id,
                expected="received",
                target="credited",
                at=now,
                entitlement_id=grant.id,
            )
            if won:
                await uow.orders.grant([grant])
                await uow.events.emit(
                    "entitlement.granted",
                    grant.id,
                    {
                        "id": grant.id,
                        "customer_id": grant.customer_id,
                        "product_id": grant.product_id,
                        "order_id": None,
                        "expires_at": _iso(grant.expires_at),
                        "apple_transaction_id": tx.transaction_id,
                        "family_shared": True,
                    },
                    at=now,
                )
                await uow.commit()
    async with uow:
        done = await AppleRepository(uow.conn).get(tx.transaction_id)
        assert done is not None
        entitlement = await _entitlement(uow, done)
    if not done.family_shared or entitlement is None:
        raise Conflict(
            f"App Store transaction {tx.transaction_id} was booked as a purchase, not "
            "as family-shared",
            code="apple_family_shared_mismatch",
        )
    return Credited(done, None, None, created=won, entitlement=entitlement)


def _family_term(tx: AppleTransaction, product: Product) -> datetime | None:
    """A shared membership lasts to Apple's ``expiresDate`` where it gives one, else the
    product's period from the purchase; anything else is held for good."""
    if product.kind is not ProductKind.MEMBERSHIP:
        return None
    if tx.expires_at is not None:
        return tx.expires_at
    if product.period is None:
        raise ValueError(f"membership {product.id} has no period")
    return period_end(tx.purchased_at, product.period, tx.quantity)


async def _entitlement(uow: UnitOfWork, record: AppleTransactionRecord) -> EntitlementRecord | None:
    if record.entitlement_id is None:
        return None
    grants = await uow.orders.entitlements_of(record.customer_id, product_id=record.product_id)
    return next((g for g in grants if g.id == record.entitlement_id), None)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


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
        notification = await asyncio.to_thread(deps.channel.verify_apple_notification, body)
    except NotificationRejected as exc:
        await record("rejected", exc.reason, None, None)
        log.warning("notification_rejected", channel="apple", reason=exc.reason)
        return NotificationOutcome("rejected", exc.reason)
    # Applied first, claimed after: applying is idempotent by itself (each transaction's
    # state moves by compare-and-set), so a copy that races or follows changes nothing,
    # while a failure or a crash before the claim leaves Apple's retry to apply it. (A
    # claim committed first would make that retry a "duplicate", and the refund lost.)
    verdict, reason, payment_id = await _apply(notification, uow, deps=deps)
    async with uow:
        first = await uow.events.claim_effect(
            channel=deps.channel.slug,
            trade_no=notification.uuid[:64],
            event=notification.type[:64],
            notification_id=notification_id,
        )
        await uow.commit()
    if not first and verdict != "applied":
        verdict, reason = "duplicate", None
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
        except TuitionError as exc:  # recorded with its reason; Apple need not retry it
            log.warning("apple_notification_not_applied", type=n.type, code=exc.code)
            return "ignored", f"{exc.code}: {exc}", None
        payment_id = None if credited.payment is None else credited.payment.id
        return ("applied" if credited.created else "ignored"), None, payment_id
    if n.type == "REFUND":
        return await refund_transaction(tx, uow, deps=deps)
    if n.type == "REVOKE":
        return await revoke_transaction(tx, uow, deps=deps)
    return "ignored", f"{n.type} changes nothing here", None


async def refund_transaction(
    tx: AppleTransaction, uow: UnitOfWork, *, deps: AppleDeps
) -> tuple[str, str | None, str | None]:
    """Book Apple's refund of a credited transaction in one transaction with its
    ``refunded`` mark: the whole order, or the share ``revocationPercentage`` names
    (spread over the order's parts by largest remainder), the coins or access taken
    back. A family member's shared access is ended as by ``REVOKE``."""
    now = deps.clock.now()
    async with uow:
        record = await AppleRepository(uow.conn).get(tx.transaction_id)
    if record is not None and record.family_shared:
        return await revoke_transaction(tx, uow, deps=deps)
    share = tx.revocation_percentage
    partial = share is not None and share < _FULL_PERCENTAGE
    async with uow:
        repo = AppleRepository(uow.conn)
        record = await repo.get(tx.transaction_id, lock=True)
        if record is None or record.payment_id is None:
            return "ignored", "a transaction Tuition never credited", None
        payment = await uow.payments.get(record.payment_id)
        product = (await uow.catalog.products_by_ids([record.product_id])).get(record.product_id)
        assert payment is not None
        if partial and product is not None and product.kind is ProductKind.TOPUP:
            # A coin pack is taken back whole or not at all (its lot goes back in one
            # piece): a prorated refund of one is left to an operator.
            log.warning(
                "apple_prorated_topup_refund",
                transaction=tx.transaction_id,
                percentage=share,
                payment=record.payment_id,
            )
            return (
                "ignored",
                f"a prorated refund ({share} of 100000) of a coin pack needs an operator",
                record.payment_id,
            )
        if not await repo.move(tx.transaction_id, expected="credited", target="refunded", at=now):
            return "ignored", f"the transaction is {record.status}", record.payment_id
        amount = None
        if partial:
            assert share is not None
            amount = apply_rate(
                payment.amount, Decimal(share) / Decimal(_FULL_PERCENTAGE), Rounding.HALF_UP
            )
        if amount == 0:  # too small a share to book: access ends all the same
            await _end_order_access(uow, record, tx, now=now, refund_id=None)
            await uow.commit()
            return "applied", f"refund of {share} of 100000 rounds to nothing", record.payment_id
        refund = await open_refund_in(
            uow,
            CreateRefund(
                payment_id=record.payment_id,
                amount=amount,
                reason=RefundReason.REQUESTED_BY_CUSTOMER,
                metadata={
                    "apple_transaction_id": tx.transaction_id,
                    "apple_revocation_percentage": share,
                },
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
        if partial:
            # Apple revoked the transaction: what it gave ends even though only part of
            # the money came back (the unused time of a subscription, say).
            await _end_order_access(uow, record, tx, now=now, refund_id=refund.id)
        await repo.move(
            tx.transaction_id, expected="refunded", target="refunded", at=now, refund_id=refund.id
        )
        await uow.commit()
    return "applied", None, record.payment_id


async def _end_order_access(
    uow: UnitOfWork,
    record: AppleTransactionRecord,
    tx: AppleTransaction,
    *,
    now: datetime,
    refund_id: str | None,
) -> None:
    """Inside the refund's unit of work: end the grants of the transaction's order that
    are still in force, each reported once."""
    assert record.order_id is not None
    for revoked in await uow.orders.revoke(record.order_id, None, now):
        await uow.events.emit(
            "entitlement.revoked",
            revoked.id,
            {
                "id": revoked.id,
                "customer_id": revoked.customer_id,
                "product_id": revoked.product_id,
                "order_id": revoked.order_id,
                "refund_id": refund_id,
                "apple_transaction_id": tx.transaction_id,
            },
            at=now,
        )


async def revoke_transaction(
    tx: AppleTransaction, uow: UnitOfWork, *, deps: AppleDeps
) -> tuple[str, str | None, str | None]:
    """End the access a family-shared purchase gave (the purchaser stopped sharing, left
    the family or was refunded; the member left): the grant of every family-shared
    transaction of it (the first and each renewal) still ``credited``, each once, with
    ``entitlement.revoked``. A purchase is never ended by ``REVOKE`` (Apple sends
    ``REFUND`` for that), and no money moves: none came with the grants."""
    now = deps.clock.now()
    ended = 0
    async with uow:
        repo = AppleRepository(uow.conn)
        record = await repo.get(tx.transaction_id)
        if record is None or not record.family_shared:
            return "ignored", "no family-shared access of this transaction here", None
        for shared in await repo.of_original(record.original_transaction_id):
            if not shared.family_shared or shared.entitlement_id is None:
                continue
            if not await repo.move(
                shared.transaction_id, expected="credited", target="revoked", at=now
            ):
                continue  # ended before, by another REVOKE
            ended += 1
            revoked = await repo.revoke_grant(shared.entitlement_id, at=now)
            if revoked is not None:
                await uow.events.emit(
                    "entitlement.revoked",
                    revoked.id,
                    {
                        "id": revoked.id,
                        "customer_id": revoked.customer_id,
                        "product_id": revoked.product_id,
                        "order_id": None,
                        "apple_transaction_id": shared.transaction_id,
                        "family_shared": True,
                    },
                    at=now,
                )
        await uow.commit()
    if not ended:
        return "ignored", "the family-shared access was ended before", None
    return "applied", None, None
