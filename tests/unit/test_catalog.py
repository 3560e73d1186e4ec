from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tuition.domain.catalog import (
    Creator,
    MembershipPeriod,
    Product,
    ProductKind,
    Promotion,
    add_months,
    period_end,
    validate_bundle_components,
    validate_creator,
    validate_product,
    validate_promotion,
)
from tuition.domain.errors import AmountOverflow, CurrencyError, ValidationFailed
from tuition.domain.money import MAX_AMOUNT

START = datetime(2024, 6, 1, tzinfo=UTC)


def product(**changes: object) -> Product:
    base = Product(
        id="prod_1",
        creator_id="cre_1",
        kind=ProductKind.COURSE,
        title="Python",
        revenue_share=Decimal("0.7"),
        prices={"CNY": 19900},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def bundle(*components: str) -> Product:
    return product(id="bundle_1", kind=ProductKind.BUNDLE, components=components)


def refused(target: Product) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        validate_product(target)
    return caught.value


# -- membership periods ----------------------------------------------------------------


def test_a_month_from_january_31_ends_on_the_last_day_of_february() -> None:
    assert period_end(datetime(2023, 1, 31, tzinfo=UTC), MembershipPeriod.MONTH) == datetime(
        2023, 2, 28, tzinfo=UTC
    )
    assert period_end(datetime(2024, 1, 31, tzinfo=UTC), MembershipPeriod.MONTH) == datetime(
        2024, 2, 29, tzinfo=UTC
    )


def test_a_quarter_crosses_the_year_and_clamps_the_day() -> None:
    start = datetime(2023, 11, 30, 8, 15, tzinfo=UTC)
    assert period_end(start, MembershipPeriod.QUARTER) == datetime(2024, 2, 29, 8, 15, tzinfo=UTC)


def test_a_year_from_february_29_ends_on_february_28() -> None:
    start = datetime(2024, 2, 29, tzinfo=UTC)
    assert period_end(start, MembershipPeriod.YEAR) == datetime(2025, 2, 28, tzinfo=UTC)


def test_several_periods_are_counted_from_the_start_not_chained() -> None:
    start = datetime(2024, 1, 31, tzinfo=UTC)
    assert period_end(start, MembershipPeriod.MONTH, 3) == datetime(2024, 4, 30, tzinfo=UTC)
    assert period_end(start, MembershipPeriod.YEAR, 2) == datetime(2026, 1, 31, tzinfo=UTC)


def test_period_end_keeps_the_wall_clock_time_and_offset() -> None:
    beijing = timezone(timedelta(hours=8))
    start = datetime(2024, 3, 15, 23, 30, tzinfo=beijing)
    end = period_end(start, MembershipPeriod.MONTH)
    assert end == datetime(2024, 4, 15, 23, 30, tzinfo=beijing)
    assert end.utcoffset() == timedelta(hours=8)


def test_period_end_refuses_a_naive_start() -> None:
    with pytest.raises(ValidationFailed) as caught:
        period_end(datetime(2024, 1, 1), MembershipPeriod.MONTH)
    assert caught.value.code == "datetime_naive"


def test_add_months_of_zero_is_the_same_moment() -> None:
    assert add_months(START, 0) == START


# -- products ----------------------------------------------------------------------------


def test_a_plain_course_is_valid() -> None:
    validate_product(product())


def test_a_bundle_needs_at_least_two_components() -> None:
    error = refused(bundle("c1"))
    assert (error.code, error.param) == ("bundle_too_few_components", "components")


def test_a_bundle_cannot_list_a_component_twice_or_itself() -> None:
    assert refused(bundle("c1", "c1")).code == "bundle_duplicate_component"
    assert refused(bundle("c1", "bundle_1")).code == "bundle_contains_bundle"


def test_a_bundle_cannot_contain_another_bundle() -> None:
    inner = product(id="inner", kind=ProductKind.BUNDLE, components=("a", "b"))
    catalog = {"c1": product(id="c1"), "inner": inner}
    with pytest.raises(ValidationFailed) as caught:
        validate_bundle_components(bundle("c1", "inner"), catalog)
    assert (caught.value.code, caught.value.param) == ("bundle_contains_bundle", "components[1]")


def test_a_bundle_cannot_contain_a_topup_or_membership() -> None:
    topup = product(id="t", kind=ProductKind.TOPUP, topup_credit=100)
    with pytest.raises(ValidationFailed) as caught:
        validate_bundle_components(bundle("c1", "t"), {"c1": product(id="c1"), "t": topup})
    assert caught.value.code == "bundle_component_not_allowed"


def test_bundle_components_must_exist_and_be_priced_in_the_bundles_currencies() -> None:
    with pytest.raises(ValidationFailed) as missing:
        validate_bundle_components(bundle("c1", "c2"), {"c1": product(id="c1")})
    assert (missing.value.code, missing.value.param) == (
        "bundle_component_missing",
        "components[1]",
    )

    usd_only = product(id="c2", prices={"USD": 100})
    with pytest.raises(ValidationFailed) as unpriced:
        validate_bundle_components(bundle("c1", "c2"), {"c1": product(id="c1"), "c2": usd_only})
    assert unpriced.value.code == "bundle_component_not_priced"


def test_valid_bundle_components_pass() -> None:
    catalog = {"c1": product(id="c1"), "c2": product(id="c2", kind=ProductKind.ARTICLE)}
    validate_product(bundle("c1", "c2"))
    validate_bundle_components(bundle("c1", "c2"), catalog)


def test_only_bundles_have_components() -> None:
    error = refused(product(components=("c1", "c2")))
    assert (error.code, error.param) == ("components_not_allowed", "components")


def test_a_membership_requires_a_period_and_only_memberships_have_one() -> None:
    error = refused(product(kind=ProductKind.MEMBERSHIP))
    assert (error.code, error.param) == ("membership_period_required", "period")
    assert refused(product(period=MembershipPeriod.MONTH)).code == "period_not_allowed"
    validate_product(product(kind=ProductKind.MEMBERSHIP, period=MembershipPeriod.YEAR))


def test_a_topup_requires_a_positive_credit() -> None:
    error = refused(product(kind=ProductKind.TOPUP))
    assert (error.code, error.param) == ("topup_credit_required", "topup_credit")
    assert refused(product(kind=ProductKind.TOPUP, topup_credit=0)).code == "amount_not_positive"
    assert refused(product(topup_credit=100)).code == "topup_credit_not_allowed"
    validate_product(product(kind=ProductKind.TOPUP, topup_credit=6000))


def test_a_topup_credit_beyond_the_largest_amount_is_refused() -> None:
    with pytest.raises(AmountOverflow) as caught:
        validate_product(product(kind=ProductKind.TOPUP, topup_credit=MAX_AMOUNT + 1))
    assert caught.value.param == "topup_credit"


@pytest.mark.parametrize("amount", [0, -1, True])
def test_prices_must_be_positive_integers(amount: int) -> None:
    error = refused(product(prices={"CNY": amount}))
    assert (error.code, error.param) == ("amount_not_positive", "prices.CNY")


def test_a_price_beyond_the_largest_amount_is_refused() -> None:
    validate_product(product(prices={"CNY": MAX_AMOUNT}))
    with pytest.raises(AmountOverflow) as caught:
        validate_product(product(prices={"CNY": MAX_AMOUNT + 1}))
    assert caught.value.param == "prices.CNY"


@pytest.mark.parametrize("code", ["cny", "XXX", "RMB"])
def test_prices_must_use_iso_currency_codes(code: str) -> None:
    with pytest.raises(CurrencyError) as caught:
        validate_product(product(prices={code: 100}))
    assert caught.value.param == f"prices.{code}"


def test_a_product_needs_at_least_one_price() -> None:
    assert refused(product(prices={})).param == "prices"


@pytest.mark.parametrize("share", [Decimal("-0.1"), Decimal("1.01"), Decimal("NaN")])
def test_revenue_share_must_be_a_fraction(share: Decimal) -> None:
    assert refused(product(revenue_share=share)).param == "revenue_share"


def test_a_product_needs_a_title() -> None:
    assert refused(product(title="  ")).code == "title_required"


def test_a_creator_needs_an_id_a_name_and_a_fractional_share() -> None:
    validate_creator(Creator(id="cre_1", name="Ada"))
    with pytest.raises(ValidationFailed):
        validate_creator(Creator(id="cre_1", name="", default_revenue_share=Decimal("0.5")))
    with pytest.raises(ValidationFailed):
        validate_creator(Creator(id="cre_1", name="Ada", default_revenue_share=Decimal(2)))


# -- promotions --------------------------------------------------------------------------


def window(**changes: object) -> Promotion:
    base = Promotion(starts_at=START, ends_at=START + timedelta(days=7))
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_promotion_sets_exactly_one_kind_of_discount() -> None:
    for ambiguous in (window(), window(percent_off=Decimal("0.1"), amount_off={"CNY": 100})):
        with pytest.raises(ValidationFailed) as caught:
            validate_promotion(ambiguous)
        assert caught.value.code == "promotion_discount_ambiguous"
    validate_promotion(window(percent_off=Decimal("0.1")))
    validate_promotion(window(amount_off={"CNY": 100}))


def test_a_promotion_must_end_after_it_starts() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_promotion(window(ends_at=START, percent_off=Decimal("0.1")))
    assert caught.value.param == "promotion.ends_at"


@pytest.mark.parametrize("percent", [Decimal(0), Decimal("1.5")])
def test_a_promotion_percentage_is_in_zero_exclusive_to_one(percent: Decimal) -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_product(product(promotion=window(percent_off=percent)))
    assert caught.value.param == "promotion.percent_off"


def test_a_promotion_is_active_from_its_start_until_just_before_its_end() -> None:
    promotion = window(percent_off=Decimal("0.1"))
    assert promotion.is_active(START)
    assert not promotion.is_active(START - timedelta(microseconds=1))
    assert not promotion.is_active(promotion.ends_at)
