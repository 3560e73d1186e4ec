"""Money: integer minor units in an ISO 4217 currency, exact rates, one rounding function.

No float appears here: amounts are ``int`` minor units, rates are ``Decimal`` and every
rounding goes through :func:`round_minor` with an explicit :class:`Rounding` mode. Splits
use largest-remainder allocation so the parts always sum to the total.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from functools import total_ordering

from tuition.domain.errors import AmountOverflow, CurrencyError, ValidationFailed

MAX_AMOUNT = 10**15
"""Largest absolute amount in minor units; fits a BIGINT with room for sums of many."""


@dataclass(frozen=True, slots=True)
class Currency:
    code: str
    exponent: int
    # A unit the platform made up (its coins): kept in wallets and priced like money,
    # never sent to a payment channel (see domain/coins.py); ``label`` is its name.
    virtual: bool = False
    label: str = ""

    def __post_init__(self) -> None:
        if not (len(self.code) == 3 and self.code.isascii() and self.code.isupper()):
            raise ValueError(f"currency code must be 3 upper-case letters, got {self.code!r}")
        if type(self.exponent) is not int or not 0 <= self.exponent <= 4:
            raise ValueError(f"currency exponent must be an int in 0..4, got {self.exponent!r}")


# ISO 4217 minor units. Exponents follow the standard even where local practice differs
# (e.g. HUF, IDR, TWD are 2): gateways and accounting exchange ISO amounts.
_BY_EXPONENT = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
    2: "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN "
    "BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL "
    "GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK "
    "LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO "
    "NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE "
    "SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST "
    "XCD XCG YER ZAR ZMW ZWG",
}
CURRENCIES: dict[str, Currency] = {
    code: Currency(code, exponent)
    for exponent, codes in _BY_EXPONENT.items()
    for code in codes.split()
}


def register_virtual_unit(unit: Currency) -> None:
    """Make the platform's coin unit known to :func:`get_currency` like an ISO code.

    One coin unit per process: registering another code or other decimals replaces the
    previous coin unit (the composition root registers it from the settings). An ISO
    4217 code cannot be taken.
    """
    if not unit.virtual:
        raise ValueError("only a virtual unit is registered")
    existing = CURRENCIES.get(unit.code)
    if existing is not None and not existing.virtual:
        raise ValueError(f"{unit.code} is an ISO 4217 currency, not a free code for coins")
    for code in [c for c, known in CURRENCIES.items() if known.virtual]:
        del CURRENCIES[code]
    CURRENCIES[unit.code] = unit


def coin_unit() -> Currency | None:
    """The registered coin unit, if coins are on."""
    return next((unit for unit in CURRENCIES.values() if unit.virtual), None)


def get_currency(code: str, *, param: str = "currency") -> Currency:
    """Look up an ISO 4217 currency by its upper-case code; lower case is refused."""
    if not isinstance(code, str):
        raise CurrencyError("currency must be a string", code="currency_unknown", param=param)
    found = CURRENCIES.get(code)
    if found is not None:
        return found
    if code.upper() in CURRENCIES:
        # Refuse rather than normalise so one currency has exactly one spelling everywhere.
        message = f"unknown currency {code!r}: codes are upper case, use {code.upper()!r}"
    else:
        message = f"unknown currency {code!r}: expected an ISO 4217 code such as 'CNY'"
    raise CurrencyError(message, code="currency_unknown", param=param)


def _require_int(value: object, what: str) -> int:
    # `type(...) is int` rather than isinstance: bool is an int subclass and never an amount.
    if type(value) is not int:
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    return value


def _require_decimal(value: object, what: str) -> Decimal:
    if not isinstance(value, Decimal):
        raise TypeError(f"{what} must be a Decimal, got {type(value).__name__}")
    return value


def check_amount(amount: int, *, param: str) -> int:
    """Return ``amount`` unchanged, or raise AmountOverflow if it exceeds MAX_AMOUNT."""
    if abs(_require_int(amount, param)) > MAX_AMOUNT:
        raise AmountOverflow(f"{param} must not exceed {MAX_AMOUNT} in absolute value", param=param)
    return amount


@total_ordering
@dataclass(frozen=True, slots=True)
class Money:
    amount: int
    currency: Currency

    def __post_init__(self) -> None:
        _require_int(self.amount, "Money.amount")
        if not isinstance(self.currency, Currency):
            raise TypeError(f"Money.currency must be a Currency, got {self.currency!r}")

    @classmethod
    def of(cls, amount_minor: int, code: str) -> Money:
        return cls(amount_minor, get_currency(code))

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyError(
                f"cannot combine {self.currency.code} with {other.currency.code}",
                code="currency_mismatch",
            )

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __mul__(self, factor: int) -> Money:
        if type(factor) is not int:
            return NotImplemented  # fractional factors must go through apply_rate
        return Money(self.amount * factor, self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same(other)
        return self.amount < other.amount

    def is_zero(self) -> bool:
        return self.amount == 0

    def is_negative(self) -> bool:
        return self.amount < 0

    def __str__(self) -> str:
        return f"{format_amount(self.amount, self.currency)} {self.currency.code}"


class Rounding(StrEnum):
    HALF_UP = "half_up"  # away from zero on a tie
    HALF_EVEN = "half_even"  # banker's rounding
    DOWN = "down"  # toward zero
    UP = "up"  # away from zero
    FLOOR = "floor"  # toward -infinity
    CEILING = "ceiling"  # toward +infinity


_DECIMAL_MODES = {
    Rounding.HALF_UP: decimal.ROUND_HALF_UP,
    Rounding.HALF_EVEN: decimal.ROUND_HALF_EVEN,
    Rounding.DOWN: decimal.ROUND_DOWN,
    Rounding.UP: decimal.ROUND_UP,
    Rounding.FLOOR: decimal.ROUND_FLOOR,
    Rounding.CEILING: decimal.ROUND_CEILING,
}


def _exact_context(digits: int) -> decimal.Context:
    # A private context sized to the operands, so neither the global precision nor
    # another thread's localcontext can ever round an intermediate result.
    return decimal.Context(prec=max(50, digits + 2), traps=[decimal.InvalidOperation])


def round_minor(value: Decimal, mode: Rounding) -> int:
    """Round a Decimal to an integer number of minor units with an explicit mode."""
    _require_decimal(value, "value")
    if not value.is_finite():
        raise ValueError(f"cannot round {value} to minor units")
    ctx = _exact_context(value.adjusted() + 1)
    return int(value.quantize(Decimal(1), rounding=_DECIMAL_MODES[Rounding(mode)], context=ctx))


def apply_rate(amount: int, rate: Decimal, mode: Rounding) -> int:
    """``round_minor(amount * rate, mode)`` with the product computed exactly."""
    _require_int(amount, "amount")
    _require_decimal(rate, "rate")
    if not rate.is_finite():
        raise ValueError(f"rate must be finite, got {rate}")
    ctx = _exact_context(len(str(abs(amount))) + len(rate.as_tuple().digits))
    return round_minor(ctx.multiply(Decimal(amount), rate), mode)


# ASCII digits only: Decimal() and int() would also accept other scripts' digits,
# underscores, surrounding whitespace, exponents, '+' and NaN/Infinity spellings.
_PLAIN_NUMBER = re.compile(r"-?([0-9]+)(?:\.([0-9]+))?")
_MAX_TEXT = 64  # longer inputs are garbage or an attack, never a real amount or rate


def parse_rate(
    text: str | Decimal,
    *,
    param: str,
    minimum: Decimal = Decimal(0),
    maximum: Decimal = Decimal(1),
) -> Decimal:
    """Validate a rate given as a plain decimal string (``"0.006"``) or a Decimal.

    Floats, ints, NaN, infinities, exponent notation and values outside
    ``[minimum, maximum]`` raise ValidationFailed naming ``param``.
    """
    if isinstance(text, str):
        if len(text) > _MAX_TEXT or _PLAIN_NUMBER.fullmatch(text) is None:
            raise ValidationFailed(
                f"{param} must be a plain decimal number such as '0.06', got {text!r}",
                code="rate_invalid",
                param=param,
            )
        rate = Decimal(text)
    elif isinstance(text, Decimal):
        if not text.is_finite():
            raise ValidationFailed(f"{param} must be finite", code="rate_invalid", param=param)
        rate = text
    else:
        # A float such as 0.1 is already inexact; accepting it would hide the error.
        raise ValidationFailed(
            f"{param} must be a decimal string or Decimal, not {type(text).__name__}",
            code="rate_invalid",
            param=param,
        )
    if not minimum <= rate <= maximum:
        raise ValidationFailed(
            f"{param} must be between {minimum} and {maximum}, got {rate}",
            code="rate_out_of_range",
            param=param,
        )
    return rate


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to non-negative integer ``weights`` (largest remainder).

    The parts sum exactly to ``total`` and each differs from its exact proportional share
    by less than one unit. Leftover units go to the largest remainders, ties to the
    earlier index. All-zero weights split equally. A negative total is allocated as its
    absolute value and negated, so the pattern of parts is symmetric.
    """
    _require_int(total, "total")
    if not weights:
        raise ValueError("allocate needs at least one weight")
    for weight in weights:
        if _require_int(weight, "weight") < 0:
            raise ValueError(f"weights must be non-negative, got {weight}")
    if not any(weights):
        weights = [1] * len(weights)
    magnitude = abs(total)
    weight_sum = sum(weights)
    parts: list[int] = []
    remainders: list[int] = []
    for weight in weights:
        part, remainder = divmod(magnitude * weight, weight_sum)
        parts.append(part)
        remainders.append(remainder)
    leftover = magnitude - sum(parts)  # always < len(weights)
    for index in sorted(range(len(parts)), key=lambda i: (-remainders[i], i))[:leftover]:
        parts[index] += 1
    return [-part for part in parts] if total < 0 else parts


def allocate_by_ratios(total: int, ratios: Sequence[Decimal]) -> list[int]:
    """Like :func:`allocate` with non-negative Decimal ratios, e.g. ``[0.7, 0.3]``.

    Ratios are relative: they are scaled exactly to integers and need not sum to 1
    (``[7, 3]`` and ``[0.7, 0.3]`` give the same parts).
    """
    if not ratios:
        raise ValueError("allocate_by_ratios needs at least one ratio")
    exponents: list[int] = []
    coefficients: list[int] = []
    for ratio in ratios:
        _require_decimal(ratio, "ratio")
        if not ratio.is_finite() or ratio < 0:
            raise ValueError(f"ratios must be finite and non-negative, got {ratio}")
        _sign, digits, exponent = ratio.as_tuple()
        assert isinstance(exponent, int)  # finite, so never 'n', 'N' or 'F'
        coefficients.append(int("".join(map(str, digits)) or "0"))
        exponents.append(exponent)
    lowest = min(exponents)
    weights = [c * 10 ** (e - lowest) for c, e in zip(coefficients, exponents, strict=True)]
    return allocate(total, weights)


def parse_decimal_amount(text: str, currency: Currency, *, param: str = "amount") -> int:
    """Parse a major-unit string (``"88.80"`` CNY) into minor units (``8880``).

    Only ``-?digits[.digits]`` is accepted, with at most ``currency.exponent`` fractional
    digits; anything else raises ValidationFailed, and a result beyond MAX_AMOUNT raises
    AmountOverflow, both naming ``param``.
    """
    match = _PLAIN_NUMBER.fullmatch(text) if isinstance(text, str) else None
    if match is None or len(text) > _MAX_TEXT:
        raise ValidationFailed(
            f"{param} must be a decimal string such as '88.80', got {text!r}",
            code="amount_invalid",
            param=param,
        )
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > currency.exponent:
        raise ValidationFailed(
            f"{param} has more than {currency.exponent} decimal places for {currency.code}",
            code="amount_invalid",
            param=param,
        )
    minor = int(whole + fraction.ljust(currency.exponent, "0"))
    return check_amount(-minor if text.startswith("-") else minor, param=param)


def format_amount(amount: int, currency: Currency) -> str:
    """Render minor units as a plain major-unit string: 8880 CNY -> ``"88.80"``."""
    _require_int(amount, "amount")
    sign = "-" if amount < 0 else ""
    if currency.exponent == 0:
        return f"{sign}{abs(amount)}"
    whole, fraction = divmod(abs(amount), 10**currency.exponent)
    return f"{sign}{whole}.{fraction:0{currency.exponent}d}"
