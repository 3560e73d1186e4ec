"""Languages of the web pages: Simplified Chinese and English, through gettext catalogs.

Messages are English in the source; ``locales/<locale>/LC_MESSAGES/messages.po`` holds the
translations, read with Babel when first needed (no compile step). The page language is
``?lang=`` (remembered in a cookie), else the cookie, else ``Accept-Language``, else English.
Amounts, numbers and times are formatted for the language by Babel's CLDR data.

Update the catalogs after changing a message (from ``src/tuition/web``)::

    pybabel extract -F locales/babel.cfg -k N_ -o locales/messages.pot .
    pybabel update -i locales/messages.pot -d locales
"""

from __future__ import annotations

import gettext
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from functools import lru_cache
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal, format_percent
from babel.support import Translations
from starlette.requests import Request

from tuition.domain.errors import CurrencyError
from tuition.domain.money import get_currency

LOCALES = ("zh_CN", "en")
DEFAULT_LOCALE = "en"
COOKIE = "tuition_lang"
LOCALE_DIR = Path(__file__).parent / "locales"
HTML_LANG = {"zh_CN": "zh-CN", "en": "en"}
LANGUAGE_NAMES = {"zh_CN": "中文", "en": "English"}


def N_(message: str) -> str:
    """Mark a message for extraction; it is translated where it is shown."""
    return message


def pick(tag: str | None) -> str | None:
    """Our locale for a language tag such as ``zh-Hans-CN`` or ``en_GB``, if we have one."""
    if not tag:
        return None
    primary = tag.strip().replace("_", "-").split("-")[0].lower()
    # Any Chinese reader is better served by Simplified Chinese than by English.
    return {"zh": "zh_CN", "en": "en"}.get(primary)


def from_accept_language(header: str | None) -> str | None:
    choices: list[tuple[float, int, str]] = []
    for n, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        locale = pick(tag)
        if locale is not None and q > 0:
            choices.append((-q, n, locale))
    return min(choices)[2] if choices else None


def negotiate(request: Request) -> str:
    return (
        pick(request.query_params.get("lang"))
        or pick(request.cookies.get(COOKIE))
        or from_accept_language(request.headers.get("accept-language"))
        or DEFAULT_LOCALE
    )


def chosen_explicitly(request: Request) -> str | None:
    """The locale asked for with ``?lang=``, to be remembered in the cookie."""
    return pick(request.query_params.get("lang"))


@lru_cache(maxsize=len(LOCALES))
def translations(locale: str) -> gettext.NullTranslations:
    path = LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"
    if not path.exists():
        return gettext.NullTranslations()  # English: the source messages as they are
    with path.open("rb") as po:
        catalog = read_po(po, locale=locale)
    buffer = BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(fp=buffer)


def gettext_for(locale: str, message: str, **values: object) -> str:
    text = translations(locale).gettext(message)
    return text % values if values else text


class Formatter:
    """Locale-aware formatting for templates: money in minor units, times, rates."""

    def __init__(self, locale: str) -> None:
        self.locale = locale

    def money(self, amount: int | None, currency: str) -> str:
        if amount is None:
            return "—"
        try:
            unit = get_currency(currency)
        except CurrencyError:
            return f"{amount} {currency}"
        major = Decimal(amount).scaleb(-unit.exponent)
        if unit.virtual:  # coins: the platform's own name for them, not an ISO symbol
            return f"{format_decimal(major, locale=self.locale)} {unit.label or unit.code}"
        return format_currency(major, currency, locale=self.locale, currency_digits=True)

    def money_rounded(self, amount: int, currency: str) -> str:
        """Whole major units, for chart axes: 125000 CNY -> ``¥1,250``."""
        try:
            exponent = get_currency(currency).exponent
        except CurrencyError:
            return str(amount)
        major = Decimal(amount).scaleb(-exponent)
        return format_currency(
            major, currency, format="¤#,##0", locale=self.locale, currency_digits=False
        )

    def number(self, value: int | Decimal) -> str:
        return format_decimal(value, locale=self.locale)

    def percent(self, value: Decimal | None) -> str:
        if value is None:
            return "—"
        return format_percent(value, format="#,##0.0%", locale=self.locale)

    def when(self, moment: datetime | None, style: str = "medium", zone: tzinfo = UTC) -> str:
        """A time in ``zone`` (the platform's business time zone on console pages),
        labelled with its offset, ``2026-11-01 17:00:00 UTC+8``; ``style="date"`` gives
        the day in that zone only."""
        if moment is None:
            return "—"
        local = moment.astimezone(zone)
        if style == "date":
            return local.strftime("%Y-%m-%d")
        return f"{local.strftime('%Y-%m-%d %H:%M:%S')} {utc_offset(local.utcoffset())}"


def utc_offset(offset: timedelta | None) -> str:
    """``UTC``, ``UTC+8``, ``UTC+5:30`` or ``UTC-3:30``: how far a zone is from UTC."""
    if not offset:
        return "UTC"
    sign = "+" if offset > timedelta(0) else "-"
    minutes = abs(int(offset.total_seconds())) // 60
    hours, rest = divmod(minutes, 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


def zone_name(zone: tzinfo, at: datetime) -> str:
    """A zone as operators read it: ``Asia/Shanghai (UTC+8)``."""
    key = getattr(zone, "key", None) or str(zone)
    return f"{key} ({utc_offset(at.astimezone(zone).utcoffset())})"
