"""What the console's lists share: finding rows by the text an operator types, sorting,
paging with a total, and reading every matching row in chunks for an export.

A list is a :class:`Listing`: its query with the filters applied, its primary key (ids
are ULIDs, so id order is creation order) and the sorts it offers. The text search is a
set of candidate keys (:func:`found_by`): the union of small selects, each of which an
index answers (an exact id, a gateway number in any case, the start of a customer id in
any case), so a search never scans a whole table (docs/admin.md, "What is indexed").

Prefix search in any case is written for each engine's index
(:func:`starts_with_lowered`): PostgreSQL answers ``lower(col) LIKE 'abc%'`` from an
index ``lower(col) text_pattern_ops``; SQLite uses an expression index ``lower(col)``
only for a range, ``lower(col) >= 'abc' AND lower(col) < 'abd'``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, select, union
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

SORTS = ("newest", "oldest", "amount", "-amount")
_ID = re.compile(r"([A-Za-z]{1,8})_([0-9A-Za-z]{26})")


def normal_id(text: str) -> str | None:
    """An id as we mint them (``ord_01J…``: prefix lower-case, ULID upper-case), from
    however it was typed; None when ``text`` is not shaped like one."""
    found = _ID.fullmatch(text.strip())
    return f"{found.group(1).lower()}_{found.group(2).upper()}" if found else None


def _escaped(text: str) -> str:
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


def _after(prefix: str) -> str | None:
    """The least string greater than every string starting with ``prefix`` (by code
    point, which is UTF-8 byte order), or None when there is none to write."""
    last = ord(prefix[-1])
    bumped = last + 1 if last + 1 != 0xD800 else 0xE000
    return prefix[:-1] + chr(bumped) if bumped <= 0x10FFFF else None


_ASCII_CAPITALS = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def lowered_as(text: str, dialect: str) -> str:
    """``text`` lowered as the engine's ``lower()`` does: SQLite folds ASCII letters
    only, so ``Élodie`` is compared as ``Élodie`` there (and as ``élodie`` elsewhere)."""
    return text.translate(_ASCII_CAPITALS) if dialect == "sqlite" else text.lower()


def starts_with_lowered(column: Any, text: str, dialect: str) -> ColumnElement[bool]:
    """``column`` starts with ``text`` in any case, in the form the engine's index on
    ``lower(column)`` answers."""
    lowered = lowered_as(text, dialect)
    like = func.lower(column).like(_escaped(lowered) + "%", escape="/")
    if dialect != "sqlite" or not lowered:
        return like
    bound = _after(lowered)
    if bound is None:
        return like
    lower = func.lower(column)
    return and_(lower >= lowered, lower < bound, like)


def equals_lowered(column: Any, text: str, dialect: str) -> ColumnElement[bool]:
    """``column`` is ``text`` in any case (an index on ``lower(column)`` answers it)."""
    return func.lower(column) == lowered_as(text.strip(), dialect)


def found_by(*candidates: Select[Any]) -> Select[Any]:
    """The keys any of ``candidates`` (one-column selects) finds: use as
    ``table.c.id.in_(found_by(...))``."""
    if len(candidates) == 1:
        return candidates[0]
    return select(union(*candidates).subquery().c[0])


def by_date_and_amount(key: Any, amount: Any) -> dict[str, tuple[Any, ...]]:
    """The sorts of a list of money: by date (the id) and by amount, ties newest first."""
    return {
        "newest": (key.desc(),),
        "oldest": (key.asc(),),
        "amount": (amount.asc(), key.desc()),
        "-amount": (amount.desc(), key.desc()),
    }


@dataclass(frozen=True, slots=True)
class Listing:
    """A console list as filtered: ``query`` selects its rows, ``key`` is its primary key
    column and ``sorts`` names the orders it may be shown in."""

    query: Select[Any]
    key: Any
    sorts: Mapping[str, tuple[Any, ...]]

    async def page(
        self, conn: AsyncConnection, *, sort: str, limit: int, offset: int
    ) -> tuple[list[RowMapping], int]:
        """One page in ``sort`` order and how many rows match in all."""
        total = (
            await conn.execute(select(func.count()).select_from(self.query.subquery()))
        ).scalar_one()
        rows = await conn.execute(
            self.query.order_by(*self.sorts[sort]).limit(limit).offset(offset)
        )
        return list(rows.mappings()), int(total)

    async def stream(
        self, conn: AsyncConnection, *, batch: int = 1000
    ) -> AsyncIterator[RowMapping]:
        """Every matching row, newest first, read ``batch`` at a time by keyset: an export
        of any size never sits in memory, and no page is read twice."""
        last: Any = None
        while True:
            query = self.query if last is None else self.query.where(self.key < last)
            rows = (await conn.execute(query.order_by(self.key.desc()).limit(batch))).mappings()
            chunk = list(rows)
            for row in chunk:
                yield row
            if len(chunk) < batch:
                return
            last = chunk[-1][self.key.name]
