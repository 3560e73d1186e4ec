"""Income tax withheld from individual payees: China's labour remuneration (劳务报酬)
withholding, with its rates and thresholds as data.

The rule, for one payee and one calendar month (income of one month counts as one
payment)::

    taxable  = income - 800          when income <= 4,000
             = income x 80 %         otherwise
    tax      = taxable x rate - quick deduction, by the bracket taxable falls in:
               up to 20,000: 20 % - 0;  up to 50,000: 30 % - 2,000;  above: 40 % - 7,000

A second payout in the same month withholds the tax on the month's total minus what the
month's earlier payouts already withheld, so splitting a month into several payouts never
changes the month's tax. Amounts are minor units (fen); each product with a rate is
rounded half up to the fen, once.

A company payee invoices its own tax: nothing is withheld.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tuition.domain.errors import ValidationFailed
from tuition.domain.money import Rounding, apply_rate


@dataclass(frozen=True, slots=True)
class Bracket:
    up_to: int | None  # taxable income (minor units) this bracket reaches; None = no limit
    rate: Decimal
    quick_deduction: int  # minor units


@dataclass(frozen=True, slots=True)
class WithholdingTable:
    """The rule's numbers: which deduction applies up to ``threshold``, which above."""

    currency: str
    threshold: int  # income up to this takes the fixed deduction
    fixed_deduction: int
    percent_deduction: Decimal  # the share of income deducted above the threshold
    brackets: tuple[Bracket, ...]

    def __post_init__(self) -> None:
        if self.threshold < 0 or self.fixed_deduction < 0:
            raise ValidationFailed("tax thresholds must not be negative", param="tax_table")
        if not Decimal(0) <= self.percent_deduction < Decimal(1):
            raise ValidationFailed("percent_deduction must be within [0, 1)", param="tax_table")
        if not self.brackets or self.brackets[-1].up_to is not None:
            raise ValidationFailed("the last tax bracket must have no limit", param="tax_table")
        limits = [b.up_to for b in self.brackets[:-1]]
        bounded = [limit for limit in limits if limit is not None]
        if len(bounded) != len(limits) or bounded != sorted(set(bounded)):
            raise ValidationFailed("tax brackets must rise", param="tax_table")
        if any(
            not Decimal(0) <= b.rate < Decimal(1) or b.quick_deduction < 0 for b in self.brackets
        ):
            raise ValidationFailed("a bracket's rate is within [0, 1)", param="tax_table")


# China, labour remuneration, individual income tax withheld in advance (CNY, fen).
CN_LABOUR_REMUNERATION: Mapping[str, Any] = {
    "currency": "CNY",
    "threshold": 400000,
    "fixed_deduction": 80000,
    "percent_deduction": "0.20",
    "brackets": [
        {"up_to": 2000000, "rate": "0.20", "quick_deduction": 0},
        {"up_to": 5000000, "rate": "0.30", "quick_deduction": 200000},
        {"up_to": None, "rate": "0.40", "quick_deduction": 700000},
    ],
}


def parse_table(data: Mapping[str, Any]) -> WithholdingTable:
    """A withholding table from data (settings or a file); a bad table raises
    ValidationFailed naming ``tax_table``."""
    try:
        brackets: Sequence[Mapping[str, Any]] = data["brackets"]
        return WithholdingTable(
            currency=str(data["currency"]),
            threshold=int(data["threshold"]),
            fixed_deduction=int(data["fixed_deduction"]),
            percent_deduction=Decimal(str(data["percent_deduction"])),
            brackets=tuple(
                Bracket(
                    up_to=None if b["up_to"] is None else int(b["up_to"]),
                    rate=Decimal(str(b["rate"])),
                    quick_deduction=int(b["quick_deduction"]),
                )
                for b in brackets
            ),
        )
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise ValidationFailed(f"not a withholding table: {exc}", param="tax_table") from exc


DEFAULT_TABLE = parse_table(CN_LABOUR_REMUNERATION)


def taxable_income(income: int, table: WithholdingTable = DEFAULT_TABLE) -> int:
    if type(income) is not int or income < 0:
        raise ValidationFailed("income must be a non-negative int", param="income")
    if income <= table.threshold:
        return max(income - table.fixed_deduction, 0)
    return apply_rate(income, 1 - table.percent_deduction, Rounding.HALF_UP)


def tax_on(income: int, table: WithholdingTable = DEFAULT_TABLE) -> int:
    """The tax withheld on one month's ``income``."""
    taxable = taxable_income(income, table)
    for bracket in table.brackets:
        if bracket.up_to is None or taxable <= bracket.up_to:
            gross = apply_rate(taxable, bracket.rate, Rounding.HALF_UP)
            return max(gross - bracket.quick_deduction, 0)
    raise AssertionError("the last bracket has no limit")


@dataclass(frozen=True, slots=True)
class Withholding:
    month_income: int  # this payout included
    month_tax: int  # the tax on the month's income
    already_withheld: int
    withheld_now: int

    @property
    def net(self) -> int:
        return self.month_income - self.month_tax


def withhold(
    amount: int,
    *,
    paid_this_month: int,
    withheld_this_month: int,
    table: WithholdingTable = DEFAULT_TABLE,
) -> Withholding:
    """What a payout of ``amount`` withholds, after payouts of ``paid_this_month`` (gross)
    that withheld ``withheld_this_month`` in the same month."""
    for value, param in (
        (amount, "amount"),
        (paid_this_month, "paid_this_month"),
        (withheld_this_month, "withheld_this_month"),
    ):
        if type(value) is not int or value < 0:
            raise ValidationFailed(f"{param} must be a non-negative int", param=param)
    total = paid_this_month + amount
    due = tax_on(total, table)
    now = min(max(due - withheld_this_month, 0), amount)
    return Withholding(total, due, withheld_this_month, now)
