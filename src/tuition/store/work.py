"""Background work: jobs and webhook deliveries, claimed with leases.

A claim sets ``locked_until`` in a short transaction of its own. On PostgreSQL the rows are
picked with ``FOR UPDATE SKIP LOCKED``, so any number of workers share the work and no
row is handed to two at once; on SQLite the single writer lock gives the same guarantee.
A worker that dies leaves its rows locked only until the lease passes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Select,
    Table,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.store.db import insert_ignoring_conflicts
from tuition.store.tables import (
    delivery_attempts,
    jobs,
    outbox_events,
    webhook_deliveries,
    webhook_endpoints,
)

# Events that start a job about their object: an order paid by one attempt has its
# other open attempts closed on their channels (worker/jobs.py ``close_attempts``).
EVENT_JOBS = {"order.paid": "close_attempts"}


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    kind: str
    key: str
    attempts: int
    created_at: datetime

    @property
    def subject(self) -> str:
        """What the job is about: the part of the key after ``kind:``."""
        return self.key.partition(":")[2]


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    url: str
    description: str
    events: list[str]
    secret: str
    enabled: bool
    created_at: datetime
    updated_at: datetime

    def wants(self, event_type: str) -> bool:
        return "*" in self.events or event_type in self.events


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    event_id: str
    endpoint_id: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Attempt:
    delivery_id: int
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    response_excerpt: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt and what it leaves its delivery: ``status`` and ``next_attempt_at``."""

    attempt: Attempt
    status: str
    next_attempt_at: datetime
    error: str | None


def _unlocked(column: Any, now: datetime) -> Any:
    return or_(column.is_(None), column <= now)


class WorkRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    def _skip_locked(self, query: Select[Any]) -> Select[Any]:
        if self.conn.dialect.name == "postgresql":
            return query.with_for_update(skip_locked=True)
        return query

    # --- jobs ---------------------------------------------------------------------------

    async def enqueue(self, kind: str, subject: str, *, run_at: datetime, now: datetime) -> bool:
        """Queue ``kind:subject`` once; False if that job already exists (UNIQUE key)."""
        result = await self.conn.execute(
            insert_ignoring_conflicts(self.conn, jobs).values(
                kind=kind,
                key=f"{kind}:{subject}",
                status="queued",
                attempts=0,
                run_at=run_at,
                created_at=now,
                updated_at=now,
            )
        )
        return result.rowcount == 1

    async def enqueue_many(
        self, kind: str, subjects: Sequence[str], *, run_at: datetime, now: datetime
    ) -> int:
        """``enqueue`` for many subjects in one statement; how many were new."""
        if not subjects:
            return 0
        result = await self.conn.execute(
            insert_ignoring_conflicts(self.conn, jobs).values(
                [
                    {
                        "kind": kind,
                        "key": f"{kind}:{subject}",
                        "status": "queued",
                        "attempts": 0,
                        "run_at": run_at,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for subject in subjects
                ]
            )
        )
        return max(result.rowcount, 0)

    async def without_job(
        self,
        kind: str,
        table: Table,
        *,
        statuses: Sequence[str],
        due: str,
        due_by: datetime,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[tuple[datetime, str]]:
        """Rows of ``table`` (orders, payments, refunds) in one of ``statuses`` whose
        ``due`` column is at or before ``due_by`` and that have no ``kind:<id>`` job: one
        keyset page by ``(due, id)`` after ``after``. The sweep pages through them all,
        so no number of rows ahead of one keeps it from getting its job."""
        due_at, row_id = table.c[due], table.c.id
        query = (
            select(due_at, row_id)
            .where(
                table.c.status.in_(list(statuses)),
                due_at <= due_by,
                ~exists().where(jobs.c.key == literal(f"{kind}:") + row_id),
            )
            .order_by(due_at, row_id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(or_(due_at > after[0], and_(due_at == after[0], row_id > after[1])))
        return [(r[0], r[1]) for r in await self.conn.execute(query)]

    async def claim_jobs(self, *, now: datetime, lease: timedelta, limit: int) -> list[Job]:
        rows = (
            await self.conn.execute(
                self._skip_locked(
                    select(jobs.c.id, jobs.c.kind, jobs.c.key, jobs.c.attempts, jobs.c.created_at)
                    .where(
                        jobs.c.status == "queued",
                        jobs.c.run_at <= now,
                        _unlocked(jobs.c.locked_until, now),
                    )
                    # Earliest due first, whatever the kind: a job waits only behind
                    # work that fell due before it, and a job that found nothing
                    # reschedules itself to later, behind what is due now.
                    .order_by(jobs.c.run_at, jobs.c.id)
                    .limit(limit)
                )
            )
        ).all()
        if not rows:
            return []
        await self.conn.execute(
            update(jobs)
            .where(jobs.c.id.in_([r.id for r in rows]))
            .values(locked_until=now + lease, attempts=jobs.c.attempts + 1, updated_at=now)
        )
        return [Job(r.id, r.kind, r.key, r.attempts + 1, r.created_at) for r in rows]

    async def finish_job(self, job_id: int, *, now: datetime) -> None:
        await self.conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(status="done", locked_until=None, last_error=None, updated_at=now)
        )

    async def retry_job(
        self, job_id: int, *, run_at: datetime, error: str | None, now: datetime, give_up: bool
    ) -> None:
        """Queue the job again at ``run_at``. Without ``error`` it is a handler's "look
        again then" (a recovery query that found the payment still open): not a failure,
        so its attempts start again from zero and a later error backs off from the start
        instead of giving up because the job had been looked at many times."""
        values: dict[str, Any] = {
            "status": "failed" if give_up else "queued",
            "run_at": run_at,
            "locked_until": None,
            "last_error": error[:500] if error else None,
            "updated_at": now,
        }
        if error is None:
            values["attempts"] = 0
        await self.conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))

    async def release_jobs(self, job_ids: list[int], *, now: datetime) -> None:
        """Hand claimed jobs back untouched (graceful shutdown)."""
        if job_ids:
            await self.conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(job_ids))
                .values(locked_until=None, attempts=jobs.c.attempts - 1, updated_at=now)
            )

    async def job(self, kind: str, subject: str) -> dict[str, Any] | None:
        row = (
            await self.conn.execute(select(jobs).where(jobs.c.key == f"{kind}:{subject}"))
        ).first()
        return None if row is None else dict(row._mapping)

    # --- outbox relay -------------------------------------------------------------------

    async def relay(self, *, now: datetime, limit: int) -> int:
        """Turn undispatched events into one delivery per interested enabled endpoint,
        and queue the jobs some events start (``EVENT_JOBS``), in the same transaction:
        at least once, off the path that wrote the event."""
        events = (
            await self.conn.execute(
                self._skip_locked(
                    select(outbox_events.c.id, outbox_events.c.type, outbox_events.c.object_id)
                    .where(outbox_events.c.dispatched_at.is_(None))
                    .order_by(outbox_events.c.id)
                    .limit(limit)
                )
            )
        ).all()
        if not events:
            return 0
        endpoints = await self.endpoints(enabled_only=True)
        rows = [
            {
                "event_id": e.id,
                "endpoint_id": ep.id,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for e in events
            for ep in endpoints
            if ep.wants(e.type)
        ]
        if rows:
            await self.conn.execute(insert_ignoring_conflicts(self.conn, webhook_deliveries), rows)
        for event_type, kind in EVENT_JOBS.items():
            subjects = [e.object_id for e in events if e.type == event_type]
            await self.enqueue_many(kind, subjects, run_at=now, now=now)
        await self.conn.execute(
            update(outbox_events)
            .where(outbox_events.c.id.in_([e.id for e in events]))
            .values(dispatched_at=now)
        )
        return len(events)

    # --- deliveries ---------------------------------------------------------------------

    async def claim_deliveries(
        self, *, now: datetime, lease: timedelta, limit: int
    ) -> list[Delivery]:
        rows = (
            await self.conn.execute(
                self._skip_locked(
                    select(webhook_deliveries)
                    .where(
                        webhook_deliveries.c.status == "pending",
                        webhook_deliveries.c.next_attempt_at <= now,
                        _unlocked(webhook_deliveries.c.locked_until, now),
                    )
                    .order_by(webhook_deliveries.c.next_attempt_at)
                    .limit(limit)
                )
            )
        ).all()
        if not rows:
            return []
        await self.conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id.in_([r.id for r in rows]))
            .values(locked_until=now + lease)
        )
        return [_delivery(r._mapping) for r in rows]

    async def record_attempts(self, outcomes: Sequence[Outcome]) -> None:
        """Record a batch of attempts and their deliveries' new state: one INSERT of
        every attempt and one UPDATE executed for every delivery, in the caller's
        transaction (a crash before its commit leaves them all to be sent again)."""
        if not outcomes:
            return
        await self.conn.execute(
            insert(delivery_attempts),
            [{f: getattr(o.attempt, f) for f in Attempt.__dataclass_fields__} for o in outcomes],
        )
        await self.conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id == bindparam("d_id"))
            .values(
                status=bindparam("d_status"),
                attempts=webhook_deliveries.c.attempts + 1,
                next_attempt_at=bindparam("d_next"),
                locked_until=None,
                last_error=bindparam("d_error"),
                delivered_at=bindparam("d_delivered"),
            ),
            [
                {
                    "d_id": o.attempt.delivery_id,
                    "d_status": o.status,
                    "d_next": o.next_attempt_at,
                    "d_error": o.error[:500] if o.error else None,
                    "d_delivered": o.attempt.attempted_at if o.status == "succeeded" else None,
                }
                for o in outcomes
            ],
        )

    async def postpone_deliveries(self, until: Sequence[tuple[int, datetime]]) -> None:
        """Hand claimed deliveries back to be tried at the given times, not counted as
        attempts (their endpoint could not be reached by another delivery of the batch):
        one UPDATE executed for each."""
        if not until:
            return
        await self.conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id == bindparam("d_id"))
            .values(next_attempt_at=bindparam("d_next"), locked_until=None),
            [{"d_id": delivery_id, "d_next": at} for delivery_id, at in until],
        )

    async def release_deliveries(self, ids: list[int]) -> None:
        if ids:
            await self.conn.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.id.in_(ids))
                .values(locked_until=None)
            )

    async def resend(self, event_id: str, endpoint_id: str | None, *, now: datetime) -> int:
        """Queue an event again for its endpoints (or one), whatever happened before."""
        endpoints = [
            ep
            for ep in await self.endpoints(enabled_only=True)
            if endpoint_id is None or ep.id == endpoint_id
        ]
        if not endpoints:
            return 0
        await self.conn.execute(
            insert_ignoring_conflicts(self.conn, webhook_deliveries),
            [
                {
                    "event_id": event_id,
                    "endpoint_id": ep.id,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for ep in endpoints
            ],
        )
        result = await self.conn.execute(
            update(webhook_deliveries)
            .where(
                webhook_deliveries.c.event_id == event_id,
                webhook_deliveries.c.endpoint_id.in_([ep.id for ep in endpoints]),
            )
            .values(status="pending", next_attempt_at=now, locked_until=None, created_at=now)
        )
        return result.rowcount

    async def deliveries_of(self, event_id: str) -> list[tuple[Delivery, list[Attempt]]]:
        rows = (
            await self.conn.execute(
                select(webhook_deliveries)
                .where(webhook_deliveries.c.event_id == event_id)
                .order_by(webhook_deliveries.c.id)
            )
        ).all()
        out = []
        for row in rows:
            attempts = await self.conn.execute(
                select(delivery_attempts)
                .where(delivery_attempts.c.delivery_id == row.id)
                .order_by(delivery_attempts.c.id)
            )
            out.append(
                (
                    _delivery(row._mapping),
                    [
                        Attempt(
                            a.delivery_id,
                            a.attempted_at,
                            a.status_code,
                            a.latency_ms,
                            a.response_excerpt,
                            a.error,
                        )
                        for a in attempts
                    ],
                )
            )
        return out

    async def delivery_counts(self) -> dict[str, int]:
        rows = await self.conn.execute(
            select(webhook_deliveries.c.status, func.count()).group_by(webhook_deliveries.c.status)
        )
        return {status: int(n) for status, n in rows}

    # --- endpoints ----------------------------------------------------------------------

    async def add_endpoint(self, endpoint: Endpoint) -> None:
        await self.conn.execute(insert(webhook_endpoints).values(**_endpoint_values(endpoint)))

    async def endpoint(self, endpoint_id: str, *, for_update: bool = False) -> Endpoint | None:
        if "\x00" in endpoint_id:  # names no row; PostgreSQL would refuse it (a 500)
            return None
        stmt = select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
        row = (await self.conn.execute(stmt.with_for_update() if for_update else stmt)).first()
        return None if row is None else Endpoint(**row._mapping)

    async def endpoints(self, *, enabled_only: bool = False) -> list[Endpoint]:
        query = select(webhook_endpoints).order_by(webhook_endpoints.c.id)
        if enabled_only:
            query = query.where(webhook_endpoints.c.enabled.is_(True))
        return [Endpoint(**r._mapping) for r in await self.conn.execute(query)]

    async def update_endpoint(self, endpoint_id: str, **values: Any) -> None:
        await self.conn.execute(
            update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id).values(**values)
        )

    async def events(
        self, *, type_: str | None, limit: int, starting_after: str | None
    ) -> tuple[list[dict[str, Any]], bool]:
        query = select(outbox_events)
        conditions = []
        if type_ is not None:
            conditions.append(outbox_events.c.type == type_)
        if starting_after is not None:
            conditions.append(outbox_events.c.id < starting_after)
        if conditions:
            query = query.where(and_(*conditions))
        rows = (
            await self.conn.execute(query.order_by(outbox_events.c.id.desc()).limit(limit + 1))
        ).all()
        return [dict(r._mapping) for r in rows[:limit]], len(rows) > limit

    async def events_by_id(self, event_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """The events of a claimed batch, in one statement."""
        if not event_ids:
            return {}
        rows = await self.conn.execute(
            select(outbox_events).where(outbox_events.c.id.in_(sorted(event_ids)))
        )
        return {r.id: dict(r._mapping) for r in rows}

    async def endpoints_by_id(self, endpoint_ids: Collection[str]) -> dict[str, Endpoint]:
        """The endpoints of a claimed batch, in one statement."""
        if not endpoint_ids:
            return {}
        rows = await self.conn.execute(
            select(webhook_endpoints).where(webhook_endpoints.c.id.in_(sorted(endpoint_ids)))
        )
        return {r.id: Endpoint(**r._mapping) for r in rows}

    async def event(self, event_id: str) -> dict[str, Any] | None:
        row = (
            await self.conn.execute(select(outbox_events).where(outbox_events.c.id == event_id))
        ).first()
        return None if row is None else dict(row._mapping)


def _delivery(m: Any) -> Delivery:
    return Delivery(
        id=m["id"],
        event_id=m["event_id"],
        endpoint_id=m["endpoint_id"],
        status=m["status"],
        attempts=m["attempts"],
        next_attempt_at=m["next_attempt_at"],
        last_error=m["last_error"],
        delivered_at=m["delivered_at"],
        created_at=m["created_at"],
    )


def _endpoint_values(e: Endpoint) -> dict[str, Any]:
    return {f: getattr(e, f) for f in Endpoint.__dataclass_fields__}
