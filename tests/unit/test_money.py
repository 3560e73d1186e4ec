from __future__ import annotations

import ast
import decimal
import inspect
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tuition.domain import money
from tuition.domain.errors import AmountOverflow, CurrencyError, ValidationFailed
from tuition.domain.money import (
    CURRENCIES,
    MAX_AMOUNT,
    Currency,
    Money,
    Rounding,
    allocate,
    allocate_by_ratios,
    apply_rate,
    check_amount,
    format_amount,
    get_currency,
    parse_decimal_amount,
    parse_rate,
    round_minor,
)

CNY = get_currency("CNY")
USD = get_currency("USD")
JPY = get_currency("JPY")
KWD = get_currency("KWD")

amounts = st.integers(min_value=-MAX_AMOUNT, max_value=MAX_AMOUNT)
weight_lists = st.lists(st.integers(min_value=0, max_value=10**18), min_size=1, max_size=40)
currencies = st.sampled_from(sorted(CURRENCIES.values(), key=lambda c: c.code))


# --- currencies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "exponent"),
    [
        *[(c, 2) for c in ["CNY", "USD", "EUR", "GBP", "HKD", "TWD", "SGD", "AUD", "CAD", "CHF"]],
        *[(c, 0) for c in ["JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XAF", "XOF"]],
        *[(c, 3) for c in ["BHD", "KWD", "JOD", "OMR", "TND", "IQD", "LYD"]],
    ],
)
def test_currency_exponents_follow_iso_4217(code: str, exponent: int) -> None:
    assert get_currency(code) == Currency(code, exponent)


def test_unknown_currency_raises_currency_error_naming_the_param() -> None:
    with pytest.raises(CurrencyError) as info:
        get_currency("XYZ", param="items[0].currency")
    assert info.value.code == "currency_unknown"
    assert info.value.param == "items[0].currency"


def test_lowercase_currency_is_rejected_with_a_hint_to_use_upper_case() -> None:
    with pytest.raises(CurrencyError) as info:
        get_currency("cny")
    assert info.value.code == "currency_unknown"
    assert info.value.param == "currency"
    assert "'CNY'" in info.value.message


# --- Money --------------------------------------------------------------------------------


def test_money_of_looks_up_the_currency() -> None:
    assert Money.of(8880, "CNY") == Money(8880, CNY)


@pytest.mark.parametrize("amount", [1.0, Decimal(1), True, "1", None])
def test_money_rejects_non_int_amounts(amount: object) -> None:
    with pytest.raises(TypeError):
        Money(amount, CNY)  # type: ignore[arg-type]


def test_money_arithmetic_in_one_currency() -> None:
    a, b = Money(500, CNY), Money(120, CNY)
    assert a + b == Money(620, CNY)
    assert a - b == Money(380, CNY)
    assert -a == Money(-500, CNY)
    assert a * 3 == 3 * a == Money(1500, CNY)
    assert b < a
    assert b <= a
    assert a > b
    assert a >= b
    assert a <= a
    assert (a - a).is_zero()
    assert not a.is_zero()
    assert (b - a).is_negative()
    assert not a.is_negative()
    assert str(Money(-5, CNY)) == "-0.05 CNY"


@pytest.mark.parametrize(
    "operation",
    [
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a < b,
        lambda a, b: a <= b,
        lambda a, b: a > b,
        lambda a, b: a >= b,
    ],
)
def test_mismatched_currency_arithmetic_raises_currency_error(operation: object) -> None:
    with pytest.raises(CurrencyError) as info:
        operation(Money(100, CNY), Money(100, USD))  # type: ignore[operator]
    assert info.value.code == "currency_mismatch"


def test_money_in_different_currencies_is_unequal_rather_than_an_error() -> None:
    assert Money(100, CNY) != Money(100, USD)


@pytest.mark.parametrize("factor", [1.5, Decimal("1.5"), True])
def test_money_multiplies_only_by_int(factor: object) -> None:
    with pytest.raises(TypeError):
        Money(100, CNY) * factor  # type: ignore[operator]


def test_money_does_not_mix_with_bare_numbers() -> None:
    with pytest.raises(TypeError):
        Money(100, CNY) + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        Money(100, CNY) < 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        Money(100, "CNY")  # type: ignore[arg-type]


def test_check_amount_allows_the_maximum_and_rejects_beyond_it() -> None:
    assert check_amount(MAX_AMOUNT, param="amount") == MAX_AMOUNT
    assert check_amount(-MAX_AMOUNT, param="amount") == -MAX_AMOUNT
    with pytest.raises(AmountOverflow) as info:
        check_amount(MAX_AMOUNT + 1, param="items[2].price")
    assert info.value.param == "items[2].price"
    with pytest.raises(AmountOverflow):
        check_amount(-MAX_AMOUNT - 1, param="amount")


# --- rounding -------------------------------------------------------------------------------

ROUNDING_TABLE = [
    ("2.5", {"HALF_UP": 3, "HALF_EVEN": 2, "DOWN": 2, "UP": 3, "FLOOR": 2, "CEILING": 3}),
    ("-2.5", {"HALF_UP": -3, "HALF_EVEN": -2, "DOWN": -2, "UP": -3, "FLOOR": -3, "CEILING": -2}),
    ("3.5", {"HALF_UP": 4, "HALF_EVEN": 4, "DOWN": 3, "UP": 4, "FLOOR": 3, "CEILING": 4}),
    ("2.4", {"HALF_UP": 2, "HALF_EVEN": 2, "DOWN": 2, "UP": 3, "FLOOR": 2, "CEILING": 3}),
    ("2.6", {"HALF_UP": 3, "HALF_EVEN": 3, "DOWN": 2, "UP": 3, "FLOOR": 2, "CEILING": 3}),
    ("-2.6", {"HALF_UP": -3, "HALF_EVEN": -3, "DOWN": -2, "UP": -3, "FLOOR": -3, "CEILING": -2}),
    ("0.5", {"HALF_UP": 1, "HALF_EVEN": 0, "DOWN": 0, "UP": 1, "FLOOR": 0, "CEILING": 1}),
    ("-0.5", {"HALF_UP": -1, "HALF_EVEN": 0, "DOWN": 0, "UP": -1, "FLOOR": -1, "CEILING": 0}),
    ("7", {"HALF_UP": 7, "HALF_EVEN": 7, "DOWN": 7, "UP": 7, "FLOOR": 7, "CEILING": 7}),
    ("0.0001", {"HALF_UP": 0, "HALF_EVEN": 0, "DOWN": 0, "UP": 1, "FLOOR": 0, "CEILING": 1}),
]


@pytest.mark.parametrize(
    ("value", "mode", "expected"),
    [(v, Rounding[m], e) for v, row in ROUNDING_TABLE for m, e in row.items()],
)
def test_round_minor_matches_the_hand_worked_table(
    value: str, mode: Rounding, expected: int
) -> None:
    assert round_minor(Decimal(value), mode) == expected


def test_rounding_ignores_the_global_decimal_precision() -> None:
    big = Decimal("123456789012345678901234567890.5")  # 31 digits, beyond the default 28
    with decimal.localcontext() as ctx:
        ctx.prec = 3
        assert round_minor(big, Rounding.HALF_UP) == 123456789012345678901234567891
        assert apply_rate(MAX_AMOUNT - 1, Decimal("0.123456789"), Rounding.DOWN) == (
            (MAX_AMOUNT - 1) * 123456789 // 10**9
        )


def test_apply_rate_rounds_the_exact_product() -> None:
    assert apply_rate(8880, Decimal("0.006"), Rounding.HALF_UP) == 53  # 53.28
    assert apply_rate(8850, Decimal("0.006"), Rounding.HALF_EVEN) == 53  # 53.1
    assert apply_rate(250, Decimal("0.01"), Rounding.HALF_EVEN) == 2  # 2.5
    assert apply_rate(250, Decimal("0.01"), Rounding.HALF_UP) == 3
    assert apply_rate(-250, Decimal("0.01"), Rounding.FLOOR) == -3


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_round_minor_refuses_non_finite_values(value: Decimal) -> None:
    with pytest.raises(ValueError, match="cannot round"):
        round_minor(value, Rounding.HALF_UP)


@given(st.integers(-(10**40), 10**40), st.integers(0, 8))
def test_every_rounding_mode_lands_on_the_right_side_of_the_exact_value(n: int, k: int) -> None:
    value, exact = Decimal(f"{n}E-{k}"), Fraction(n, 10**k)
    results = {mode: round_minor(value, mode) for mode in Rounding}
    assert results[Rounding.FLOOR] <= exact <= results[Rounding.CEILING]
    assert abs(results[Rounding.DOWN]) <= abs(exact) <= abs(results[Rounding.UP])
    assert abs(results[Rounding.HALF_UP] - exact) <= Fraction(1, 2)
    assert abs(results[Rounding.HALF_EVEN] - exact) <= Fraction(1, 2)
    assert all(abs(r - exact) < 1 for r in results.values())


# --- rates -----------------------------------------------------------------------------------


def test_parse_rate_accepts_plain_decimal_strings_and_decimals() -> None:
    assert parse_rate("0.006", param="fee_rate") == Decimal("0.006")
    assert parse_rate("1", param="fee_rate") == Decimal(1)
    assert parse_rate(Decimal("0.13"), param="tax_rate") == Decimal("0.13")
    assert parse_rate("7.1234", param="fx", maximum=Decimal(100)) == Decimal("7.1234")
    assert parse_rate("-0.5", param="adj", minimum=Decimal(-1)) == Decimal("-0.5")


@pytest.mark.parametrize(
    "bad",
    [
        0.1, 1, True, None,  # not str/Decimal
        "NaN", "nan", "Infinity", "-inf", "sNaN",  # not finite
        Decimal("NaN"), Decimal("Infinity"), Decimal("sNaN"),
        "1e-2", "1E2", "+0.1", " 0.1", "0.1 ", "0,1", ".5", "5.", "", "-", "1_0",
        "\u0660.\u0661",  # Arabic-Indic digits, which Decimal() itself would accept
        "1.5", "-0.1", Decimal("1.0001"), "0." + "1" * 80,  # out of range / too long
    ],
)  # fmt: skip
def test_parse_rate_rejects_floats_non_finite_odd_syntax_and_out_of_range(bad: object) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_rate(bad, param="discount_rate")  # type: ignore[arg-type]
    assert info.value.param == "discount_rate"


# --- allocation --------------------------------------------------------------------------


def test_allocation_hand_worked_examples() -> None:
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]
    assert allocate(-100, [1, 1, 1]) == [-34, -33, -33]
    assert allocate(5, [0, 0]) == [3, 2]
    assert allocate(10, [0, 3, 0]) == [0, 10, 0]
    assert allocate(0, [5, 7]) == [0, 0]
    assert allocate(101, [1, 2]) == [34, 67]
    assert allocate_by_ratios(8880, [Decimal("0.7"), Decimal("0.3")]) == [6216, 2664]
    assert allocate_by_ratios(1, [Decimal("0.7"), Decimal("0.3")]) == [1, 0]
    assert allocate_by_ratios(10, [Decimal(7), Decimal("0.30")]) == [10, 0]
    assert allocate_by_ratios(10, [Decimal("0.5"), Decimal("5E-1")]) == [5, 5]
    assert allocate_by_ratios(3, [Decimal(0), Decimal("0.00")]) == [2, 1]


def test_allocation_ties_go_to_the_earlier_index() -> None:
    assert allocate(2, [1, 1, 1, 1]) == [1, 1, 0, 0]
    assert allocate(1, [2, 1, 2]) == [1, 0, 0]


@pytest.mark.parametrize(
    ("total", "weights", "error"),
    [
        (10, [], ValueError),
        (10, [1, -1], ValueError),
        (10, [0.5, 0.5], TypeError),
        (10, [True, False], TypeError),
        (10.0, [1, 1], TypeError),
    ],
)
def test_allocation_rejects_bad_input(total: object, weights: list[object], error: type) -> None:
    with pytest.raises(error):
        allocate(total, weights)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "ratios", [[], [Decimal("-0.1")], [Decimal("NaN")], [0.7, 0.3], [Decimal("Infinity")]]
)
def test_allocation_by_ratios_rejects_bad_ratios(ratios: list[object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        allocate_by_ratios(100, ratios)  # type: ignore[arg-type]


def _exact_shares(total: int, weights: list[int]) -> list[Fraction]:
    if not any(weights):
        weights = [1] * len(weights)
    return [Fraction(total * w, sum(weights)) for w in weights]


@given(amounts, weight_lists)
def test_allocation_parts_always_sum_to_total(total: int, weights: list[int]) -> None:
    assert sum(allocate(total, weights)) == total


@given(amounts, weight_lists)
def test_each_allocated_part_is_within_one_unit_of_its_exact_share(
    total: int, weights: list[int]
) -> None:
    parts = allocate(total, weights)
    assert len(parts) == len(weights)
    for part, share in zip(parts, _exact_shares(total, weights), strict=True):
        assert abs(part - share) < 1


@given(amounts, weight_lists)
def test_allocating_a_negative_total_mirrors_the_positive_one(
    total: int, weights: list[int]
) -> None:
    assert allocate(-total, weights) == [-p for p in allocate(total, weights)]


@given(
    amounts,
    st.lists(
        st.decimals(min_value=0, max_value=10**6, allow_nan=False, allow_infinity=False, places=6),
        min_size=1,
        max_size=20,
    ),
)
def test_allocation_by_ratios_sums_to_total_and_tracks_exact_shares(
    total: int, ratios: list[Decimal]
) -> None:
    parts = allocate_by_ratios(total, ratios)
    assert sum(parts) == total
    as_fractions = [Fraction(r) for r in ratios]
    if not any(as_fractions):
        as_fractions = [Fraction(1)] * len(ratios)
    for part, ratio in zip(parts, as_fractions, strict=True):
        assert abs(part - total * ratio / sum(as_fractions)) < 1


# --- parsing and formatting -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("88.80", CNY, 8880),
        ("88.8", CNY, 8880),
        ("88", CNY, 8800),
        ("0.05", CNY, 5),
        ("-0.05", CNY, -5),
        ("-0", CNY, 0),
        ("100", JPY, 100),
        ("1.234", KWD, 1234),
        ("10000000000000.00", CNY, MAX_AMOUNT),
    ],
)
def test_parse_decimal_amount_turns_major_units_into_minor_units(
    text: str, currency: Currency, minor: int
) -> None:
    assert parse_decimal_amount(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("88.801", CNY), ("100.0", JPY), ("1.2345", KWD),  # too many places
        ("1e3", CNY), ("1E-2", CNY),  # exponent notation
        ("+1.00", CNY), ("--1", CNY), ("1-", CNY),  # signs
        (" 1.00", CNY), ("1.00\n", CNY), ("1 000", CNY),  # whitespace
        ("", CNY), (".", CNY), (".5", CNY), ("5.", CNY), ("1,00", CNY), ("abc", CNY),
        ("NaN", CNY), ("Infinity", CNY), ("1_000", CNY), ("\u0661\u0662", CNY),
        (8880, CNY), (88.8, CNY), (None, CNY), ("1" * 100, CNY),
    ],
)  # fmt: skip
def test_parse_decimal_amount_rejects_malformed_text(text: object, currency: Currency) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_decimal_amount(text, currency, param="total_amount")  # type: ignore[arg-type]
    assert info.value.param == "total_amount"


def test_parse_decimal_amount_rejects_amounts_beyond_the_maximum() -> None:
    with pytest.raises(AmountOverflow) as info:
        parse_decimal_amount("10000000000000.01", CNY, param="price")
    assert info.value.param == "price"


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (8880, CNY, "88.80"),
        (-5, CNY, "-0.05"),
        (0, CNY, "0.00"),
        (100, JPY, "100"),
        (-100, JPY, "-100"),
        (1234, KWD, "1.234"),
        (5, KWD, "0.005"),
    ],
)
def test_format_amount_renders_major_units(minor: int, currency: Currency, text: str) -> None:
    assert format_amount(minor, currency) == text


@given(amounts, currencies)
def test_format_then_parse_round_trips(amount: int, currency: Currency) -> None:
    assert parse_decimal_amount(format_amount(amount, currency), currency) == amount


# --- no float anywhere -----------------------------------------------------------------------


def test_no_float_is_accepted_anywhere() -> None:
    attempts: list[Callable[[], object]] = [
        lambda: Money(1.0, CNY),  # type: ignore[arg-type]
        lambda: Money(100, CNY) * 1.0,  # type: ignore[operator]
        lambda: round_minor(2.5, Rounding.HALF_UP),  # type: ignore[arg-type]
        lambda: apply_rate(100, 0.1, Rounding.HALF_UP),  # type: ignore[arg-type]
        lambda: apply_rate(100.0, Decimal("0.1"), Rounding.HALF_UP),  # type: ignore[arg-type]
        lambda: allocate(100, [0.5, 0.5]),  # type: ignore[list-item]
        lambda: allocate_by_ratios(100, [0.7, 0.3]),  # type: ignore[list-item]
        lambda: format_amount(1.0, CNY),  # type: ignore[arg-type]
        lambda: check_amount(1.0, param="amount"),  # type: ignore[arg-type]
    ]
    for attempt in attempts:
        with pytest.raises(TypeError):
            attempt()
    with pytest.raises(ValidationFailed):
        parse_rate(0.1, param="rate")  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed):
        parse_decimal_amount(88.8, CNY)  # type: ignore[arg-type]


def test_money_module_source_has_no_float_literal_call_or_true_division() -> None:
    tree = ast.parse(inspect.getsource(money))
    for node in ast.walk(tree):
        assert not (isinstance(node, ast.Constant) and isinstance(node.value, float))
        assert not (isinstance(node, ast.Name) and node.id == "float")
        # int / int yields a float in Python; only // and divmod are allowed.
        assert not isinstance(node, ast.Div)
