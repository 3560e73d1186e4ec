"""Writes a unit of work sends together: one round trip for several appends.

A use case's last writes are often appends that nothing in its transaction reads back:
the outbox events, the notification's audit record, the order and its lines, the
payment and its job, the ``Idempotency-Key`` outcome. Each sent on its own costs a round
trip and an execution. :class:`StagedWrites` keeps them until :meth:`~StagedWrites.flush`
(the unit of work flushes at ``commit()``) and sends them as one statement on PostgreSQL
(each write a data-modifying CTE of ``WITH … SELECT``, compiled once per sequence of
shapes) and one after the other on SQLite, in the order staged.

The rule for staging: a write may be staged only if nothing later in the same
transaction reads its row or needs it to exist; rows that reference a staged one (a
foreign key) are staged after it or written after a :meth:`~StagedWrites.flush`.
PostgreSQL checks foreign keys at the end of the whole statement, so an order and its
lines may be staged in either order.

A *guarded* write (an ``UPDATE … RETURNING`` such as the key's outcome, fenced by its
holder token) reports how many rows it matched; the caller decides whether to commit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table, bindparam, func, insert, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert, Update

from tuition.store.direct import Direct

# A staged write's statement for a dialect ("postgresql", "sqlite"), its bound parameters
# named with the given prefix.
Build = Callable[[str, str], Insert | Update]
_MAX_SHAPES = 256
# Writes per combined statement: a use case may stage thousands (a backfill), and one
# statement holds at most 32,767 parameters; 32 writes of up to 25 columns stay far below.
MAX_WRITES_PER_STATEMENT = 32


@dataclass(frozen=True, slots=True)
class Shape:
    """What a staged write's statement looks like, without its values: hashable, so a
    sequence of shapes names one compiled statement."""

    build: Build
    guarded: bool = False

    @functools.cache  # noqa: B019 (shapes are module constants or cached; few)
    def statement(self, prefix: str, dialect: str) -> Insert | Update:
        return self.build(prefix, dialect)


@functools.cache
def insert_shape(table: Table, columns: tuple[str, ...], *, ignore_conflicts: bool) -> Shape:
    """An INSERT of one row of ``columns`` into ``table`` (``ON CONFLICT DO NOTHING``
    if ``ignore_conflicts``)."""
    unknown = set(columns) - set(table.c.keys())
    assert not unknown, f"{table.name} has no column {sorted(unknown)}"

    def build(prefix: str, dialect: str) -> Insert:
        values = {c: bindparam(prefix + c, type_=table.c[c].type) for c in columns}
        if not ignore_conflicts:
            return insert(table).values(values)
        if dialect == "postgresql":
            return postgresql.insert(table).values(values).on_conflict_do_nothing()
        return sqlite.insert(table).values(values).on_conflict_do_nothing()

    return Shape(build)


@dataclass(frozen=True, slots=True)
class _Write:
    shape: Shape
    params: Mapping[str, Any]


class StagedWrites:
    """The writes staged on one connection, sent by :meth:`flush`."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self._writes: list[_Write] = []

    def __bool__(self) -> bool:
        return bool(self._writes)

    def insert(
        self,
        table: Table,
        rows: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        ignore_conflicts: bool = False,
    ) -> None:
        """Stage an INSERT of ``rows`` (one mapping or several, each naming its columns)."""
        for row in [rows] if isinstance(rows, Mapping) else rows:
            shape = insert_shape(table, tuple(row), ignore_conflicts=ignore_conflicts)
            self._writes.append(_Write(shape, row))

    def guard(self, shape: Shape, params: Mapping[str, Any]) -> None:
        """Stage a guarded write (``shape.guarded``, an ``UPDATE … RETURNING``); :meth:`flush`
        returns the number of rows it matched."""
        assert shape.guarded, "a guard reports its rows: build it with guarded=True"
        self._writes.append(_Write(shape, params))

    async def flush(self) -> list[int]:
        """Send the staged writes; the rows each guarded write matched, in staging order."""
        writes, self._writes = self._writes, []
        matched: list[int] = []
        for start in range(0, len(writes), MAX_WRITES_PER_STATEMENT):
            matched += await self._send(writes[start : start + MAX_WRITES_PER_STATEMENT])
        return matched

    async def _send(self, writes: list[_Write]) -> list[int]:
        if self._conn.dialect.name != "postgresql" or len(writes) == 1:
            return await self._one_by_one(writes)
        statement = _composed(tuple(w.shape for w in writes))
        params = {
            f"w{i}_{name}": value
            for i, write in enumerate(writes)
            for name, value in write.params.items()
        }
        row = await statement.first(self._conn, params)
        assert row is not None
        return [int(n) for n in row.values()][: sum(w.shape.guarded for w in writes)]

    async def _one_by_one(self, writes: list[_Write]) -> list[int]:
        matched = []
        for write in writes:
            statement = write.shape.statement("", self._conn.dialect.name)
            result = await self._conn.execute(statement, dict(write.params))
            if write.shape.guarded:
                matched.append(len(result.all()))
        return matched


@functools.lru_cache(maxsize=_MAX_SHAPES)
def _composed(shapes: tuple[Shape, ...]) -> Direct:
    """``WITH w0 AS (…), w1 AS (…) … SELECT <rows matched by each guard>`` (PostgreSQL),
    run on the driver directly."""
    ctes = [shape.statement(f"w{i}_", "postgresql").cte(f"w{i}") for i, shape in enumerate(shapes)]
    counts: list[ColumnElement[Any]] = [
        select(func.count()).select_from(cte).scalar_subquery().label(f"matched_{i}")
        for i, (shape, cte) in enumerate(zip(shapes, ctes, strict=True))
        if shape.guarded
    ]
    return Direct(select(*counts or [literal(1).label("done")]).add_cte(*ctes))
