"""What channel choice reads and writes: attempt outcomes per channel, circuit breakers."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.domain.channel_choice import FINISHED_STATUSES, BreakerState
from tuition.domain.payments import PaymentStatus
from tuition.store.tables import channel_breakers, payments


class ChannelChoiceRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def outcomes(self, since: datetime) -> dict[str, tuple[int, int]]:
        """Per channel, ``(succeeded, finished)`` of the attempts created since ``since``;
        open attempts (created, pending) are in neither count."""
        succeeded = func.sum(case((payments.c.status == PaymentStatus.SUCCEEDED.value, 1), else_=0))
        stmt = (
            select(payments.c.channel, succeeded, func.count())
            .where(payments.c.created_at >= since, payments.c.status.in_(FINISHED_STATUSES))
            .group_by(payments.c.channel)
        )
        rows = await self.conn.execute(stmt)
        return {r[0]: (int(r[1] or 0), int(r[2])) for r in rows}

    async def failed(
        self, channel: str, *, at: datetime, threshold: int, cooldown: timedelta, what: str
    ) -> None:
        """Count one more failure in a row, in one statement; at ``threshold`` the breaker
        opens until ``at + cooldown`` (a failure while half open opens it again)."""
        until = at + cooldown
        dialect: Any = postgresql if self.conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(channel_breakers).values(
            channel=channel,
            failures=1,
            opened_until=until if threshold <= 1 else None,
            last_failure=what[:200],
            updated_at=at,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[channel_breakers.c.channel],
            set_={
                "failures": channel_breakers.c.failures + 1,
                "opened_until": case(
                    (
                        channel_breakers.c.failures + 1 >= threshold,
                        literal(until, type_=channel_breakers.c.opened_until.type),
                    ),
                    else_=channel_breakers.c.opened_until,
                ),
                "last_failure": what[:200],
                "updated_at": at,
            },
        )
        await self.conn.execute(stmt)

    async def succeeded(self, channel: str, *, at: datetime) -> None:
        """A call went through: the breaker closes and the count starts again."""
        await self.conn.execute(
            update(channel_breakers)
            .where(channel_breakers.c.channel == channel, channel_breakers.c.failures > 0)
            .values(failures=0, opened_until=None, updated_at=at)
        )

    async def breakers(self) -> list[BreakerState]:
        rows = await self.conn.execute(
            select(channel_breakers).order_by(channel_breakers.c.channel)
        )
        return [
            BreakerState(r["channel"], r["failures"], r["opened_until"], r["last_failure"])
            for r in rows.mappings()
        ]
