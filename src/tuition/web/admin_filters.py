"""What the console's list pages share: the page size, parsing of their filters (the
lenient helpers read an empty or malformed value as "no filter"; the ``checked_``
ones note a malformed value as an error the page shows), paging both ways with a total
(:func:`paging`), and CSV answers streamed (:func:`csv_response`, :func:`csv_refused`)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from fastapi import Query
from fastapi.responses import Response, StreamingResponse
from starlette.requests import Request

from tuition.domain.calendar import local_midnight
from tuition.services.catalog import Browse
from tuition.web.i18n import N_
from tuition.web.pages import SECURITY_HEADERS

_Row = TypeVar("_Row")

PAGE = 50
Text = Annotated[str, Query(max_length=200)]
Day = Annotated[str, Query(alias="from", max_length=10)]
UntilDay = Annotated[str, Query(alias="to", max_length=10)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]

E = TypeVar("E", bound=StrEnum)


def day(text: str, zone: tzinfo) -> datetime | None:
    """The instant an ISO date (``2026-11-01``) begins in ``zone``, or None."""
    try:
        found = date.fromisoformat(text)
    except ValueError:
        return None
    return local_midnight(found, zone)


def day_range(start: str, end: str, zone: tzinfo) -> tuple[datetime | None, datetime | None]:
    """``created_gte`` and ``created_lt`` for the business days from ``start`` to ``end``,
    both included, cut at midnight in ``zone`` (the platform's time zone)."""
    first = day(start, zone)
    try:
        last = date.fromisoformat(end)
    except ValueError:
        return first, None
    return first, local_midnight(last + timedelta(days=1), zone)


def choice(kind: type[E], text: str) -> E | None:
    """The member of ``kind`` named ``text``, or None."""
    try:
        return kind(text) if text else None
    except ValueError:
        return None


def next_url(request: Request, last_id: str) -> str:
    return str(request.url.include_query_params(after=last_id))


BAD_DATE = N_("Enter a date as 2026-11-30.")
BAD_CHOICE = N_("Choose one of the listed values.")
SORT_LABELS = {
    "newest": N_("Newest first"),
    "oldest": N_("Oldest first"),
    "-amount": N_("Largest amount first"),
    "amount": N_("Smallest amount first"),
    "renews": N_("Renewing soonest"),
    "-renews": N_("Renewing latest"),
    "name": N_("Name A to Z"),
    "-name": N_("Name Z to A"),
}


def checked_sort(sort: str, sorts: tuple[str, ...], errors: dict[str, str]) -> str:
    """``sort`` when the list offers it; else the first sort, noting the error."""
    if sort in sorts:
        return sort
    errors["sort"] = BAD_CHOICE
    return sorts[0]


def paging(
    request: Request, csv_path: str, *, offset: int, shown: int, total: int
) -> dict[str, Any]:
    """What a list page shows about its paging: which rows of how many, the previous and
    next pages' links (the filters kept) and the export of the list as filtered."""
    query = request.url.query

    def at(n: int) -> str:
        return str(request.url.include_query_params(offset=n))

    return {
        "list_path": csv_path.removesuffix(".csv"),
        "sort_labels": SORT_LABELS,
        "total": total,
        "first": offset + 1 if shown else 0,
        "last": offset + shown,
        "previous_url": at(max(0, offset - PAGE)) if offset > 0 else None,
        "next_url": at(offset + PAGE) if offset + PAGE < total else None,
        "csv_url": csv_path + (f"?{query}" if query else ""),
    }


def cursor_links(
    request: Request, found: Browse[_Row], key: Callable[[_Row], str]
) -> dict[str, str | None]:
    """The previous and next pages' links of a list paged by cursor (``before``/``after``
    the first or last row's ``key``), the other filters kept."""
    url = request.url.remove_query_params(["after", "before"])
    rows = found.items
    return {
        "previous_url": str(url.include_query_params(before=key(rows[0])))
        if found.newer and rows
        else None,
        "next_url": str(url.include_query_params(after=key(rows[-1])))
        if found.older and rows
        else None,
    }


def csv_refused(errors: dict[str, str]) -> Response:
    """The answer to an export asked with malformed filters: 422 naming them."""
    return Response(
        "; ".join(f"{k}: malformed" for k in sorted(errors)) + "\n",
        status_code=422,
        media_type="text/plain; charset=utf-8",
    )


def local_time(moment: datetime | None, zone: tzinfo) -> str:
    """An instant as an export writes it: ISO 8601 in the platform's time zone."""
    return moment.astimezone(zone).isoformat(timespec="seconds") if moment else ""


def checked_days(
    start: str, end: str, zone: tzinfo, errors: dict[str, str]
) -> tuple[datetime | None, datetime | None]:
    """As :func:`day_range`, noting a malformed ``from`` or ``to`` in ``errors``."""
    bounds: list[datetime | None] = []
    for name, text, extra in (("from", start, 0), ("to", end, 1)):
        if not text:
            bounds.append(None)
            continue
        try:
            found = date.fromisoformat(text)
        except ValueError:
            errors[name] = BAD_DATE
            bounds.append(None)
            continue
        bounds.append(local_midnight(found + timedelta(days=extra), zone))
    return bounds[0], bounds[1]


def checked_choice(kind: type[E], text: str, name: str, errors: dict[str, str]) -> E | None:
    """The member of ``kind`` named ``text`` (None when empty), noting any other value."""
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        errors[name] = BAD_CHOICE
        return None


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def csv_cell(value: str) -> str:
    """``value`` as an export writes it: a text a spreadsheet would read as a formula
    (starting ``=``, ``+``, ``-``, ``@``, a tab or a carriage return, as a customer id or
    a payee's name may) gets a leading ``'`` so it is shown as typed, never run; a plain
    number (``-12.50``, a negative amount) stays as it is."""
    if value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_response(
    filename: str, header: list[str], rows: AsyncIterator[list[str]]
) -> StreamingResponse:
    """A CSV download streamed as ``rows`` come (UTF-8 with a BOM, for spreadsheets),
    flushed every 64 KiB: an export of any size never sits in memory. Every cell goes
    through :func:`csv_cell`."""

    async def body() -> AsyncIterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        buffer.write("\ufeff")
        writer.writerow(header)
        async for row in rows:
            writer.writerow([csv_cell(cell) for cell in row])
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue().encode()

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        # As every console page's: never kept by a cache, never sniffed as a page.
        headers={**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'},
    )
