"""Exchange rates: an append-only history per pair, and the rate in force at a moment."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.domain.fx import FxRate
from tuition.store.tables import fx_rates


class FxRateRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add_many(self, rates: Sequence[FxRate]) -> None:
        """Record ``rates``; rows are never updated, so a correction is a newer row."""
        if rates:
            await self.conn.execute(insert(fx_rates), [_values(r) for r in rates])

    async def at(self, base: str, quote: str, at: datetime) -> FxRate | None:
        """The ``base/quote`` rate in force at ``at``: latest ``as_of`` not after it."""
        stmt = (
            select(fx_rates)
            .where(fx_rates.c.base == base, fx_rates.c.quote == quote, fx_rates.c.as_of <= at)
            .order_by(fx_rates.c.as_of.desc(), fx_rates.c.created_at.desc(), fx_rates.c.id.desc())
            .limit(1)
        )
        row = (await self.conn.execute(stmt)).mappings().first()
        return None if row is None else _rate(row)

    async def get(self, rate_id: str) -> FxRate | None:
        row = (
            (await self.conn.execute(select(fx_rates).where(fx_rates.c.id == rate_id)))
            .mappings()
            .first()
        )
        return None if row is None else _rate(row)

    async def history(
        self, base: str, quote: str, *, limit: int, starting_after: str | None
    ) -> tuple[list[FxRate], bool]:
        """The pair's rates, newest ``as_of`` first (then newest recorded), paged by id."""
        stmt = select(fx_rates).where(fx_rates.c.base == base, fx_rates.c.quote == quote)
        if starting_after is not None:
            last = await self.get(starting_after)
            if last is not None:
                stmt = stmt.where(
                    or_(
                        fx_rates.c.as_of < last.as_of,
                        and_(fx_rates.c.as_of == last.as_of, fx_rates.c.id < last.id),
                    )
                )
        stmt = stmt.order_by(fx_rates.c.as_of.desc(), fx_rates.c.id.desc()).limit(limit + 1)
        rows = [_rate(r) for r in (await self.conn.execute(stmt)).mappings()]
        return rows[:limit], len(rows) > limit

    async def latest(self) -> list[FxRate]:
        """The newest rate of every pair (by ``as_of``, then recorded), ordered by pair."""
        rows = await self.conn.execute(
            select(fx_rates).order_by(
                fx_rates.c.base,
                fx_rates.c.quote,
                fx_rates.c.as_of.desc(),
                fx_rates.c.created_at.desc(),
                fx_rates.c.id.desc(),
            )
        )
        seen: dict[tuple[str, str], FxRate] = {}
        for row in rows.mappings():
            rate = _rate(row)
            seen.setdefault((rate.base, rate.quote), rate)
        return list(seen.values())


def _values(rate: FxRate) -> dict[str, Any]:
    return {
        "id": rate.id,
        "base": rate.base,
        "quote": rate.quote,
        "rate": rate.rate,
        "source": rate.source,
        "as_of": rate.as_of,
        "created_at": rate.created_at,
    }


def _rate(row: Any) -> FxRate:
    return FxRate(
        id=row["id"],
        base=row["base"],
        quote=row["quote"],
        rate=row["rate"],
        source=row["source"],
        as_of=row["as_of"],
        created_at=row["created_at"],
    )
