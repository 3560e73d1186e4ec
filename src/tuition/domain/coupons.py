"""Coupons: order-level discount codes and the rules that decide whether one applies.

Pure rules only. Counting a redemption atomically is the store's job (a conditional
``UPDATE ... WHERE redemptions < max_redemptions``); :func:`check_coupon` is given the
counts and says whether the coupon may be used now.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from tuition.domain.catalog import (
    Product,
    ProductKind,
    require_aware,
    validate_amount_map,
    validate_rate,
)
from tuition.domain.errors import InvalidRequest, ValidationFailed
from tuition.domain.money import Rounding, apply_rate

PARAM = "coupon_code"


class CouponKind(StrEnum):
    PERCENT = "percent"
    AMOUNT = "amount"


@dataclass(frozen=True, slots=True)
class Coupon:
    """A discount code. ``percent_off`` is a fraction (``Decimal("0.2")`` = 20 % off).

    ``applies_to_products`` and ``applies_to_kinds`` widen each other: a line is eligible
    when its product id or its kind is listed; both empty means every product. The time
    window is ``[starts_at, ends_at)``; ``None`` leaves that side open. ``min_spend`` is
    compared with the eligible subtotal after promotions.
    """

    code: str
    kind: CouponKind
    percent_off: Decimal | None = None
    amount_off: Mapping[str, int] | None = None
    min_spend: Mapping[str, int] | None = None
    applies_to_products: frozenset[str] = frozenset()
    applies_to_kinds: frozenset[ProductKind] = frozenset()
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    max_redemptions: int | None = None
    max_per_customer: int | None = None
    stacks_with_promotions: bool = False
    active: bool = True

    def applies_to(self, product: Product) -> bool:
        if not self.applies_to_products and not self.applies_to_kinds:
            return True
        return product.id in self.applies_to_products or product.kind in self.applies_to_kinds


def normalize_code(code: str) -> str:
    """Coupon codes are matched case-insensitively, without surrounding blanks."""
    return code.strip().upper()


def validate_coupon(coupon: Coupon) -> None:
    """Check a coupon's definition; raise ValidationFailed naming the field."""
    if not coupon.code or coupon.code != normalize_code(coupon.code):
        raise ValidationFailed(
            "code must be non-empty, upper case and without surrounding blanks",
            code="coupon_code_invalid",
            param="code",
        )
    if coupon.kind is CouponKind.PERCENT:
        if coupon.percent_off is None or coupon.amount_off is not None:
            raise ValidationFailed(
                "a percent coupon sets percent_off and no amount_off",
                code="coupon_discount_mismatch",
                param="percent_off",
            )
        validate_rate(coupon.percent_off, param="percent_off", allow_zero=False)
    else:
        if coupon.amount_off is None or coupon.percent_off is not None:
            raise ValidationFailed(
                "an amount coupon sets amount_off and no percent_off",
                code="coupon_discount_mismatch",
                param="amount_off",
            )
        validate_amount_map(coupon.amount_off, param="amount_off")
    if coupon.min_spend is not None:
        validate_amount_map(coupon.min_spend, param="min_spend")
    if coupon.starts_at is not None:
        require_aware(coupon.starts_at, param="starts_at")
    if coupon.ends_at is not None:
        require_aware(coupon.ends_at, param="ends_at")
        if coupon.starts_at is not None and coupon.ends_at <= coupon.starts_at:
            raise ValidationFailed(
                "ends_at must be after starts_at", code="coupon_window_invalid", param="ends_at"
            )
    for name in ("max_redemptions", "max_per_customer"):
        limit = getattr(coupon, name)
        if limit is not None and (type(limit) is not int or limit < 1):
            raise ValidationFailed(
                f"{name} must be a positive integer", code="limit_invalid", param=name
            )


def _refuse(message: str, code: str) -> InvalidRequest:
    return InvalidRequest(message, code=code, param=PARAM)


def check_coupon(
    coupon: Coupon,
    *,
    now: datetime,
    currency: str,
    eligible_subtotal: int,
    customer_redemptions: int,
    total_redemptions: int,
) -> None:
    """Raise InvalidRequest (``param="coupon_code"``) if the coupon may not be used now.

    Checks run from the coupon's own state to the order's, so a buyer is told the most
    fundamental reason first: inactive, not started, expired, exhausted, customer limit,
    not applicable (no eligible amount, or no amount_off / min_spend in this currency),
    below minimum spend.
    """
    code = coupon.code
    if not coupon.active:
        raise _refuse(f"coupon {code} is not active", "coupon_inactive")
    if coupon.starts_at is not None and now < coupon.starts_at:
        raise _refuse(f"coupon {code} is not valid yet", "coupon_not_started")
    if coupon.ends_at is not None and now >= coupon.ends_at:
        raise _refuse(f"coupon {code} has expired", "coupon_expired")
    if coupon.max_redemptions is not None and total_redemptions >= coupon.max_redemptions:
        raise _refuse(f"coupon {code} has been fully redeemed", "coupon_exhausted")
    if coupon.max_per_customer is not None and customer_redemptions >= coupon.max_per_customer:
        raise _refuse(
            f"coupon {code} has already been used the maximum number of times by this customer",
            "coupon_customer_limit_reached",
        )
    # A limit we cannot express in this currency is treated as "does not apply here"
    # rather than guessed at via an exchange rate.
    if coupon.kind is CouponKind.AMOUNT and currency not in (coupon.amount_off or {}):
        raise _refuse(f"coupon {code} cannot be used in {currency}", "coupon_not_applicable")
    if coupon.min_spend is not None and currency not in coupon.min_spend:
        raise _refuse(f"coupon {code} cannot be used in {currency}", "coupon_not_applicable")
    if eligible_subtotal <= 0:
        raise _refuse(f"coupon {code} applies to nothing in this order", "coupon_not_applicable")
    if coupon.min_spend is not None and eligible_subtotal < coupon.min_spend[currency]:
        raise _refuse(
            f"coupon {code} needs a spend of at least {coupon.min_spend[currency]} "
            f"minor units of {currency} on eligible items",
            "coupon_below_minimum_spend",
        )


def coupon_discount(coupon: Coupon, *, currency: str, eligible_subtotal: int) -> int:
    """The discount on ``eligible_subtotal``: never negative, never more than it.

    Percent coupons round HALF_UP; an amount coupon larger than the subtotal floors the
    eligible amount at zero instead of going negative.
    """
    if coupon.kind is CouponKind.PERCENT:
        assert coupon.percent_off is not None
        discount = apply_rate(eligible_subtotal, coupon.percent_off, Rounding.HALF_UP)
    else:
        assert coupon.amount_off is not None
        discount = coupon.amount_off[currency]
    return max(0, min(discount, eligible_subtotal))
