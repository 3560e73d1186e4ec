"""The pricing engine: order lines in, an exact, fully recorded quote out.

Steps, in order (each recorded as a :class:`PriceStep` whose ``amount`` is its effect on
what the buyer pays, so the steps always sum to ``total - subtotal``):

1. list price: unit price x quantity per line (the base, ``subtotal``; not a step);
2. ``promotion``: the product's limited-time promotion, per line, if active at ``now``;
3. ``coupon``: one order-level coupon, computed on the eligible lines' subtotal and
   split across them by largest remainder. A coupon that does not stack with promotions
   only treats lines without an active promotion as eligible;
4. ``tax``: one rate for the order, computed on the order's taxable amount and split
   across lines. Exclusive tax is added on top; inclusive tax is the part of the amount
   that is tax (``amount - amount / (1 + rate)``) and adds nothing (a step of 0);
5. ``surcharge``: optional; the buyer pays ``amount x (1 + rate)``, split across lines.

Order-level rates are rounded once (HALF_UP, through :mod:`tuition.domain.money`) and
then allocated, so the order total matches ``price x (1 - discount) x (1 + tax)`` and
the lines still sum to it exactly. A bundle line's amount, tax and surcharge are further
split across its components by their list prices, for refunds and creator shares.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from tuition.domain.catalog import (
    DEFAULT_SURFACE,
    Product,
    ProductKind,
    require_aware,
    validate_rate,
)
from tuition.domain.coupons import Coupon, check_coupon, coupon_discount
from tuition.domain.errors import AmountOverflow, InvalidRequest, ValidationFailed
from tuition.domain.money import (
    MAX_AMOUNT,
    Rounding,
    allocate,
    apply_rate,
    get_currency,
    round_minor,
)
from tuition.domain.orders import MAX_QUANTITY, MIN_QUANTITY, OrderLine

ROUNDING = Rounding.HALF_UP

# Wide enough that amount / (1 + rate) is never rounded before round_minor sees it.
_DIVISION = decimal.Context(prec=120)


@dataclass(frozen=True, slots=True)
class TaxRule:
    rate: Decimal
    inclusive: bool
    region: str


@dataclass(frozen=True, slots=True)
class ComponentShare:
    """A bundle component's part of its line; ``amount`` includes ``tax`` and ``surcharge``."""

    product_id: str
    amount: int
    tax: int
    surcharge: int

    def to_dict(self) -> dict[str, str | int]:
        return {
            "product_id": self.product_id,
            "amount": self.amount,
            "tax": self.tax,
            "surcharge": self.surcharge,
        }


@dataclass(frozen=True, slots=True)
class PricedLine:
    index: int
    product_id: str
    kind: ProductKind
    quantity: int
    unit_price: int
    list_amount: int
    promotion_discount: int
    coupon_discount: int
    tax: int
    surcharge: int
    total: int
    components: tuple[ComponentShare, ...] = ()

    @property
    def net(self) -> int:
        """What the goods earned: the total less tax and surcharge."""
        return self.total - self.tax - self.surcharge


@dataclass(frozen=True, slots=True)
class PriceStep:
    name: str
    amount: int
    detail: Mapping[str, str | int]


@dataclass(frozen=True, slots=True)
class Quote:
    currency: str
    lines: tuple[PricedLine, ...]
    steps: tuple[PriceStep, ...]
    subtotal: int
    discount_total: int
    tax_total: int
    surcharge: int
    total: int
    tax: TaxRule | None = None
    surcharge_rate: Decimal | None = None
    coupon_code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready breakdown: ints, strings, lists, dicts and ``None`` only."""
        tax = None
        if self.tax is not None:
            mode = "inclusive" if self.tax.inclusive else "exclusive"
            tax = {"region": self.tax.region, "rate": str(self.tax.rate), "mode": mode}
        return {
            "currency": self.currency,
            "subtotal": self.subtotal,
            "discount_total": self.discount_total,
            "tax_total": self.tax_total,
            "surcharge": self.surcharge,
            "total": self.total,
            "coupon_code": self.coupon_code,
            "tax": tax,
            "surcharge_rate": None if self.surcharge_rate is None else str(self.surcharge_rate),
            "lines": [_line_dict(line) for line in self.lines],
            "steps": [
                {"name": step.name, "amount": step.amount, "detail": dict(step.detail)}
                for step in self.steps
            ],
        }


def _line_dict(line: PricedLine) -> dict[str, Any]:
    return {
        "index": line.index,
        "product_id": line.product_id,
        "kind": str(line.kind),
        "quantity": line.quantity,
        "unit_price": line.unit_price,
        "list_amount": line.list_amount,
        "promotion_discount": line.promotion_discount,
        "coupon_discount": line.coupon_discount,
        "tax": line.tax,
        "surcharge": line.surcharge,
        "total": line.total,
        "components": [c.to_dict() for c in line.components],
    }


def _bounded(amount: int, *, param: str, what: str) -> int:
    # Our own message: money.check_amount would say "<param> must not exceed", which
    # reads wrongly when the param is a quantity that merely multiplies a price.
    if amount > MAX_AMOUNT:
        raise AmountOverflow(f"{what} exceeds the largest amount {MAX_AMOUNT}", param=param)
    return amount


def _split(total: int, weights: Sequence[int]) -> list[int]:
    # money.allocate splits equally over all-zero weights; nothing to split stays nothing.
    return [0] * len(weights) if total == 0 else allocate(total, weights)


def _list_amounts(lines: Sequence[OrderLine], currency: str, surface: str) -> list[int]:
    if not lines:
        raise ValidationFailed(
            "an order needs at least one item", code="order_empty", param="items"
        )
    amounts = []
    for index, line in enumerate(lines):
        quantity, product = line.quantity, line.product
        if type(quantity) is not int or not MIN_QUANTITY <= quantity <= MAX_QUANTITY:
            raise ValidationFailed(
                f"quantity must be an integer from {MIN_QUANTITY} to {MAX_QUANTITY}",
                code="quantity_out_of_range",
                param=f"items[{index}].quantity",
            )
        if not product.is_active:
            raise InvalidRequest(
                f"product {product.id} is archived and cannot be bought",
                code="product_archived",
                param=f"items[{index}].product_id",
            )
        price = product.price_in(currency, surface)
        if price is None:
            raise InvalidRequest(
                f"product {product.id} has no price in {currency}",
                code="product_not_priced_in_currency",
                param=f"items[{index}].product_id",
            )
        what = f"items[{index}]: {quantity} x {price}"
        amounts.append(_bounded(price * quantity, param=f"items[{index}].quantity", what=what))
    _bounded(sum(amounts), param="items", what="the order's list price")
    return amounts


def _promotion(line: OrderLine, list_amount: int, currency: str, now: datetime) -> int | None:
    """The line's promotion discount, or None when no promotion applies to it."""
    promotion = line.product.promotion
    if promotion is None or not promotion.is_active(now):
        return None
    if promotion.percent_off is not None:
        discount = apply_rate(list_amount, promotion.percent_off, ROUNDING)
    else:
        per_unit = (promotion.amount_off or {}).get(currency)
        if per_unit is None:
            return None
        discount = per_unit * line.quantity
    return min(discount, list_amount)  # a promotion never takes a line below zero


def _promotion_detail(line: OrderLine, index: int, currency: str) -> dict[str, str | int]:
    promotion = line.product.promotion
    assert promotion is not None
    detail: dict[str, str | int] = {"line": index, "product_id": line.product.id}
    if promotion.percent_off is not None:
        detail["percent_off"] = str(promotion.percent_off)
    else:
        detail["amount_off_per_unit"] = (promotion.amount_off or {})[currency]
    return detail


def _apply_promotions(
    lines: Sequence[OrderLine], list_amounts: list[int], currency: str, now: datetime
) -> tuple[list[int], list[bool], list[PriceStep]]:
    discounts, promoted, steps = [0] * len(lines), [False] * len(lines), []
    for index, line in enumerate(lines):
        discount = _promotion(line, list_amounts[index], currency, now)
        if discount is not None:
            discounts[index], promoted[index] = discount, True
            steps.append(
                PriceStep("promotion", -discount, _promotion_detail(line, index, currency))
            )
    return discounts, promoted, steps


def _apply_coupon(
    coupon: Coupon,
    lines: Sequence[OrderLine],
    amounts: list[int],
    promoted: list[bool],
    *,
    currency: str,
    now: datetime,
    customer_redemptions: int,
    total_redemptions: int,
) -> tuple[list[int], PriceStep]:
    eligible = [
        index
        for index, line in enumerate(lines)
        if coupon.applies_to(line.product)
        and (coupon.stacks_with_promotions or not promoted[index])
    ]
    eligible_subtotal = sum(amounts[i] for i in eligible)
    check_coupon(
        coupon,
        now=now,
        currency=currency,
        eligible_subtotal=eligible_subtotal,
        customer_redemptions=customer_redemptions,
        total_redemptions=total_redemptions,
    )
    discount = coupon_discount(coupon, currency=currency, eligible_subtotal=eligible_subtotal)
    # Weights are the lines' own amounts and discount <= their sum, so no line's share
    # exceeds what is left of it.
    shares = _split(discount, [amounts[i] for i in eligible])
    parts = [0] * len(lines)
    for index, share in zip(eligible, shares, strict=True):
        parts[index] = share
    detail: dict[str, str | int] = {
        "code": coupon.code,
        "kind": str(coupon.kind),
        "eligible_subtotal": eligible_subtotal,
    }
    if coupon.percent_off is not None:
        detail["percent_off"] = str(coupon.percent_off)
    if coupon.amount_off is not None:
        detail["amount_off"] = coupon.amount_off[currency]
    return parts, PriceStep("coupon", -discount, detail)


def _apply_tax(tax: TaxRule, taxable: list[int]) -> tuple[list[int], list[int], PriceStep]:
    """Return each line's tax, each line's amount after tax, and the step."""
    rate = validate_rate(tax.rate, param="tax.rate")
    base = sum(taxable)
    if tax.inclusive:
        # The tax itself is rounded (not the net), as for exclusive tax: the tax is the
        # figure a tax authority sees. base * rate / (1 + rate) == base - base / (1 + rate).
        contained = _DIVISION.divide(_DIVISION.multiply(base, rate), _DIVISION.add(1, rate))
        tax_total = round_minor(contained, ROUNDING)
    else:
        tax_total = apply_rate(base, rate, ROUNDING)
    taxes = _split(tax_total, taxable)
    amounts = taxable if tax.inclusive else [a + t for a, t in zip(taxable, taxes, strict=True)]
    _bounded(sum(amounts), param="items", what="the order's amount with tax")
    detail: dict[str, str | int] = {
        "region": tax.region,
        "rate": str(rate),
        "mode": "inclusive" if tax.inclusive else "exclusive",
        "taxable": base,
        "tax": tax_total,
    }
    return taxes, amounts, PriceStep("tax", 0 if tax.inclusive else tax_total, detail)


def _apply_surcharge(rate: Decimal, amounts: list[int]) -> tuple[list[int], PriceStep]:
    fee_rate = validate_rate(rate, param="surcharge_rate")
    base = sum(amounts)
    surcharge = apply_rate(base, fee_rate, ROUNDING)
    _bounded(base + surcharge, param="items", what="the order's amount with surcharge")
    detail: dict[str, str | int] = {"rate": str(fee_rate), "base": base}
    return _split(surcharge, amounts), PriceStep("surcharge", surcharge, detail)


def _bundle_shares(
    line: OrderLine,
    *,
    index: int,
    currency: str,
    catalog: Mapping[str, Product],
    total: int,
    tax: int,
    surcharge: int,
) -> tuple[ComponentShare, ...]:
    """Split a bundle line across its components by their list prices in ``currency``.

    The line's total is split by list price; its tax is then split by those parts, and
    its surcharge by what remains of them, so every component's tax and surcharge fit
    inside its amount and each of the three sums exactly to the line's.
    """
    components = []
    for component_id in line.product.components:
        component = catalog.get(component_id)
        if component is None or component.price_in(currency) is None:
            raise InvalidRequest(
                f"bundle {line.product.id} component {component_id} is not sold in {currency}",
                code="bundle_component_not_priced",
                param=f"items[{index}].product_id",
            )
        components.append(component)
    amounts = _split(total, [c.prices[currency] for c in components])
    taxes = _split(tax, amounts)
    fees = _split(surcharge, [a - t for a, t in zip(amounts, taxes, strict=True)])
    return tuple(
        ComponentShare(c.id, a, t, f)
        for c, a, t, f in zip(components, amounts, taxes, fees, strict=True)
    )


def price_order(
    lines: Sequence[OrderLine],
    *,
    currency: str,
    now: datetime,
    coupon: Coupon | None = None,
    customer_redemptions: int = 0,
    total_redemptions: int = 0,
    tax: TaxRule | None = None,
    surcharge_rate: Decimal | None = None,
    catalog: Mapping[str, Product] | None = None,
    surface: str = DEFAULT_SURFACE,
) -> Quote:
    """Price ``lines`` in ``currency`` at ``now``; see the module docstring for the steps.

    ``catalog`` must hold the components of every bundle line. Raises ValidationFailed,
    InvalidRequest (codes ``order_empty``, ``quantity_out_of_range``, ``product_archived``,
    ``product_not_priced_in_currency``, ``bundle_component_not_priced`` and the coupon
    codes of :func:`~tuition.domain.coupons.check_coupon`), CurrencyError or
    AmountOverflow, each naming the offending param.
    """
    get_currency(currency, param="currency")
    require_aware(now, param="now")
    list_amounts = _list_amounts(lines, currency, surface)
    promotions, promoted, steps = _apply_promotions(lines, list_amounts, currency, now)
    amounts = [a - d for a, d in zip(list_amounts, promotions, strict=True)]
    coupon_parts = [0] * len(lines)
    if coupon is not None:
        coupon_parts, step = _apply_coupon(
            coupon,
            lines,
            amounts,
            promoted,
            currency=currency,
            now=now,
            customer_redemptions=customer_redemptions,
            total_redemptions=total_redemptions,
        )
        steps.append(step)
        amounts = [a - c for a, c in zip(amounts, coupon_parts, strict=True)]
    taxes = [0] * len(lines)
    if tax is not None:
        taxes, amounts, step = _apply_tax(tax, amounts)
        steps.append(step)
    surcharges = [0] * len(lines)
    if surcharge_rate is not None:
        surcharges, step = _apply_surcharge(surcharge_rate, amounts)
        steps.append(step)

    priced: list[PricedLine] = []
    for index, line in enumerate(lines):
        total = amounts[index] + surcharges[index]
        shares: tuple[ComponentShare, ...] = ()
        if line.product.kind is ProductKind.BUNDLE:
            shares = _bundle_shares(
                line,
                index=index,
                currency=currency,
                catalog=catalog or {},
                total=total,
                tax=taxes[index],
                surcharge=surcharges[index],
            )
        priced.append(
            PricedLine(
                index=index,
                product_id=line.product.id,
                kind=line.product.kind,
                quantity=line.quantity,
                unit_price=list_amounts[index] // line.quantity,
                list_amount=list_amounts[index],
                promotion_discount=promotions[index],
                coupon_discount=coupon_parts[index],
                tax=taxes[index],
                surcharge=surcharges[index],
                total=total,
                components=shares,
            )
        )
    return Quote(
        currency=currency,
        lines=tuple(priced),
        steps=tuple(steps),
        subtotal=sum(list_amounts),
        discount_total=sum(promotions) + sum(coupon_parts),
        tax_total=sum(taxes),
        surcharge=sum(surcharges),
        total=sum(line.total for line in priced),
        tax=tax,
        surcharge_rate=surcharge_rate,
        coupon_code=None if coupon is None else coupon.code,
    )
