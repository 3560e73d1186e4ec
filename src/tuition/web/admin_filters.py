"""What the console's list pages share: the page size, and lenient parsing of their
filters. An empty or malformed value means "no filter", never an error page."""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Annotated, TypeVar

from fastapi import Query
from starlette.requests import Request

from tuition.domain.calendar import local_midnight

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
