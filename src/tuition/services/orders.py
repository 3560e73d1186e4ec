"""Order use cases: price and place an order, cancel, expire, and mark it paid."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from tuition.clock import Clock
from tuition.domain.catalog import DEFAULT_SURFACE, Product, ProductKind
from tuition.domain.errors import Conflict, InvalidRequest, NotFound, ValidationFailed
from tuition.domain.ids import new_id
from tuition.domain.money import coin_unit
from tuition.domain.orders import OrderLine, OrderStatus, transition
from tuition.domain.pricing import Quote, price_order
from tuition.domain.risk import Client, RiskPolicy
from tuition.services.commissions import referral_lines
from tuition.services.entitlements import grant_for_order
from tuition.services.fx import NATIVE_LINES, fx_record, price_catalog_in
from tuition.services.memberships import apply_member_prices
from tuition.services.partners import RateSource, StoredRates, partner_lines, settlements
from tuition.services.risk import (
    holds_entitlements,
    order_subject,
    refusing_order,
    screen_order,
)
from tuition.store.orders import LineRecord, OrderFilter, OrderRecord
from tuition.store.uow import UnitOfWork

# Products that give lasting access: owning one already makes buying it again a mistake.
# Consultations are consumed and memberships renew, so they may be bought again.
_ONE_TIME_KINDS = frozenset({ProductKind.COURSE, ProductKind.ARTICLE, ProductKind.COLUMN})
_ACCESS_KINDS = _ONE_TIME_KINDS | {ProductKind.BUNDLE}


@dataclass(frozen=True, slots=True)
class ItemRequest:
    product_id: str
    quantity: int = 1


@dataclass(frozen=True, slots=True)
class CreateOrder:
    customer_id: str
    currency: str
    items: tuple[ItemRequest, ...]
    coupon_code: str | None = None
    tax_region: str | None = None
    surcharge_channel: str | None = None
    return_url: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    surface: str = DEFAULT_SURFACE  # which price list: "web", "ios", …
    # What channels need to know of the buyer, e.g. {"wechat_openid": …} for JSAPI.
    payer: Mapping[str, str] | None = None
    # Unit prices set by Tuition itself (a subscription's first-period price, proration,
    # carried credit), never by the API: applied as the line's promotion.
    unit_prices: Mapping[str, int] = field(default_factory=dict)
    client: Client = field(default_factory=Client)  # the buyer's ip, device, user agent
    # A promoter's referral code: its commissions are fixed with the order.
    referral_code: str | None = None
    # The partner platform that sold the order: its share is fixed with the order.
    partner_id: str | None = None


@dataclass(frozen=True, slots=True)
class OrderPolicy:
    """Deployment settings the order use cases need."""

    order_ttl: timedelta
    channel_fee_rates: Mapping[str, Decimal]
    # Added to an exchange rate when a product is sold in a currency it has no price in.
    fx_markup: Decimal = Decimal(0)
    # Risk control (services/risk.py): orders placed through the API and subscription
    # orders (the first, plan changes, renewals) when raised; None: not assessed (Apple's
    # transactions, already paid, and the demo).
    risk: RiskPolicy | None = None
    # Where a partner-sold order's exchange rate is looked up (Container.rate_source());
    # None: the rates recorded through PUT /v1/fx_rates.
    rates: RateSource | None = None


async def create_order(
    cmd: CreateOrder, uow: UnitOfWork, *, clock: Clock, policy: OrderPolicy
) -> OrderRecord:
    """Price ``cmd`` and store it as a ``pending_payment`` order, all or nothing.

    A coupon use is counted by conditional UPDATE in the same transaction, so under
    concurrent checkouts a coupon with N uses left is redeemed at most N times. Risk
    control may refuse it (403 ``risk_blocked``, the attempt audited) or hold it for
    review (services/risk.py).
    """
    work = _create_order(cmd, uow, clock=clock, policy=policy)
    return await refusing_order(uow, cmd.customer_id, cmd.client, clock.now(), work)


async def _create_order(
    cmd: CreateOrder, uow: UnitOfWork, *, clock: Clock, policy: OrderPolicy
) -> OrderRecord:
    now = clock.now()
    _check_items(cmd)
    async with uow:
        placed = await uow.catalog.products_by_ids([i.product_id for i in cmd.items])
        # FX hook: products without a price in the order's currency get a converted one.
        catalog, conversions = await price_catalog_in(
            uow,
            placed,
            currency=cmd.currency,
            surface=cmd.surface,
            at=now,
            markup=policy.fx_markup,
        )
        lines = [OrderLine(_product(catalog, i, n), i.quantity) for n, i in enumerate(cmd.items)]
        _check_quantities(lines)
        if coin_unit() is None and any(line.product.topup_coins for line in lines):
            raise InvalidRequest(
                "coin packs cannot be sold while coins are off (TUITION_COINS)",
                code="coins_off",
                param="items",
            )
        await _refuse_repurchase(uow, cmd.customer_id, lines, catalog)
        lines = await apply_member_prices(
            uow,
            lines,
            customer_id=cmd.customer_id,
            currency=cmd.currency,
            now=now,
            unit_prices=cmd.unit_prices,
        )

        coupon_id, coupon, usage = None, None, (0, 0)
        if cmd.coupon_code is not None:
            found = await uow.catalog.coupon_by_code(cmd.coupon_code)
            if found is None:
                raise InvalidRequest(
                    f"no coupon with code {cmd.coupon_code!r}",
                    code="coupon_unknown",
                    param="coupon_code",
                )
            coupon_id, coupon = found
            usage = await uow.orders.coupon_usage(coupon_id, cmd.customer_id)
        tax = None
        if cmd.tax_region is not None:
            tax = await uow.catalog.tax_rule(cmd.tax_region)
            if tax is None:
                raise InvalidRequest(
                    f"no tax rate is configured for region {cmd.tax_region!r}",
                    code="tax_region_unknown",
                    param="tax_region",
                )
        surcharge_rate = None
        if cmd.surcharge_channel is not None:
            surcharge_rate = policy.channel_fee_rates.get(cmd.surcharge_channel)
            if surcharge_rate is None:
                raise InvalidRequest(
                    f"unknown channel {cmd.surcharge_channel!r}; known: "
                    + ", ".join(sorted(policy.channel_fee_rates)),
                    code="channel_unknown",
                    param="surcharge_channel",
                )

        quote = price_order(
            lines,
            currency=cmd.currency,
            now=now,
            coupon=coupon,
            total_redemptions=usage[0],
            customer_redemptions=usage[1],
            tax=tax,
            surcharge_rate=surcharge_rate,
            catalog=catalog,
            surface=cmd.surface,
        )
        order = _order_record(cmd, quote, lines, now=now, ttl=policy.order_ttl)
        if conversions:  # the rates, their source and time, as the order was priced
            fx: dict[str, object] = {"fx": fx_record(conversions)}
            if any(cmd.currency in placed[i.product_id].prices for i in cmd.items):
                # Beside a product priced in the order's own currency: its revenue is not
                # the converted one's, so the order's stays in its currency (fx.md).
                fx[NATIVE_LINES] = True
            order = replace(order, pricing={**order.pricing, **fx})
        if policy.risk is not None:  # risk hook: a block raises; allow and review recorded
            await screen_order(
                uow, order_subject(order, cmd.client), at=now, thresholds=policy.risk
            )
        referred = []
        if cmd.referral_code is not None:
            referred = await referral_lines(
                uow,
                order_id=order.id,
                code=cmd.referral_code,
                customer_id=cmd.customer_id,
                lines=order.lines,
                at=now,
            )
        partnered = []
        if cmd.partner_id is not None:
            partnered = await partner_lines(
                uow,
                order_id=order.id,
                partner_id=cmd.partner_id,
                currency=order.currency,
                lines=order.lines,
                referred=referred,
                at=now,
                rates=policy.rates or StoredRates(),
            )
        await uow.orders.add(order)
        await uow.commissions.add_lines(referred)
        await settlements(uow).add_shares(partnered)
        uow.outcome(order.id)  # what a retry with the same Idempotency-Key gets back
        if coupon_id is not None and coupon is not None:
            refused = await uow.orders.redeem_coupon(
                coupon_id=coupon_id,
                order_id=order.id,
                customer_id=cmd.customer_id,
                max_redemptions=coupon.max_redemptions,
                max_per_customer=coupon.max_per_customer,
                at=now,
            )
            if refused is not None:  # lost a race for the last use: nothing is kept
                raise InvalidRequest(
                    f"coupon {coupon.code} has no uses left", code=refused, param="coupon_code"
                )
        await uow.commit()
    return order


async def get_order(uow: UnitOfWork, order_id: str) -> OrderRecord:
    async with uow:
        order = await uow.orders.get(order_id)
    if order is None:
        raise NotFound(f"no order {order_id!r}", code="order_not_found", param="order_id")
    return order


async def list_orders(
    uow: UnitOfWork, filt: OrderFilter, *, limit: int, starting_after: str | None
) -> tuple[list[OrderRecord], bool]:
    async with uow:
        return await uow.orders.find(filt, limit=limit, starting_after=starting_after)


async def cancel_order(uow: UnitOfWork, order_id: str, *, clock: Clock) -> OrderRecord:
    """Cancel an unpaid order and give its coupon use back."""
    return await _close(uow, order_id, OrderStatus.CANCELLED, clock=clock)


async def expire_order(uow: UnitOfWork, order_id: str, *, clock: Clock) -> OrderRecord:
    """Expire an unpaid order past its expiry and give its coupon use back."""
    return await _close(uow, order_id, OrderStatus.EXPIRED, clock=clock)


async def _close(
    uow: UnitOfWork, order_id: str, target: OrderStatus, *, clock: Clock
) -> OrderRecord:
    now = clock.now()
    async with uow:
        order = await uow.orders.get(order_id, with_lines=False)
        if order is None:
            raise NotFound(f"no order {order_id!r}", code="order_not_found", param="order_id")
        if target is OrderStatus.EXPIRED and order.expires_at > now:
            raise Conflict(
                f"order {order_id} does not expire until {order.expires_at.isoformat()}",
                code="order_not_due",
            )
        transition(order.status, target)
        if not await uow.orders.set_status(
            order_id, expected=OrderStatus.PENDING_PAYMENT, target=target, at=now, closed_at=now
        ):
            raise Conflict(f"order {order_id} changed status meanwhile; fetch it again")
        await uow.orders.release_coupon(order_id, now)
        await uow.events.emit(
            f"order.{target.value}",
            order_id,
            {"id": order_id, "customer_id": order.customer_id, "status": target.value},
            at=now,
        )
        await uow.commit()
    return await get_order(uow, order_id)


async def mark_order_paid(uow: UnitOfWork, order: str | OrderRecord, *, at: datetime) -> bool:
    """Inside an open unit of work: move the order to paid and grant its entitlements.

    ``order`` is an order id, or the order with its lines as the caller already read it
    in this unit of work (saves reading it again). Compare-and-set on
    ``pending_payment``: returns True for the one caller that made the move, False if the
    order is already paid (a retry, or a racing notification). The caller commits.
    Raises IllegalTransition for a cancelled, expired or refunded order.
    """
    if isinstance(order, str):
        order_id = order
        loaded = await uow.orders.get(order_id)
        if loaded is None:
            raise NotFound(f"no order {order_id!r}", code="order_not_found", param="order_id")
        order = loaded
    order_id = order.id
    if order.status is not OrderStatus.PENDING_PAYMENT:
        if order.status is OrderStatus.PAID:
            return False
        transition(order.status, OrderStatus.PAID)  # raises, naming both states
    moved = await uow.orders.set_status(
        order_id,
        expected=OrderStatus.PENDING_PAYMENT,
        target=OrderStatus.PAID,
        at=at,
        paid_at=at,
    )
    if not moved:
        current = await uow.orders.get(order_id, with_lines=False)
        assert current is not None
        if current.status is OrderStatus.PAID:
            return False
        transition(current.status, OrderStatus.PAID)
    if await holds_entitlements(uow, order_id):  # risk hook: granted when approved
        return True
    await grant_for_order(uow, order, paid_at=at)
    return True


def _check_items(cmd: CreateOrder) -> None:
    seen: set[str] = set()
    for n, item in enumerate(cmd.items):
        if item.product_id in seen:
            raise ValidationFailed(
                f"product {item.product_id} appears twice; use quantity instead",
                code="duplicate_item",
                param=f"items[{n}].product_id",
            )
        seen.add(item.product_id)


def _product(catalog: Mapping[str, Product], item: ItemRequest, n: int) -> Product:
    product = catalog.get(item.product_id)
    if product is None:
        raise InvalidRequest(
            f"no product {item.product_id!r}",
            code="product_not_found",
            param=f"items[{n}].product_id",
        )
    return product


def _check_quantities(lines: list[OrderLine]) -> None:
    for n, line in enumerate(lines):
        if line.product.kind in _ACCESS_KINDS and line.quantity != 1:
            raise ValidationFailed(
                f"a {line.product.kind} gives access once; its quantity must be 1",
                code="quantity_out_of_range",
                param=f"items[{n}].quantity",
            )


async def _refuse_repurchase(
    uow: UnitOfWork, customer_id: str, lines: list[OrderLine], catalog: Mapping[str, Product]
) -> None:
    wanted: set[str] = set()
    for line in lines:
        if line.product.kind in _ONE_TIME_KINDS:
            wanted.add(line.product.id)
        elif line.product.kind is ProductKind.BUNDLE:
            wanted.update(line.product.components)
    if not wanted:
        return
    held = await uow.orders.permanent_holdings(customer_id, sorted(wanted))
    for n, line in enumerate(lines):
        product = line.product
        owned = (
            product.id in held
            if product.kind in _ONE_TIME_KINDS
            else product.kind is ProductKind.BUNDLE and set(product.components) <= held
        )
        if owned:
            raise Conflict(
                f"customer {customer_id} already has access to {product.id}",
                code="already_entitled",
                param=f"items[{n}].product_id",
            )


def _order_record(
    cmd: CreateOrder, quote: Quote, lines: list[OrderLine], *, now: datetime, ttl: timedelta
) -> OrderRecord:
    records = tuple(
        LineRecord(
            line_index=priced.index,
            product_id=priced.product_id,
            kind=str(priced.kind),
            title=line.product.title,
            creator_id=line.product.creator_id,
            revenue_share=line.product.revenue_share,
            quantity=priced.quantity,
            unit_price=priced.unit_price,
            list_amount=priced.list_amount,
            promotion_discount=priced.promotion_discount,
            coupon_discount=priced.coupon_discount,
            tax=priced.tax,
            surcharge=priced.surcharge,
            total=priced.total,
            components=[c.to_dict() for c in priced.components],
        )
        for priced, line in zip(quote.lines, lines, strict=True)
    )
    return OrderRecord(
        id=new_id("ord"),
        customer_id=cmd.customer_id,
        currency=cmd.currency,
        status=OrderStatus.PENDING_PAYMENT,
        subtotal=quote.subtotal,
        discount_total=quote.discount_total,
        tax_total=quote.tax_total,
        surcharge=quote.surcharge,
        total=quote.total,
        amount_refunded=0,
        coupon_code=quote.coupon_code,
        tax_region=cmd.tax_region,
        pricing=quote.to_dict(),
        return_url=cmd.return_url,
        metadata=dict(cmd.metadata),
        expires_at=now + ttl,
        paid_at=None,
        closed_at=None,
        created_at=now,
        updated_at=now,
        lines=records,
        surface=cmd.surface,
        payer=None if not cmd.payer else dict(cmd.payer),
        referral_code=cmd.referral_code,
        partner_id=cmd.partner_id,
    )
