from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tuition.domain.catalog import Product, ProductKind
from tuition.domain.coupons import (
    Coupon,
    CouponKind,
    check_coupon,
    coupon_discount,
    normalize_code,
    validate_coupon,
)
from tuition.domain.errors import InvalidRequest, ValidationFailed

NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)


def coupon(**changes: object) -> Coupon:
    base = Coupon(code="SPRING", kind=CouponKind.PERCENT, percent_off=Decimal("0.2"))
    return replace(base, **changes)  # type: ignore[arg-type]


def check(
    target: Coupon,
    *,
    currency: str = "CNY",
    eligible_subtotal: int = 10000,
    customer_redemptions: int = 0,
    total_redemptions: int = 0,
) -> None:
    check_coupon(
        target,
        now=NOW,
        currency=currency,
        eligible_subtotal=eligible_subtotal,
        customer_redemptions=customer_redemptions,
        total_redemptions=total_redemptions,
    )


def refusal(target: Coupon, **context: int | str) -> str:
    with pytest.raises(InvalidRequest) as caught:
        check(target, **context)  # type: ignore[arg-type]
    assert caught.value.param == "coupon_code"
    assert target.code in caught.value.message
    return caught.value.code


def test_a_plain_percent_coupon_passes() -> None:
    check(coupon())


def test_an_inactive_coupon_is_refused() -> None:
    assert refusal(coupon(active=False)) == "coupon_inactive"


def test_a_coupon_before_its_start_is_refused() -> None:
    assert refusal(coupon(starts_at=NOW + timedelta(seconds=1))) == "coupon_not_started"
    check(coupon(starts_at=NOW))


def test_a_coupon_from_its_end_is_expired() -> None:
    assert refusal(coupon(ends_at=NOW)) == "coupon_expired"
    check(coupon(ends_at=NOW + timedelta(seconds=1)))


def test_a_fully_redeemed_coupon_is_exhausted() -> None:
    assert refusal(coupon(max_redemptions=100), total_redemptions=100) == "coupon_exhausted"
    check(coupon(max_redemptions=100), total_redemptions=99)


def test_a_customer_at_their_limit_is_refused() -> None:
    limited = coupon(max_per_customer=1)
    assert refusal(limited, customer_redemptions=1) == "coupon_customer_limit_reached"
    check(limited, customer_redemptions=0)


def test_a_coupon_with_nothing_eligible_is_not_applicable() -> None:
    assert refusal(coupon(), eligible_subtotal=0) == "coupon_not_applicable"


def test_an_amount_coupon_without_the_order_currency_is_not_applicable() -> None:
    amount = Coupon(code="TEN", kind=CouponKind.AMOUNT, amount_off={"CNY": 1000})
    assert refusal(amount, currency="USD") == "coupon_not_applicable"
    check(amount)


def test_a_minimum_spend_without_the_order_currency_is_not_applicable() -> None:
    assert refusal(coupon(min_spend={"CNY": 100}), currency="USD") == "coupon_not_applicable"


def test_an_eligible_subtotal_below_the_minimum_spend_is_refused() -> None:
    minimum = coupon(min_spend={"CNY": 10000})
    assert refusal(minimum, eligible_subtotal=9999) == "coupon_below_minimum_spend"
    check(minimum, eligible_subtotal=10000)


def test_the_most_fundamental_reason_is_reported_first() -> None:
    everything_wrong = coupon(
        active=False,
        ends_at=NOW,
        max_redemptions=1,
        min_spend={"CNY": 10**6},
    )
    assert refusal(everything_wrong, total_redemptions=1) == "coupon_inactive"
    assert refusal(replace(everything_wrong, active=True), total_redemptions=1) == "coupon_expired"


def test_a_coupon_for_nothing_in_particular_applies_to_everything() -> None:
    course = Product("p1", "c", ProductKind.COURSE, "t", Decimal("0.5"), {"CNY": 1})
    assert coupon().applies_to(course)


def test_product_and_kind_restrictions_widen_each_other() -> None:
    course = Product("p1", "c", ProductKind.COURSE, "t", Decimal("0.5"), {"CNY": 1})
    article = Product("p2", "c", ProductKind.ARTICLE, "t", Decimal("0.5"), {"CNY": 1})
    column = Product("p3", "c", ProductKind.COLUMN, "t", Decimal("0.5"), {"CNY": 1})
    restricted = coupon(
        applies_to_products=frozenset({"p1"}), applies_to_kinds=frozenset({ProductKind.ARTICLE})
    )
    assert restricted.applies_to(course)
    assert restricted.applies_to(article)
    assert not restricted.applies_to(column)


def test_percent_discount_rounds_half_up() -> None:
    # 20 % of 0.03 is 0.006 -> 0.01; 20 % of 0.02 is 0.004 -> 0.00
    assert coupon_discount(coupon(), currency="CNY", eligible_subtotal=3) == 1
    assert coupon_discount(coupon(), currency="CNY", eligible_subtotal=2) == 0
    assert coupon_discount(coupon(), currency="CNY", eligible_subtotal=2250) == 450


def test_amount_discount_never_exceeds_the_eligible_subtotal() -> None:
    amount = Coupon(code="BIG", kind=CouponKind.AMOUNT, amount_off={"CNY": 5000})
    assert coupon_discount(amount, currency="CNY", eligible_subtotal=1234) == 1234
    assert coupon_discount(amount, currency="CNY", eligible_subtotal=9000) == 5000


def test_codes_are_normalised_to_upper_case_without_blanks() -> None:
    assert normalize_code("  spring24 ") == "SPRING24"


def test_a_well_formed_coupon_validates() -> None:
    validate_coupon(coupon(min_spend={"CNY": 100}, max_redemptions=10, max_per_customer=1))
    validate_coupon(Coupon(code="TEN", kind=CouponKind.AMOUNT, amount_off={"CNY": 1000}))


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"code": "spring"}, "code"),
        ({"percent_off": None}, "percent_off"),
        ({"amount_off": {"CNY": 100}}, "percent_off"),
        ({"percent_off": Decimal(0)}, "percent_off"),
        ({"percent_off": Decimal("1.2")}, "percent_off"),
        ({"min_spend": {"CNY": 0}}, "min_spend.CNY"),
        ({"starts_at": NOW, "ends_at": NOW}, "ends_at"),
        ({"max_redemptions": 0}, "max_redemptions"),
        ({"max_per_customer": -1}, "max_per_customer"),
    ],
)
def test_malformed_coupons_are_refused_naming_the_field(
    changes: dict[str, object], param: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_coupon(coupon(**changes))
    assert caught.value.param == param


def test_an_amount_coupon_needs_amount_off_and_no_percentage() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_coupon(Coupon(code="X", kind=CouponKind.AMOUNT, percent_off=Decimal("0.1")))
    assert caught.value.param == "amount_off"
