"""Checkout-page use cases: what the buyer sees, and applying or removing a coupon.

An order's price is fixed when it is placed. A coupon entered on the checkout page
re-prices the order in one transaction: the old coupon use is given back and the new one
counted by the same conditional UPDATEs as order placement, the order is re-priced with
its own unit prices, promotions, tax rule and surcharge rate as placed (only the coupon
changes), and the amounts are written by compare-and-set on the version the caller read.
It is refused once a payment attempt is open or has succeeded: the gateway already holds
the old amount.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from tuition.clock import Clock
from tuition.domain.catalog import Product, ProductStatus, Promotion
from tuition.domain.coupons import normalize_code
from tuition.domain.errors import Conflict, InvalidRequest, NotFound
from tuition.domain.orders import OrderLine, OrderStatus
from tuition.domain.payments import PaymentStatus
from tuition.domain.pricing import Quote, TaxRule, price_order
from tuition.services.commissions import refix_referral_lines
from tuition.services.fx import NATIVE_LINES
from tuition.services.partners import refix_partner_lines
from tuition.store.orders import OrderRecord
from tuition.store.payments import PaymentFilter, PaymentRecord
from tuition.store.uow import UnitOfWork

_OPEN = (PaymentStatus.CREATED, PaymentStatus.PENDING)
# A promotion recorded at placement stays in force for the order's re-pricing.
_FOREVER = timedelta(days=365 * 100)


@dataclass(frozen=True, slots=True)
class CheckoutView:
    """An order as its checkout page shows it, with its newest payment attempt."""

    order: OrderRecord
    attempt: PaymentRecord | None
    now: datetime

    @property
    def status(self) -> str:
        """The order's status, with an unpaid order past its expiry shown as expired
        before the worker has closed it."""
        if self.order.status is OrderStatus.PENDING_PAYMENT and self.order.expires_at <= self.now:
            return OrderStatus.EXPIRED.value
        return self.order.status.value

    @property
    def payable(self) -> bool:
        return self.status == OrderStatus.PENDING_PAYMENT.value

    @property
    def open_attempt(self) -> PaymentRecord | None:
        if self.attempt is not None and self.attempt.status in _OPEN:
            return self.attempt
        return None

    @property
    def coupon_changeable(self) -> bool:
        return self.payable and self.open_attempt is None


async def checkout_view(uow: UnitOfWork, order_id: str, *, clock: Clock) -> CheckoutView:
    async with uow:
        order = await uow.orders.get(order_id)
        if order is None:
            raise NotFound(f"no order {order_id!r}", code="order_not_found", param="order_id")
        attempts, _ = await uow.payments.find(
            PaymentFilter(order_id=order_id), limit=1, starting_after=None
        )
    return CheckoutView(order, attempts[0] if attempts else None, clock.now())


async def change_coupon(
    uow: UnitOfWork, order_id: str, code: str | None, *, clock: Clock
) -> OrderRecord:
    """Apply coupon ``code`` to an unpaid order (``None`` removes its coupon).

    Raises NotFound, Conflict (``order_not_payable``, ``payment_in_progress``,
    ``order_changed`` when another change won a race) or InvalidRequest with the coupon
    refusal codes of order placement. Applying the coupon the order already has is a
    no-op.
    """
    wanted = normalize_code(code) if code else None
    now = clock.now()
    async with uow:
        order = await uow.orders.get(order_id)
        if order is None:
            raise NotFound(f"no order {order_id!r}", code="order_not_found", param="order_id")
        if order.status is not OrderStatus.PENDING_PAYMENT or order.expires_at <= now:
            raise Conflict(
                f"order {order_id} can no longer be paid, so its coupon cannot change",
                code="order_not_payable",
            )
        if order.coupon_code == wanted:
            return order
        await _refuse_if_paying(uow, order_id)
        if not await uow.orders.claim_version(
            order_id, coupon_code=order.coupon_code, seen=order.updated_at, at=now
        ):
            raise Conflict(f"order {order_id} changed meanwhile; try again", code="order_changed")
        await uow.orders.release_coupon(order_id, now)

        coupon_id, coupon, usage = None, None, (0, 0)
        if wanted is not None:
            found = await uow.catalog.coupon_by_code(wanted)
            if found is None:
                raise InvalidRequest(
                    f"no coupon with code {wanted!r}", code="coupon_unknown", param="coupon_code"
                )
            coupon_id, coupon = found
            usage = await uow.orders.coupon_usage(coupon_id, order.customer_id)
        lines, catalog = await _lines_as_placed(uow, order)
        quote = price_order(
            lines,
            currency=order.currency,
            now=now,
            coupon=coupon,
            total_redemptions=usage[0],
            customer_redemptions=usage[1],
            tax=_tax_as_placed(order.pricing),
            surcharge_rate=_surcharge_as_placed(order.pricing),
            catalog=catalog,
        )
        if coupon_id is not None and coupon is not None:
            refused = await uow.orders.redeem_coupon(
                coupon_id=coupon_id,
                order_id=order_id,
                customer_id=order.customer_id,
                max_redemptions=coupon.max_redemptions,
                max_per_customer=coupon.max_per_customer,
                at=now,
            )
            if refused is not None:
                raise InvalidRequest(
                    f"coupon {coupon.code} has no uses left", code=refused, param="coupon_code"
                )
        repriced = _repriced(order, quote, now)
        if not await uow.orders.write_pricing(repriced, at=now):
            raise Conflict(f"order {order_id} changed meanwhile; try again", code="order_changed")
        # The promoters' and the partner's shares were fixed on the old prices: fixed
        # anew on the new ones, at the rates fixed when the order was placed.
        referred = []
        if order.referral_code is not None:
            referred = await refix_referral_lines(uow, order_id, repriced.lines)
        if order.partner_id is not None:
            await refix_partner_lines(uow, order_id, repriced.lines, referred)
        await uow.events.emit(
            "order.updated",
            order_id,
            {
                "id": order_id,
                "customer_id": order.customer_id,
                "status": order.status.value,
                "coupon_code": repriced.coupon_code,
                "previous_coupon_code": order.coupon_code,
                "total": repriced.total,
                "previous_total": order.total,
                "currency": order.currency,
            },
            at=now,
        )
        await uow.commit()
    return repriced


def surcharge_mode(order: OrderRecord) -> bool:
    """Whether the buyer pays the channel's fee on top (the order was placed with a
    ``surcharge_channel``): then the total follows the channel chosen."""
    return _surcharge_as_placed(order.pricing) is not None


async def quote_for_rate(uow: UnitOfWork, order: OrderRecord, rate: Decimal) -> int:
    """The total ``order`` would have with surcharge ``rate`` instead of its own, priced
    exactly as :func:`change_surcharge` would price it (nothing is written)."""
    if _surcharge_as_placed(order.pricing) == rate:
        return order.total
    async with uow:
        return (await _quote_with_rate(uow, order, rate)).total


async def change_surcharge(
    uow: UnitOfWork, order_id: str, rate: Decimal, *, clock: Clock
) -> OrderRecord:
    """Re-price an unpaid order in surcharge mode for the channel the buyer chose: only
    the surcharge (``rate``, that channel's fee rate) changes; prices, promotions, the
    coupon and tax stay as placed. Compare-and-set on the order as read, refused while a
    payment attempt is open (the gateway holds the old amount), an ``order.updated``
    event with the new total. An order not in surcharge mode, or already at ``rate``,
    is returned as it is."""
    now = clock.now()
    async with uow:
        order = await uow.orders.get(order_id)
        if order is None:
            raise NotFound(f"no order {order_id!r}", code="order_not_found", param="order_id")
        current = _surcharge_as_placed(order.pricing)
        if current is None or current == rate:
            return order
        if order.status is not OrderStatus.PENDING_PAYMENT or order.expires_at <= now:
            raise Conflict(f"order {order_id} can no longer be paid", code="order_not_payable")
        await _refuse_if_paying(uow, order_id)
        if not await uow.orders.claim_version(
            order_id, coupon_code=order.coupon_code, seen=order.updated_at, at=now
        ):
            raise Conflict(f"order {order_id} changed meanwhile; try again", code="order_changed")
        quote = await _quote_with_rate(uow, order, rate)
        repriced = _repriced(order, quote, now)
        if not await uow.orders.write_pricing(repriced, at=now):
            raise Conflict(f"order {order_id} changed meanwhile; try again", code="order_changed")
        await uow.events.emit(
            "order.updated",
            order_id,
            {
                "id": order_id,
                "customer_id": order.customer_id,
                "status": order.status.value,
                "coupon_code": repriced.coupon_code,
                "previous_coupon_code": order.coupon_code,
                "surcharge_rate": str(rate),
                "total": repriced.total,
                "previous_total": order.total,
                "currency": order.currency,
            },
            at=now,
        )
        await uow.commit()
    return repriced


async def _quote_with_rate(uow: UnitOfWork, order: OrderRecord, rate: Decimal) -> Quote:
    """Inside an open unit of work: ``order`` priced again as placed (its coupon checked
    as of placement, its own use of it not counted), with surcharge ``rate``. Anything
    but the surcharge coming out different (a coupon edited since) is refused."""
    coupon = None
    usage = (0, 0)
    if order.coupon_code is not None:
        found = await uow.catalog.coupon_by_code(order.coupon_code)
        if found is None:
            raise Conflict(f"order {order.id}'s coupon is gone", code="order_changed")
        coupon_id, coupon = found
        total, mine = await uow.orders.coupon_usage(coupon_id, order.customer_id)
        usage = (max(0, total - 1), max(0, mine - 1))  # this order's own use
    lines, catalog = await _lines_as_placed(uow, order)
    quote = price_order(
        lines,
        currency=order.currency,
        now=order.created_at,
        coupon=coupon,
        total_redemptions=usage[0],
        customer_redemptions=usage[1],
        tax=_tax_as_placed(order.pricing),
        surcharge_rate=rate,
        catalog=catalog,
    )
    same = (quote.subtotal, quote.discount_total, quote.tax_total, quote.coupon_code)
    if same != (order.subtotal, order.discount_total, order.tax_total, order.coupon_code):
        raise Conflict(
            f"order {order.id} would price differently now; only its surcharge may change",
            code="order_changed",
        )
    return quote


async def _refuse_if_paying(uow: UnitOfWork, order_id: str) -> None:
    attempts, _ = await uow.payments.find(
        PaymentFilter(order_id=order_id), limit=100, starting_after=None
    )
    if any(p.status in _OPEN or p.status is PaymentStatus.SUCCEEDED for p in attempts):
        raise Conflict(
            f"a payment for order {order_id} is under way; its amount can no longer change",
            code="payment_in_progress",
        )


async def _lines_as_placed(
    uow: UnitOfWork, order: OrderRecord
) -> tuple[list[OrderLine], Mapping[str, Product]]:
    """The order's lines as priced at placement: its unit prices, and each line's
    promotion (rebuilt from the recorded step) in force, or none."""
    catalog = dict(await uow.catalog.products_by_ids([line.product_id for line in order.lines]))
    promotions = _promotions_as_placed(order.pricing, order.currency, order.created_at)
    lines = []
    for line in order.lines:
        product = catalog.get(line.product_id)
        if product is None:  # products are archived, never deleted
            raise NotFound(f"product {line.product_id} of order {order.id} is missing")
        product = replace(
            product,
            status=ProductStatus.ACTIVE,  # archived since placement: the order still stands
            prices={**product.prices, order.currency: line.unit_price},
            promotion=promotions.get(line.line_index),
        )
        catalog[product.id] = product
        lines.append(OrderLine(product, line.quantity))
    return lines, catalog


def _promotions_as_placed(
    pricing: Mapping[str, Any], currency: str, placed_at: datetime
) -> dict[int, Promotion]:
    """Each promoted line's promotion as recorded, in force from placement on."""
    found: dict[int, Promotion] = {}
    for step in pricing.get("steps", []):
        if step.get("name") != "promotion":
            continue
        detail = step["detail"]
        percent = detail.get("percent_off")
        amount = detail.get("amount_off_per_unit")
        found[int(detail["line"])] = Promotion(
            starts_at=placed_at,
            ends_at=placed_at + _FOREVER,
            percent_off=None if percent is None else Decimal(percent),
            amount_off=None if amount is None else {currency: int(amount)},
        )
    return found


def _tax_as_placed(pricing: Mapping[str, Any]) -> TaxRule | None:
    tax = pricing.get("tax")
    if not tax:
        return None
    return TaxRule(Decimal(tax["rate"]), tax["mode"] == "inclusive", tax["region"])


def _surcharge_as_placed(pricing: Mapping[str, Any]) -> Decimal | None:
    rate = pricing.get("surcharge_rate")
    return None if rate is None else Decimal(rate)


_FX_KEYS = frozenset({"fx", NATIVE_LINES})


def _repriced(order: OrderRecord, quote: Quote, now: datetime) -> OrderRecord:
    lines = tuple(
        replace(
            old,
            promotion_discount=new.promotion_discount,
            coupon_discount=new.coupon_discount,
            tax=new.tax,
            surcharge=new.surcharge,
            total=new.total,
            components=[c.to_dict() for c in new.components],
        )
        for old, new in zip(order.lines, quote.lines, strict=True)
    )
    return replace(
        order,
        subtotal=quote.subtotal,
        discount_total=quote.discount_total,
        tax_total=quote.tax_total,
        surcharge=quote.surcharge,
        total=quote.total,
        coupon_code=quote.coupon_code,
        # The conversions the order was placed with stay its own: its prices are still
        # theirs, and its revenue is booked back at their rate (services/fx.py).
        pricing={**quote.to_dict(), **{k: v for k, v in order.pricing.items() if k in _FX_KEYS}},
        updated_at=now,
        lines=lines,
    )
