"""Exchange rates and currency conversion: exact, rounded once in the target's exponent.

A rate ``base/quote`` says what one unit of ``base`` is worth in ``quote``
(``CNY/EUR 0.15``: 1 CNY = 0.15 EUR). Rates are ``Decimal`` parsed from plain decimal
strings, never floats. Converting from ``base`` to ``quote`` multiplies by the rate;
converting the other way divides by it (``USD/CNY 7`` converts 2,000.00 CNY into
285.71 USD). The product is computed as an exact fraction and rounded half-up once, to
the target currency's ISO 4217 exponent (JPY has none, so CNY→JPY rounds to whole yen).

A conversion that moves money between currencies is posted through an ``fx_conversion``
account, one per currency, so every currency of the entry balances on its own
(:func:`conversion_postings`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from tuition.domain.errors import ValidationFailed
from tuition.domain.ledger import AccountKind, AccountRef, JournalEntry, Posting, build_entry
from tuition.domain.money import check_amount, get_currency

MAX_RATE = Decimal(10**9)
# ASCII digits with an optional fraction: no sign, exponent, whitespace or NaN spelling.
_RATE_TEXT = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_MAX_TEXT = 40  # the rates column is 40 characters of text
_SOURCE_MAX = 100


@dataclass(frozen=True, slots=True)
class FxRate:
    """One quoted rate as recorded: ``1 base = rate quote`` from ``as_of`` on."""

    id: str
    base: str
    quote: str
    rate: Decimal
    source: str
    as_of: datetime
    created_at: datetime


def parse_fx_rate(text: object, *, param: str = "rate") -> Decimal:
    """A positive plain decimal string (``"0.1500"``) as a Decimal, at most 10^9.

    Floats, ints, exponents, signs and zero raise ValidationFailed naming ``param``;
    trailing zeros are kept as written (``"0.1500"`` stays ``0.1500``).
    """
    if not isinstance(text, str) or len(text) > _MAX_TEXT or not _RATE_TEXT.fullmatch(text):
        raise ValidationFailed(
            f"{param} must be a positive decimal string such as '0.1500', got {text!r}",
            code="rate_invalid",
            param=param,
        )
    rate = Decimal(text)
    if not Decimal(0) < rate <= MAX_RATE:
        raise ValidationFailed(
            f"{param} must be above 0 and at most {MAX_RATE}, got {text}",
            code="rate_out_of_range",
            param=param,
        )
    return rate


def parse_markup(value: Decimal) -> Decimal:
    """A conversion markup is a fraction in [0, 1): ``0.02`` adds 2 % to the converted price."""
    if not value.is_finite() or not Decimal(0) <= value < Decimal(1):
        raise ValueError(f"fx markup must be in [0, 1), got {value}")
    return value


def check_pair(base: str, quote: str) -> tuple[str, str]:
    """Both codes must be ISO 4217 (never the platform's coins) and differ."""
    for code, param in ((base, "base"), (quote, "quote")):
        if get_currency(code, param=param).virtual:
            raise ValidationFailed(
                f"{code} is the platform's coin unit; coins have no exchange rate",
                code="currency_not_convertible",
                param=param,
            )
    if base == quote:
        raise ValidationFailed(
            f"a rate needs two currencies; got {base}/{quote}",
            code="fx_pair_invalid",
            param="quote",
        )
    return base, quote


def check_source(source: object) -> str:
    if not isinstance(source, str) or not 1 <= len(source) <= _SOURCE_MAX or "\x00" in source:
        raise ValidationFailed(
            f"source must be 1 to {_SOURCE_MAX} characters naming where the rate comes from",
            code="validation_failed",
            param="source",
        )
    return source


@dataclass(frozen=True, slots=True)
class Conversion:
    """How amounts in ``from_currency`` become ``to_currency``: the rate used and why."""

    from_currency: str
    to_currency: str
    rate: FxRate  # the recorded rate: from/to (direct) or to/from (inverted)
    markup: Decimal = Decimal(0)

    @property
    def inverted(self) -> bool:
        return self.rate.base != self.from_currency

    def factor(self) -> Fraction:
        """Exact major-unit factor: one ``from`` unit is worth this many ``to`` units."""
        rate = Fraction(self.rate.rate)
        base = 1 / rate if self.inverted else rate
        return base * (1 + Fraction(self.markup))

    def convert(self, amount: int) -> int:
        """``amount`` minor units of ``from_currency`` in minor units of ``to_currency``."""
        source = get_currency(self.from_currency)
        target = get_currency(self.to_currency)
        exact = (
            Fraction(amount) * self.factor() * Fraction(10) ** (target.exponent - source.exponent)
        )
        return check_amount(round_half_up(exact), param="amount")

    def to_dict(self) -> dict[str, Any]:
        return {
            "from_currency": self.from_currency,
            "to_currency": self.to_currency,
            "rate": str(self.rate.rate),
            "pair": f"{self.rate.base}/{self.rate.quote}",
            "inverted": self.inverted,
            "markup": str(self.markup),
            "source": self.rate.source,
            "as_of": self.rate.as_of.isoformat(),
            "rate_id": self.rate.id,
        }


def round_half_up(value: Fraction) -> int:
    """Round an exact fraction to an int, ties away from zero."""
    magnitude = abs(value)
    whole, remainder = divmod(magnitude.numerator, magnitude.denominator)
    if 2 * remainder >= magnitude.denominator:
        whole += 1
    return -whole if value < 0 else whole


def conversion_entry(
    *,
    source: str,
    conversion: Conversion,
    debit: AccountRef,
    credit: AccountRef,
    from_amount: int,
    occurred_at: datetime,
) -> JournalEntry:
    """Move ``from_amount`` out of ``credit`` (in ``from_currency``) into ``debit`` (in
    ``to_currency``, converted at ``conversion``) through the FX accounts.

    ``credit`` gives the amount up in the source currency and the ``fx_conversion``
    account of that currency takes it; the ``fx_conversion`` account of the target
    currency gives the converted amount to ``debit``. Each currency sums to zero on its
    own; the FX accounts carry the position. ``source`` is the entry's UNIQUE source, so
    posting the same conversion twice is a no-op.
    """
    if credit.currency != conversion.from_currency or debit.currency != conversion.to_currency:
        raise ValidationFailed(
            "the accounts must be in the conversion's currencies", param="account"
        )
    if type(from_amount) is not int or from_amount <= 0:
        raise ValidationFailed("a conversion moves a positive amount", param="amount")
    to_amount = conversion.convert(from_amount)
    if to_amount <= 0:
        raise ValidationFailed(
            f"{from_amount} minor units of {conversion.from_currency} round to nothing "
            f"in {conversion.to_currency}",
            code="amount_too_small",
            param="amount",
        )
    postings = (
        Posting(credit, -from_amount),
        Posting(AccountRef(AccountKind.FX_CONVERSION, conversion.from_currency), from_amount),
        Posting(AccountRef(AccountKind.FX_CONVERSION, conversion.to_currency), -to_amount),
        Posting(debit, to_amount),
    )
    description = (
        f"convert {conversion.from_currency} to {conversion.to_currency} at "
        f"{conversion.rate.base}/{conversion.rate.quote} {conversion.rate.rate}"
    )
    return build_entry(source, description, postings, occurred_at)


def recorded_conversion(record: Mapping[str, Any]) -> Conversion:
    """The conversion an order kept in ``pricing.fx`` (:meth:`Conversion.to_dict`), rebuilt
    exactly: the same rate row, direction and markup, so re-reading it converts as the
    order did."""
    try:
        base, quote = str(record["pair"]).split("/")
        as_of = datetime.fromisoformat(str(record["as_of"]))
        rate = FxRate(
            id=str(record["rate_id"]),
            base=base,
            quote=quote,
            rate=Decimal(str(record["rate"])),
            source=str(record["source"]),
            as_of=as_of,
            created_at=as_of,
        )
        return Conversion(
            str(record["from_currency"]),
            str(record["to_currency"]),
            rate,
            Decimal(str(record["markup"])),
        )
    except (KeyError, ValueError, ArithmeticError) as exc:
        raise ValidationFailed(f"not a recorded conversion: {exc}", param="fx") from None


def back_conversion(conversion: Conversion) -> Conversion:
    """The way back of ``conversion`` at the same rate row, without its markup: what an
    amount priced through ``conversion`` is worth in the source currency at that rate."""
    return Conversion(conversion.to_currency, conversion.from_currency, conversion.rate)


def rebased_entry(
    entry: JournalEntry,
    conversion: Conversion,
    kinds: Collection[AccountKind],
    *,
    moved_before: int = 0,
) -> JournalEntry:
    """``entry`` with its postings to accounts of ``kinds`` in ``conversion.from_currency``
    moved into ``conversion.to_currency``, through the FX accounts, as one entry.

    Each moved posting goes onto the same account in the target currency; ``fx_conversion``
    of the source currency takes the source side and ``fx_conversion`` of the target
    currency the converted side, so each currency still sums to zero. A posting is
    converted as the difference it makes to the running total of what was moved, counted
    from ``moved_before`` (what earlier entries of the same sale moved, in the source
    currency: a refund's earlier refunds), each total rounded half-up with its sign kept:
    the converted parts of any sequence of entries add up to the conversion of their sum,
    so refunds taking back the whole sale take back exactly what it converted. An entry
    with nothing to move is returned as it is. The same source and id are kept: the
    rebased entry replaces ``entry``, it is not posted beside it.
    """
    source, target = conversion.from_currency, conversion.to_currency
    moved = [p for p in entry.postings if p.account.kind in kinds and p.account.currency == source]
    if not moved:
        return entry
    kept = [
        p for p in entry.postings if not (p.account.kind in kinds and p.account.currency == source)
    ]

    def signed(total: int) -> int:
        return conversion.convert(total) if total >= 0 else -conversion.convert(-total)

    converted = []
    running = moved_before
    for p in moved:
        amount = signed(running + p.amount) - signed(running)
        running += p.amount
        converted.append(Posting(AccountRef(p.account.kind, target, p.account.qualifier), amount))
    source_side = sum(p.amount for p in moved)
    target_side = sum(p.amount for p in converted)
    postings = [
        *kept,
        Posting(AccountRef(AccountKind.FX_CONVERSION, source), source_side),
        *(p for p in converted if p.amount),
        Posting(AccountRef(AccountKind.FX_CONVERSION, target), -target_side),
    ]
    return build_entry(
        entry.source,
        f"{entry.description}; {', '.join(sorted({p.account.kind.value for p in moved}))} "
        f"in {target} at {conversion.rate.base}/{conversion.rate.quote} {conversion.rate.rate}",
        (p for p in postings if p.amount),
        entry.occurred_at,
        entry_id=entry.id,
    )
