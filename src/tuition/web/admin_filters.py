"""What the console's list pages share: the page size, parsing of their filters (the
lenient helpers read an empty or malformed value as "no filter"; the ``checked_``
ones note a malformed value as an error the page shows), and CSV answers streamed."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Annotated, TypeVar

from fastapi import Query
from fastapi.responses import StreamingResponse
from starlette.requests import Request

from tuition.domain.calendar import local_midnight
from tuition.web.i18n import N_

PAGE = 50
Text = Annotated[str, Query(max_length=200)]

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


def csv_response(
    filename: str, header: list[str], rows: AsyncIterator[list[str]]
) -> StreamingResponse:
    """A CSV download streamed as ``rows`` come (UTF-8 with a BOM, for spreadsheets),
    flushed every 64 KiB: an export of any size never sits in memory."""

    async def body() -> AsyncIterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        buffer.write("\ufeff")
        writer.writerow(header)
        async for row in rows:
            writer.writerow(row)
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue().encode()

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
