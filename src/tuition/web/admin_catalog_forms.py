"""Reading the catalog forms of the console: amounts in major units per currency
(``CNY 199.00``, one per line or separated by ``;``), percentages (``20`` is 20 %, kept as
a Decimal, never a float) and local times (``2026-11-01T09:00`` in the platform's zone).

Each reader raises :class:`ValidationFailed` naming the form field, so the page shows the
problem beside the field and nothing is written."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, tzinfo
from decimal import Decimal, InvalidOperation

from tuition.domain.errors import ValidationFailed
from tuition.domain.money import format_amount, get_currency, parse_decimal_amount
from tuition.domain.money import parse_rate as _parse_rate

_SEPARATORS = re.compile(r"[;\n,]+")
_PERCENT = re.compile(r"[0-9]{1,3}(\.[0-9]{1,6})?")


def amounts(text: str, *, param: str) -> dict[str, int]:
    """``"CNY 199.00; USD 29"`` as ``{"CNY": 19900, "USD": 2900}``."""
    found: dict[str, int] = {}
    for piece in _SEPARATORS.split(text.strip()):
        piece = piece.strip()
        if not piece:
            continue
        parts = piece.replace("=", " ").split()
        if len(parts) != 2:
            raise ValidationFailed(
                f"{param}: write each amount as a currency and an amount, e.g. 'CNY 199.00'",
                code="amount_invalid",
                param=param,
            )
        code = parts[0].upper()
        currency = get_currency(code, param=param)
        if code in found:
            raise ValidationFailed(
                f"{param}: {code} is given twice", code="amount_invalid", param=param
            )
        found[code] = parse_decimal_amount(parts[1], currency, param=param)
    return found


def amounts_text(values: Mapping[str, int] | None) -> str:
    """The inverse of :func:`amounts`, for a form's current value."""
    if not values:
        return ""
    return "; ".join(f"{c} {format_amount(v, get_currency(c))}" for c, v in sorted(values.items()))


def percent(text: str, *, param: str) -> Decimal:
    """``"20"`` or ``"12.5"`` (per cent) as the fraction ``Decimal("0.2")``/``"0.125"``."""
    value = text.strip().removesuffix("%").strip()
    if _PERCENT.fullmatch(value) is None:
        raise ValidationFailed(
            f"{param}: enter a percentage such as 20 or 12.5", code="rate_invalid", param=param
        )
    try:
        fraction = Decimal(value) / 100
    except InvalidOperation:  # pragma: no cover - the pattern admits decimals only
        raise ValidationFailed(f"{param}: not a number", param=param) from None
    return _parse_rate(str(fraction.normalize()), param=param).copy_abs()


def percent_text(fraction: Decimal | None) -> str:
    if fraction is None:
        return ""
    shown = (fraction * 100).normalize()
    return format(shown, "f")


def local_time(text: str, zone: tzinfo, *, param: str) -> datetime | None:
    """A ``datetime-local`` field's value as an aware time in ``zone``; empty is None."""
    value = text.strip()
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(
            f"{param}: enter a date and time such as 2026-11-30T09:00",
            code="datetime_invalid",
            param=param,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment


def local_time_text(moment: datetime | None, zone: tzinfo) -> str:
    if moment is None:
        return ""
    return moment.astimezone(zone).replace(tzinfo=None).isoformat(timespec="minutes")


def whole_number(text: str, *, param: str) -> int | None:
    """An optional count (a limit): empty is None; 1 to 1,000,000,000 otherwise."""
    value = text.strip()
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= 1_000_000_000:
        raise ValidationFailed(
            f"{param}: enter a whole number from 1, or leave it empty",
            code="limit_invalid",
            param=param,
        )
    return int(value)
