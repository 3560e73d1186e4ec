"""Exchange-rate arithmetic: exact, rounded once to the target's ISO 4217 exponent."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from tuition.domain.errors import CurrencyError, ValidationFailed
from tuition.domain.fx import (
    Conversion,
    FxRate,
    back_conversion,
    check_pair,
    conversion_entry,
    parse_fx_rate,
    rebased_entry,
    recorded_conversion,
    round_half_up,
)
from tuition.domain.ledger import (
    AccountKind,
    AccountRef,
    entry_problems,
    payment_succeeded_entry,
)

AT = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def _rate(base: str, quote: str, text: str) -> FxRate:
    return FxRate("fxr_x", base, quote, Decimal(text), "test", AT, AT)


def test_the_seed_examples_hold() -> None:
    # 100 CNY at CNY/EUR 0.15 = 15.00 EUR
    assert Conversion("CNY", "EUR", _rate("CNY", "EUR", "0.15")).convert(10000) == 1500
    # 2,000 CNY at 7 CNY per USD (quoted USD/CNY 7, inverted) = 285.71 USD
    inverse = Conversion("CNY", "USD", _rate("USD", "CNY", "7"))
    assert inverse.inverted
    assert inverse.convert(200000) == 28571


def test_a_zero_decimal_target_rounds_to_whole_units_half_up() -> None:
    # 123.45 CNY at 20.57 JPY = 2539.3665 JPY -> 2539 JPY (no minor unit)
    assert Conversion("CNY", "JPY", _rate("CNY", "JPY", "20.57")).convert(12345) == 2539
    # 100.50 CNY at 1 -> 100.5 JPY, a tie, rounds up to 101
    assert Conversion("CNY", "JPY", _rate("CNY", "JPY", "1")).convert(10050) == 101
    # and back: 2539 JPY at 20.57 JPY per CNY = 123.43 CNY (123.4321...)
    assert Conversion("JPY", "CNY", _rate("CNY", "JPY", "20.57")).convert(2539) == 12343


def test_a_three_decimal_target_keeps_its_exponent() -> None:
    # 10.00 USD at 0.377 KWD = 3.770 KWD, in fils
    assert Conversion("USD", "KWD", _rate("USD", "KWD", "0.377")).convert(1000) == 3770


def test_markup_is_added_to_the_rate_before_the_one_rounding() -> None:
    conversion = Conversion("CNY", "EUR", _rate("CNY", "EUR", "0.15"), Decimal("0.02"))
    assert conversion.convert(10000) == 1530  # 15.00 x 1.02
    inverse = Conversion("CNY", "USD", _rate("USD", "CNY", "7"), Decimal("0.02"))
    assert inverse.convert(200000) == 29143  # 285.714... x 1.02 = 291.428...


def test_rounding_is_exact_on_ties_and_negative_values() -> None:
    from fractions import Fraction

    assert round_half_up(Fraction(5, 2)) == 3
    assert round_half_up(Fraction(-5, 2)) == -3
    assert round_half_up(Fraction(249999, 100000)) == 2


@pytest.mark.parametrize("text", ["0.1500", "7", "1000000000"])
def test_rates_are_plain_positive_decimal_strings(text: str) -> None:
    assert str(parse_fx_rate(text)) == text


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (0.15, "rate_invalid"),
        (7, "rate_invalid"),
        ("1e3", "rate_invalid"),
        ("-1", "rate_invalid"),
        (" 1", "rate_invalid"),
        ("NaN", "rate_invalid"),
        ("0", "rate_out_of_range"),
        ("0.000", "rate_out_of_range"),
        ("1000000000.1", "rate_out_of_range"),
    ],
)
def test_bad_rates_are_refused(value: Any, code: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_fx_rate(value)
    assert (caught.value.code, caught.value.param) == (code, "rate")


def test_a_pair_needs_two_iso_currencies() -> None:
    assert check_pair("CNY", "USD") == ("CNY", "USD")
    with pytest.raises(ValidationFailed) as same:
        check_pair("CNY", "CNY")
    assert same.value.code == "fx_pair_invalid"
    with pytest.raises(CurrencyError):
        check_pair("cny", "USD")


def test_a_conversion_entry_balances_each_currency_through_the_fx_accounts() -> None:
    conversion = Conversion("CNY", "USD", _rate("USD", "CNY", "7"))
    entry = conversion_entry(
        source="fx:test",
        conversion=conversion,
        credit=AccountRef(AccountKind.CASH, "CNY"),
        debit=AccountRef(AccountKind.CASH, "USD"),
        from_amount=200000,
        occurred_at=AT,
    )
    assert entry_problems(entry) == []
    assert {(p.account.key, p.amount) for p in entry.postings} == {
        ("cash:CNY", -200000),
        ("fx_conversion:CNY", 200000),
        ("fx_conversion:USD", -28571),
        ("cash:USD", 28571),
    }


def test_a_conversion_that_rounds_to_nothing_or_mixes_currencies_is_refused() -> None:
    conversion = Conversion("JPY", "USD", _rate("USD", "JPY", "300"))
    cash_jpy, cash_usd = AccountRef(AccountKind.CASH, "JPY"), AccountRef(AccountKind.CASH, "USD")
    with pytest.raises(ValidationFailed) as tiny:
        conversion_entry(
            source="fx:t",
            conversion=conversion,
            credit=cash_jpy,
            debit=cash_usd,
            from_amount=1,  # 1 JPY at 300 per USD is a third of a cent: 0.00 USD
            occurred_at=AT,
        )
    assert tiny.value.code == "amount_too_small"
    with pytest.raises(ValidationFailed):
        conversion_entry(
            source="fx:t",
            conversion=conversion,
            credit=cash_usd,
            debit=cash_jpy,
            from_amount=100,
            occurred_at=AT,
        )


def test_a_converted_sale_books_its_revenue_back_in_the_product_currency() -> None:
    # A 10.00 USD course sold for 72.42 CNY at USD/CNY 7.1 with a 2 % markup.
    priced = Conversion("USD", "CNY", _rate("USD", "CNY", "7.1"), Decimal("0.02"))
    assert priced.convert(1000) == 7242
    kept = recorded_conversion(priced.to_dict())
    assert kept == priced
    back = back_conversion(kept)
    assert (back.from_currency, back.to_currency, back.markup) == ("CNY", "USD", Decimal(0))
    sale = payment_succeeded_entry(
        payment_id="pay_1",
        channel="alipay",
        currency="CNY",
        amount=7242,
        fee=43,
        tax=0,
        creator_shares=[("cre_1", 5069)],
        occurred_at=AT,
    )
    kinds = {AccountKind.PLATFORM_REVENUE, AccountKind.REFUNDS}
    rebased = rebased_entry(sale, back, kinds)
    assert entry_problems(rebased) == []
    assert (rebased.source, rebased.id) == (sale.source, sale.id)
    # 21.73 CNY of revenue at 7.1 (no markup on the way back) = 3.06 USD; the markup's
    # value is revenue, not an FX position.
    assert {(p.account.key, p.amount) for p in rebased.postings} == {
        ("channel_clearing:CNY:alipay", 7242),
        ("channel_fees:CNY", 43),
        ("channel_clearing:CNY:alipay", -43),
        ("creator_pending:CNY:cre_1", -5069),
        ("fx_conversion:CNY", -2173),
        ("platform_revenue:USD", -306),
        ("fx_conversion:USD", 306),
    }
    # Nothing of those kinds in the source currency: the entry is left as it is.
    assert rebased_entry(rebased, back, kinds) is rebased
