"""The audit trail's storage: records appended in the change's transaction, sealed into
the hash chain afterwards by one sealer at a time (the head row is claimed first)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.domain.audit import AuditEvent, SealedAudit, audit_hash
from tuition.domain.ledger import GENESIS_HASH
from tuition.store.db import insert_ignoring_conflicts
from tuition.store.tables import audit_chain_head, audit_events

_FIELDS = list(AuditEvent.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None  # exact, or a prefix ending in "." (``operator.``)
    subject: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _event(m: Any) -> AuditEvent:
    return AuditEvent(**{f: m[f] for f in _FIELDS})


class AuditRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, event: AuditEvent) -> None:
        await self.conn.execute(
            insert(audit_events).values({f: getattr(event, f) for f in _FIELDS})
        )

    async def _claim_head(self) -> tuple[int, str]:
        await self.conn.execute(
            insert_ignoring_conflicts(self.conn, audit_chain_head).values(
                id=1, chain_index=-1, hash=GENESIS_HASH
            )
        )
        query = select(audit_chain_head).where(audit_chain_head.c.id == 1)
        if self.conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = (await self.conn.execute(query)).one()
        return int(row.chain_index), str(row.hash)

    async def head(self) -> tuple[int, str]:
        row = (
            await self.conn.execute(select(audit_chain_head).where(audit_chain_head.c.id == 1))
        ).first()
        return (-1, GENESIS_HASH) if row is None else (int(row.chain_index), str(row.hash))

    async def seal(self, *, limit: int = 1000) -> int:
        """Chain up to ``limit`` unsealed records after the head, in ``seq`` order."""
        index, prev = await self._claim_head()
        rows = (
            await self.conn.execute(
                select(audit_events)
                .where(audit_events.c.chain_index.is_(None))
                .order_by(audit_events.c.seq)
                .limit(limit)
            )
        ).all()
        for row in rows:
            index += 1
            digest = audit_hash(prev, _event(row._mapping))
            await self.conn.execute(
                update(audit_events)
                .where(audit_events.c.seq == row.seq, audit_events.c.chain_index.is_(None))
                .values(chain_index=index, prev_hash=prev, hash=digest)
            )
            prev = digest
        if rows:
            await self.conn.execute(
                update(audit_chain_head)
                .where(audit_chain_head.c.id == 1)
                .values(chain_index=index, hash=prev)
            )
        return len(rows)

    async def sealed(self) -> list[SealedAudit]:
        rows = await self.conn.execute(
            select(audit_events)
            .where(audit_events.c.chain_index.is_not(None))
            .order_by(audit_events.c.chain_index)
        )
        return [
            SealedAudit(_event(r._mapping), int(r.chain_index), str(r.prev_hash), str(r.hash))
            for r in rows
        ]

    async def unsealed_count(self) -> int:
        query = select(func.count()).where(audit_events.c.chain_index.is_(None))
        return int((await self.conn.execute(query)).scalar_one())

    def _query(self, where: AuditFilter) -> Select[Any]:
        query: Select[Any] = select(audit_events)
        if where.actor:
            query = query.where(func.lower(audit_events.c.actor) == where.actor.lower())
        if where.action:
            if where.action.endswith("."):
                query = query.where(audit_events.c.action.startswith(where.action, autoescape=True))
            else:
                query = query.where(audit_events.c.action == where.action)
        if where.subject:
            query = query.where(func.lower(audit_events.c.subject) == where.subject.lower())
        if where.since is not None:
            query = query.where(audit_events.c.occurred_at >= where.since)
        if where.until is not None:
            query = query.where(audit_events.c.occurred_at < where.until)
        return query

    async def page(
        self, where: AuditFilter, *, limit: int, offset: int
    ) -> tuple[list[AuditEvent], int]:
        """Newest first, ``limit`` from ``offset``, and how many match in all."""
        query = self._query(where)
        total = (
            await self.conn.execute(select(func.count()).select_from(query.subquery()))
        ).scalar_one()
        rows = await self.conn.execute(
            query.order_by(audit_events.c.seq.desc()).limit(limit).offset(offset)
        )
        return [_event(r._mapping) for r in rows], int(total)

    async def stream(self, where: AuditFilter, *, batch: int = 1000) -> AsyncIterator[AuditEvent]:
        """Every matching record, newest first, read ``batch`` at a time by keyset."""
        last: int | None = None
        while True:
            query = self._query(where)
            if last is not None:
                query = query.where(audit_events.c.seq < last)
            rows = (
                await self.conn.execute(query.order_by(audit_events.c.seq.desc()).limit(batch))
            ).all()
            for row in rows:
                yield _event(row._mapping)
            if len(rows) < batch:
                return
            last = int(rows[-1].seq)
