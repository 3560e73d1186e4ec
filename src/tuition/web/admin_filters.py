"""What the console's list pages share: the page size, and lenient parsing of their
filters. An empty or malformed value means "no filter", never an error page."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, TypeVar

from fastapi import Query
from starlette.requests import Request

PAGE = 50
Text = Annotated[str, Query(max_length=200)]

E = TypeVar("E", bound=StrEnum)


def day(text: str) -> datetime | None:
    """Midnight UTC of an ISO date (``2026-11-01``), or None."""
    try:
        found = date.fromisoformat(text)
    except ValueError:
        return None
    return datetime(found.year, found.month, found.day, tzinfo=UTC)


def day_range(start: str, end: str) -> tuple[datetime | None, datetime | None]:
    """``created_gte`` and ``created_lt`` for the days from ``start`` to ``end``, both
    included."""
    last = day(end)
    return day(start), last + timedelta(days=1) if last else None


def choice(kind: type[E], text: str) -> E | None:
    """The member of ``kind`` named ``text``, or None."""
    try:
        return kind(text) if text else None
    except ValueError:
        return None


def next_url(request: Request, last_id: str) -> str:
    return str(request.url.include_query_params(after=last_id))
