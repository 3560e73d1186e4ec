"""What every list takes, defined once, so that every list follows one rule.

- ``limit``: 1 to 100, default 20.
- ``starting_after``: an id of the list's own kind (``ord_…`` for orders), else 422
  ``cursor_invalid`` naming ``starting_after``; a cursor of another kind never silently
  means "everything" or "nothing".
- Dates (``created_gte``, ``created_lt``): ISO 8601 with an offset only, never a number.
- An enum filter (``status``, ``kind``, ``type``): an unknown value is 422 naming it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query

from tuition.api.fields import IsoDatetime
from tuition.domain.errors import ValidationFailed
from tuition.domain.ids import Prefix, is_valid_id

DEFAULT_LIMIT = 20
MAX_LIMIT = 100

CreatedGte = Annotated[
    IsoDatetime | None, Query(description="Only objects created at or after this time")
]
CreatedLt = Annotated[IsoDatetime | None, Query(description="Only objects created before this")]

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size, 1 to 100")]
StartingAfter = Annotated[
    str | None,
    Query(max_length=40, description="The last id of the previous page; omit for the first"),
]


@dataclass(frozen=True, slots=True)
class Page:
    limit: int = DEFAULT_LIMIT
    starting_after: str | None = None


def check_cursor(starting_after: str | None, prefix: Prefix) -> None:
    if starting_after is not None and not is_valid_id(starting_after, prefix):
        raise ValidationFailed(
            f"starting_after must be a {prefix}_… id from a previous page",
            code="cursor_invalid",
            param="starting_after",
        )


def page_of(prefix: Prefix) -> Any:
    """A dependency giving the page of a list of ``prefix`` ids (limit and cursor)."""

    async def page(limit: Limit = DEFAULT_LIMIT, starting_after: StartingAfter = None) -> Page:
        check_cursor(starting_after, prefix)
        return Page(limit, starting_after)

    return Depends(page)


def check_choice(value: str | None, choices: Iterable[str], *, param: str) -> None:
    """An enum filter whose values live outside an Enum: an unknown one is a 422."""
    allowed = sorted(choices)
    if value is not None and value not in allowed:
        raise ValidationFailed(
            f"{param} must be one of {', '.join(allowed)}", code="validation_failed", param=param
        )
