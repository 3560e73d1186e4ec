from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuition.domain.catalog import Product, ProductKind, ProductStatus, Promotion
from tuition.domain.coupons import Coupon, CouponKind
from tuition.domain.errors import AmountOverflow, CurrencyError, InvalidRequest, ValidationFailed
from tuition.domain.money import MAX_AMOUNT
from tuition.domain.orders import OrderLine
from tuition.domain.pricing import Quote, TaxRule, price_order

NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)
ON_SALE = (NOW - timedelta(days=1), NOW + timedelta(days=1))
VAT_8 = TaxRule(rate=Decimal("0.08"), inclusive=False, region="CN")


def course(
    product_id: str = "prod_course",
    price: int = 20000,
    *,
    promotion: Promotion | None = None,
    kind: ProductKind = ProductKind.COURSE,
    status: ProductStatus = ProductStatus.ACTIVE,
    prices: dict[str, int] | None = None,
) -> Product:
    return Product(
        id=product_id,
        creator_id="cre_1",
        kind=kind,
        title=product_id,
        revenue_share=Decimal("0.7"),
        prices={"CNY": price} if prices is None else prices,
        status=status,
        promotion=promotion,
    )


def percent_promotion(percent: str) -> Promotion:
    return Promotion(starts_at=ON_SALE[0], ends_at=ON_SALE[1], percent_off=Decimal(percent))


def percent_coupon(percent: str, *, stacks: bool) -> Coupon:
    return Coupon(
        code="SAVE",
        kind=CouponKind.PERCENT,
        percent_off=Decimal(percent),
        stacks_with_promotions=stacks,
    )


def price(*lines: OrderLine, **options: Any) -> Quote:
    options.setdefault("currency", "CNY")
    options.setdefault("now", NOW)
    return price_order(list(lines), **options)


def assert_conserved(quote: Quote) -> None:
    """No step loses or invents a minor unit."""
    assert quote.total == sum(line.total for line in quote.lines)
    assert quote.subtotal == sum(line.list_amount for line in quote.lines)
    assert sum(step.amount for step in quote.steps) == quote.total - quote.subtotal
    inclusive = quote.tax is not None and quote.tax.inclusive
    added_tax = 0 if inclusive else quote.tax_total
    assert quote.total == quote.subtotal - quote.discount_total + added_tax + quote.surcharge
    for line in quote.lines:
        line_tax = 0 if inclusive else line.tax
        expected = (
            line.list_amount
            - line.promotion_discount
            - line.coupon_discount
            + line_tax
            + line.surcharge
        )
        assert line.total == expected
        assert min(line.promotion_discount, line.coupon_discount, line.tax, line.surcharge) >= 0
        assert line.list_amount - line.promotion_discount - line.coupon_discount >= 0
        if line.components:
            assert sum(c.amount for c in line.components) == line.total
            assert sum(c.tax for c in line.components) == line.tax
            assert sum(c.surcharge for c in line.components) == line.surcharge
            assert all(c.amount >= c.tax + c.surcharge >= 0 for c in line.components)


def test_200_cny_with_15_percent_promotion_and_8_percent_exclusive_tax_totals_183_60() -> None:
    quote = price(OrderLine(course(promotion=percent_promotion("0.15"))), tax=VAT_8)

    # 200.00 - 30.00 = 170.00; 170.00 x 8 % = 13.60; 170.00 + 13.60 = 183.60
    assert quote.subtotal == 20000
    assert quote.discount_total == 3000
    assert quote.tax_total == 1360
    assert quote.total == 18360
    assert [(s.name, s.amount) for s in quote.steps] == [("promotion", -3000), ("tax", 1360)]
    assert_conserved(quote)


def test_three_course_bundle_price_is_split_across_courses_by_list_price() -> None:
    courses = [course("c1", 19900), course("c2", 14900), course("c3", 9900)]
    bundle = Product(
        id="b1",
        creator_id="cre_1",
        kind=ProductKind.BUNDLE,
        title="All three",
        revenue_share=Decimal("0.7"),
        prices={"CNY": 29900},
        components=("c1", "c2", "c3"),
    )
    quote = price(OrderLine(bundle), catalog={c.id: c for c in courses})

    # 29900 x (199, 149, 99) / 447 = 13311.19, 9966.67, 6622.15: the spare unit goes
    # to the largest remainder (c2).
    shares = [(c.product_id, c.amount) for c in quote.lines[0].components]
    assert shares == [("c1", 13311), ("c2", 9967), ("c3", 6622)]
    assert sum(amount for _, amount in shares) == 29900
    assert quote.to_dict()["lines"][0]["components"][1] == {
        "product_id": "c2",
        "amount": 9967,
        "tax": 0,
        "surcharge": 0,
    }


def test_bundle_tax_is_split_across_components_alongside_the_amount() -> None:
    courses = [course("c1", 10000), course("c2", 10000), course("c3", 10000)]
    bundle = Product(
        id="b1",
        creator_id="cre_1",
        kind=ProductKind.BUNDLE,
        title="Trio",
        revenue_share=Decimal("0.7"),
        prices={"CNY": 10000},
        components=("c1", "c2", "c3"),
    )
    quote = price(OrderLine(bundle), catalog={c.id: c for c in courses}, tax=VAT_8)

    assert quote.total == 10800
    # 108.00 in three equal parts; the 8.00 of tax split by those parts.
    assert [(c.amount, c.tax) for c in quote.lines[0].components] == [
        (3600, 267),
        (3600, 267),
        (3600, 266),
    ]
    assert_conserved(quote)


def test_bundle_without_its_components_in_the_catalog_is_refused() -> None:
    bundle = Product(
        id="b1",
        creator_id="cre_1",
        kind=ProductKind.BUNDLE,
        title="Pair",
        revenue_share=Decimal("0.7"),
        prices={"CNY": 100},
        components=("c1", "c2"),
    )
    with pytest.raises(InvalidRequest) as caught:
        price(OrderLine(bundle), catalog={"c1": course("c1")})
    assert caught.value.code == "bundle_component_not_priced"
    assert caught.value.param == "items[0].product_id"


def test_inclusive_tax_is_the_part_of_the_price_that_is_tax_and_adds_nothing() -> None:
    quote = price(
        OrderLine(course(price=10600)),
        tax=TaxRule(rate=Decimal("0.06"), inclusive=True, region="CN"),
    )

    # 106.00 / 1.06 = 100.00, so 6.00 of the 106.00 is tax.
    assert quote.tax_total == 600
    assert quote.total == 10600
    assert [(s.name, s.amount) for s in quote.steps] == [("tax", 0)]
    assert quote.steps[0].detail["tax"] == 600
    assert_conserved(quote)


def test_inclusive_tax_rounds_the_tax_half_up() -> None:
    # 100.00 x 0.13 / 1.13 = 11.504...: 11.50 of tax, 88.50 net.
    quote = price(
        OrderLine(course(price=10000)),
        tax=TaxRule(rate=Decimal("0.13"), inclusive=True, region="CN"),
    )
    assert quote.tax_total == 1150
    assert quote.total == 10000


def test_surcharge_mode_adds_the_fee_rate_on_top() -> None:
    quote = price(OrderLine(course(price=10000)), surcharge_rate=Decimal("0.006"))

    assert quote.surcharge == 60
    assert quote.total == 10060
    assert [(s.name, s.amount) for s in quote.steps] == [("surcharge", 60)]
    assert quote.lines[0].net == 10000


def test_surcharge_applies_after_exclusive_tax() -> None:
    quote = price(OrderLine(course(price=10000)), tax=VAT_8, surcharge_rate=Decimal("0.006"))

    # 100.00 + 8.00 tax = 108.00; x 0.6 % = 0.648 -> 0.65
    assert (quote.tax_total, quote.surcharge, quote.total) == (800, 65, 10865)
    assert [s.name for s in quote.steps] == ["tax", "surcharge"]


def test_stacking_coupon_applies_on_top_of_the_promotion() -> None:
    quote = price(
        OrderLine(course(promotion=percent_promotion("0.15"))),
        coupon=percent_coupon("0.10", stacks=True),
    )

    # 200.00 - 15 % = 170.00; - 10 % = 153.00
    assert quote.lines[0].promotion_discount == 3000
    assert quote.lines[0].coupon_discount == 1700
    assert quote.total == 15300
    assert [(s.name, s.amount) for s in quote.steps] == [("promotion", -3000), ("coupon", -1700)]


def test_non_stacking_coupon_skips_lines_with_an_active_promotion() -> None:
    promoted = course("on_sale", 20000, promotion=percent_promotion("0.15"))
    plain = course("plain", 10000)
    quote = price(
        OrderLine(promoted), OrderLine(plain), coupon=percent_coupon("0.10", stacks=False)
    )

    assert [line.coupon_discount for line in quote.lines] == [0, 1000]
    assert quote.total == 17000 + 9000
    assert quote.steps[-1].detail["eligible_subtotal"] == 10000
    assert_conserved(quote)


def test_non_stacking_coupon_on_an_order_of_promoted_lines_only_is_not_applicable() -> None:
    with pytest.raises(InvalidRequest) as caught:
        price(
            OrderLine(course(promotion=percent_promotion("0.15"))),
            coupon=percent_coupon("0.10", stacks=False),
        )
    assert (caught.value.code, caught.value.param) == ("coupon_not_applicable", "coupon_code")


def test_non_stacking_coupon_applies_once_the_promotion_has_ended() -> None:
    ended = Promotion(starts_at=NOW - timedelta(days=7), ends_at=NOW, percent_off=Decimal("0.15"))
    quote = price(OrderLine(course(promotion=ended)), coupon=percent_coupon("0.10", stacks=False))
    assert quote.lines[0].promotion_discount == 0
    assert quote.total == 18000


def test_amount_off_coupon_larger_than_the_order_floors_the_total_at_zero() -> None:
    coupon = Coupon(code="BIG", kind=CouponKind.AMOUNT, amount_off={"CNY": 50000})
    quote = price(OrderLine(course(price=20000)), coupon=coupon, tax=VAT_8)

    assert quote.lines[0].coupon_discount == 20000
    assert quote.total == 0
    assert quote.tax_total == 0
    assert_conserved(quote)


def test_coupon_discount_is_split_across_eligible_lines_by_their_amounts() -> None:
    coupon = Coupon(code="TEN", kind=CouponKind.AMOUNT, amount_off={"CNY": 1000})
    quote = price(OrderLine(course("a", 10000)), OrderLine(course("b", 20000)), coupon=coupon)

    # 10.00 over 100.00 : 200.00 -> 3.333 : 6.667, the spare unit to the larger remainder.
    assert [line.coupon_discount for line in quote.lines] == [333, 667]
    assert quote.total == 29000


def test_coupon_limited_to_a_kind_leaves_other_lines_alone() -> None:
    coupon = Coupon(
        code="ART",
        kind=CouponKind.PERCENT,
        percent_off=Decimal("0.5"),
        applies_to_kinds=frozenset({ProductKind.ARTICLE}),
    )
    article = course("art", 1000, kind=ProductKind.ARTICLE)
    quote = price(OrderLine(course("c", 10000)), OrderLine(article), coupon=coupon)
    assert [line.coupon_discount for line in quote.lines] == [0, 500]


def test_amount_off_promotion_is_per_unit_and_never_below_zero() -> None:
    small = Promotion(starts_at=ON_SALE[0], ends_at=ON_SALE[1], amount_off={"CNY": 500})
    huge = Promotion(starts_at=ON_SALE[0], ends_at=ON_SALE[1], amount_off={"CNY": 99999})
    quote = price(
        OrderLine(course("a", 2000, promotion=small), quantity=3),
        OrderLine(course("b", 2000, promotion=huge)),
    )
    assert [line.promotion_discount for line in quote.lines] == [1500, 2000]
    assert [line.total for line in quote.lines] == [4500, 0]


def test_amount_off_promotion_without_the_order_currency_does_not_apply() -> None:
    promotion = Promotion(starts_at=ON_SALE[0], ends_at=ON_SALE[1], amount_off={"USD": 100})
    product = course(prices={"CNY": 1000, "USD": 200}, promotion=promotion)
    quote = price(OrderLine(product), coupon=percent_coupon("0.1", stacks=False))
    assert quote.lines[0].promotion_discount == 0
    assert quote.lines[0].coupon_discount == 100


def test_promotion_is_inactive_before_its_start_and_from_its_end() -> None:
    promotion = percent_promotion("0.5")
    product = course(price=1000, promotion=promotion)
    assert price(OrderLine(product), now=promotion.starts_at).total == 500
    assert price(OrderLine(product), now=promotion.starts_at - timedelta(seconds=1)).total == 1000
    assert price(OrderLine(product), now=promotion.ends_at).total == 1000


def test_quantity_multiplies_the_list_price() -> None:
    quote = price(OrderLine(course(price=990), quantity=3))
    assert (quote.subtotal, quote.total) == (2970, 2970)


def test_empty_order_is_refused() -> None:
    with pytest.raises(ValidationFailed) as caught:
        price()
    assert (caught.value.code, caught.value.param) == ("order_empty", "items")


@pytest.mark.parametrize("quantity", [0, -1, 100, True])
def test_quantity_outside_1_to_99_is_refused(quantity: int) -> None:
    with pytest.raises(ValidationFailed) as caught:
        price(OrderLine(course("a")), OrderLine(course("b"), quantity=quantity))
    assert (caught.value.code, caught.value.param) == ("quantity_out_of_range", "items[1].quantity")


def test_archived_product_is_refused() -> None:
    with pytest.raises(InvalidRequest) as caught:
        price(OrderLine(course("a")), OrderLine(course("b", status=ProductStatus.ARCHIVED)))
    assert (caught.value.code, caught.value.param) == ("product_archived", "items[1].product_id")


def test_product_without_a_price_in_the_order_currency_is_refused() -> None:
    with pytest.raises(InvalidRequest) as caught:
        price(OrderLine(course()), currency="USD")
    assert caught.value.code == "product_not_priced_in_currency"
    assert caught.value.param == "items[0].product_id"


def test_unknown_currency_is_refused() -> None:
    with pytest.raises(CurrencyError) as caught:
        price(OrderLine(course()), currency="cny")
    assert caught.value.param == "currency"


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValidationFailed):
        price(OrderLine(course()), now=datetime(2024, 1, 1))


def test_line_beyond_the_largest_amount_names_its_quantity() -> None:
    big = OrderLine(course("big", MAX_AMOUNT // 10), quantity=11)
    with pytest.raises(AmountOverflow) as caught:
        price(OrderLine(course()), big)
    assert caught.value.param == "items[1].quantity"


def test_order_beyond_the_largest_amount_names_the_items() -> None:
    line = OrderLine(course(price=MAX_AMOUNT // 2 + 1))
    with pytest.raises(AmountOverflow) as caught:
        price(line, line)
    assert caught.value.param == "items"


def test_exclusive_tax_pushing_the_order_beyond_the_largest_amount_is_refused() -> None:
    with pytest.raises(AmountOverflow) as caught:
        price(OrderLine(course(price=MAX_AMOUNT)), tax=VAT_8)
    assert caught.value.param == "items"


@pytest.mark.parametrize("rate", [Decimal("-0.01"), Decimal("1.01"), Decimal("NaN")])
def test_tax_rate_outside_0_to_1_is_refused(rate: Decimal) -> None:
    with pytest.raises(ValidationFailed) as caught:
        price(OrderLine(course()), tax=TaxRule(rate=rate, inclusive=False, region="CN"))
    assert caught.value.param == "tax.rate"


def test_breakdown_is_json_with_no_decimal_or_float() -> None:
    quote = price(
        OrderLine(course(promotion=percent_promotion("0.15"))),
        coupon=percent_coupon("0.1", stacks=True),
        tax=VAT_8,
        surcharge_rate=Decimal("0.006"),
    )
    breakdown = quote.to_dict()

    def leaves(value: object) -> list[object]:
        if isinstance(value, dict):
            return [leaf for item in value.values() for leaf in leaves(item)]
        if isinstance(value, list):
            return [leaf for item in value for leaf in leaves(item)]
        return [value]

    assert all(type(leaf) in (int, str, type(None)) for leaf in leaves(breakdown))
    assert json.loads(json.dumps(breakdown)) == breakdown
    assert breakdown["total"] == quote.total
    assert breakdown["tax"] == {"region": "CN", "rate": "0.08", "mode": "exclusive"}
    assert [step["name"] for step in breakdown["steps"]] == [
        "promotion",
        "coupon",
        "tax",
        "surcharge",
    ]


# -- properties ------------------------------------------------------------------------

rates = st.decimals(min_value=0, max_value=1, places=4, allow_nan=False, allow_infinity=False)
positive_rates = rates.filter(lambda rate: rate > 0)
prices = st.integers(min_value=1, max_value=10**9)


@st.composite
def products(draw: st.DrawFn, index: int) -> Product:
    promotion = None
    if draw(st.booleans()):
        if draw(st.booleans()):
            promotion = Promotion(ON_SALE[0], ON_SALE[1], percent_off=draw(positive_rates))
        else:
            promotion = Promotion(ON_SALE[0], ON_SALE[1], amount_off={"CNY": draw(prices)})
    kind = draw(st.sampled_from([ProductKind.COURSE, ProductKind.ARTICLE, ProductKind.BUNDLE]))
    components = ("c1", "c2", "c3") if kind is ProductKind.BUNDLE else ()
    return Product(
        id=f"p{index}",
        creator_id="cre_1",
        kind=kind,
        title="t",
        revenue_share=Decimal("0.5"),
        prices={"CNY": draw(prices)},
        components=components,
        promotion=promotion,
    )


@st.composite
def orders(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(min_value=1, max_value=5))
    lines = [
        OrderLine(draw(products(i)), draw(st.integers(min_value=1, max_value=99)))
        for i in range(count)
    ]
    coupon = None
    if draw(st.booleans()):
        stacks = draw(st.booleans())
        if draw(st.booleans()):
            percent = draw(positive_rates)
            coupon = Coupon(
                "C", CouponKind.PERCENT, percent_off=percent, stacks_with_promotions=stacks
            )
        else:
            off = {"CNY": draw(prices)}
            coupon = Coupon("C", CouponKind.AMOUNT, amount_off=off, stacks_with_promotions=stacks)
    tax = None
    if draw(st.booleans()):
        tax = TaxRule(rate=draw(rates), inclusive=draw(st.booleans()), region="CN")
    surcharge = draw(st.none() | rates)
    catalog = {
        f"c{i}": course(f"c{i}", draw(st.integers(min_value=1, max_value=10**6))) for i in (1, 2, 3)
    }
    return {"lines": lines, "coupon": coupon, "tax": tax, "surcharge": surcharge, "cat": catalog}


@settings(max_examples=400, deadline=None)
@given(orders())
def test_no_step_loses_or_invents_a_minor_unit(order: dict[str, Any]) -> None:
    refused: InvalidRequest | None = None
    try:
        quote = price(
            *order["lines"],
            coupon=order["coupon"],
            tax=order["tax"],
            surcharge_rate=order["surcharge"],
            catalog=order["cat"],
        )
    except InvalidRequest as error:
        refused = error
    if refused is not None:
        # Only a coupon that finds nothing to discount may refuse a well-formed order.
        assert refused.code == "coupon_not_applicable"
        return
    assert_conserved(quote)
    assert json.loads(json.dumps(quote.to_dict()))["total"] == quote.total
