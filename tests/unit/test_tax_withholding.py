"""Labour remuneration withholding, each example computed by hand beside it (yuan in the
comments, fen in the code)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tuition.domain.errors import ValidationFailed
from tuition.domain.tax import (
    CN_LABOUR_REMUNERATION,
    parse_table,
    tax_on,
    taxable_income,
    withhold,
)


def test_a_month_of_4000_or_less_deducts_800_before_the_20_percent_rate() -> None:
    # 3,000: taxable 3,000 - 800 = 2,200; tax 2,200 x 20 % = 440.
    assert taxable_income(300000) == 220000
    assert tax_on(300000) == 44000
    # 4,000 exactly still takes the fixed 800: taxable 3,200, tax 640.
    assert tax_on(400000) == 64000
    # 800 or less owes nothing.
    assert tax_on(80000) == 0
    assert tax_on(50000) == 0


def test_a_month_above_4000_deducts_20_percent_of_income() -> None:
    # 5,000: taxable 5,000 x 80 % = 4,000; tax 4,000 x 20 % = 800.
    assert taxable_income(500000) == 400000
    assert tax_on(500000) == 80000
    # 4,000.01: taxable 3,200.008 -> 3,200.01; tax 640.002 -> 640.00.
    assert taxable_income(400001) == 320001
    assert tax_on(400001) == 64000


def test_taxable_income_between_20000_and_50000_is_taxed_at_30_percent_less_2000() -> None:
    # 30,000: taxable 24,000; tax 24,000 x 30 % - 2,000 = 5,200.
    assert tax_on(3000000) == 520000
    # 25,000: taxable exactly 20,000, still the 20 % bracket: 4,000.
    assert tax_on(2500000) == 400000
    # 62,500: taxable exactly 50,000, still 30 %: 15,000 - 2,000 = 13,000.
    assert tax_on(6250000) == 1300000


def test_taxable_income_above_50000_is_taxed_at_40_percent_less_7000() -> None:
    # 80,000: taxable 64,000; tax 64,000 x 40 % - 7,000 = 18,600.
    assert tax_on(8000000) == 1860000
    # 62,500.01: taxable 50,000.008 -> 50,000.01; 20,000.004 -> 20,000.00 - 7,000 = 13,000.
    assert tax_on(6250001) == 1300000


def test_a_second_payout_in_a_month_withholds_the_months_tax_less_what_was_withheld() -> None:
    # 3,000 first: 440 withheld. Then 2,000: the month is 5,000, tax 800, so 800 - 440 = 360.
    first = withhold(300000, paid_this_month=0, withheld_this_month=0)
    assert first.withheld_now == 44000
    second = withhold(200000, paid_this_month=300000, withheld_this_month=first.withheld_now)
    assert (second.month_income, second.month_tax, second.withheld_now) == (500000, 80000, 36000)
    # The month's tax is the same as one payout of 5,000.
    assert first.withheld_now + second.withheld_now == tax_on(500000)


def test_a_second_payout_crossing_into_a_higher_bracket_withholds_the_difference() -> None:
    # 20,000 (taxable 16,000, tax 3,200), then 20,000: month 40,000, taxable 32,000,
    # tax 32,000 x 30 % - 2,000 = 7,600; the second withholds 7,600 - 3,200 = 4,400.
    first = withhold(2000000, paid_this_month=0, withheld_this_month=0)
    assert first.withheld_now == 320000
    second = withhold(2000000, paid_this_month=2000000, withheld_this_month=320000)
    assert second.withheld_now == 440000


def test_a_payout_never_withholds_more_than_its_amount_or_less_than_nothing() -> None:
    over = withhold(100, paid_this_month=500000, withheld_this_month=0)
    assert over.withheld_now == 100
    none = withhold(100, paid_this_month=0, withheld_this_month=90000)
    assert none.withheld_now == 0


def test_rates_and_thresholds_are_data_and_a_bad_table_is_refused() -> None:
    halved = {
        **CN_LABOUR_REMUNERATION,
        "brackets": [{"up_to": None, "rate": "0.10", "quick_deduction": 0}],
    }
    table = parse_table(halved)
    assert table.brackets[0].rate == Decimal("0.10")
    assert tax_on(500000, table) == 40000  # 4,000 x 10 %
    with pytest.raises(ValidationFailed):
        parse_table(
            {
                **CN_LABOUR_REMUNERATION,
                "brackets": [{"up_to": 5, "rate": "0.2", "quick_deduction": 0}],
            }
        )
    with pytest.raises(ValidationFailed):
        parse_table({"currency": "CNY"})
    with pytest.raises(ValidationFailed):
        tax_on(-1)
