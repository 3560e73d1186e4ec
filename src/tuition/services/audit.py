"""The audit trail: who changed what, from where, written in the change's transaction.

:func:`record` adds a record on the change's own connection, so the record and the
change commit or roll back together; :func:`seal` chains what was added (after commit,
by one sealer at a time, like the ledger); :func:`verify` checks the chain without
writing. An edit to a sealed record, a removed record or a cut tail fails it.

Who: ``operator`` (their email), ``api_key`` (its id) or ``cli`` (the system user).
Before/after are kept for settings and roles.
"""

from __future__ import annotations

import getpass
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tuition.clock import Clock
from tuition.domain.audit import AuditEvent, canonical, verify_audit_chain
from tuition.domain.ids import new_id
from tuition.store.audit import AuditFilter, AuditRepository
from tuition.store.uow import UnitOfWork


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change, and from where."""

    kind: str  # operator, api_key, cli
    name: str
    ip: str | None = None
    request_id: str | None = None

    @classmethod
    def operator(cls, email: str, ip: str | None) -> Actor:
        return cls("operator", email, ip, _request_id())

    @classmethod
    def api_key(cls, key_id: str, ip: str | None) -> Actor:
        return cls("api_key", key_id, ip, _request_id())

    @classmethod
    def cli(cls) -> Actor:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        return cls("cli", user)


SYSTEM = Actor("system", "tuition")  # a change made by code (the demo, a test) on nobody's behalf


def _request_id() -> str | None:
    found = structlog.contextvars.get_contextvars().get("request_id")
    return str(found) if found else None


async def record(
    conn: AsyncConnection,
    actor: Actor,
    action: str,
    subject: str,
    *,
    clock: Clock,
    before: object = None,
    after: object = None,
) -> AuditEvent:
    """Add a record on ``conn``, inside the caller's transaction."""
    event = AuditEvent(
        id=new_id("aud"),
        occurred_at=clock.now(),
        actor_kind=actor.kind,
        actor=actor.name,
        action=action,
        subject=subject,
        before=canonical(before),
        after=canonical(after),
        ip=actor.ip,
        request_id=actor.request_id,
    )
    await AuditRepository(conn).add(event)
    return event


async def seal(uow: UnitOfWork) -> int:
    total = 0
    while True:
        async with uow:
            count = await AuditRepository(uow.conn).seal()
            await uow.commit()
        total += count
        if count == 0:
            return total


@dataclass(frozen=True, slots=True)
class AuditReport:
    records: int
    unsealed: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify(uow: UnitOfWork) -> AuditReport:
    async with uow:
        repo = AuditRepository(uow.conn)
        sealed = await repo.sealed()
        unsealed = await repo.unsealed_count()
        index, head = await repo.head()
    problems = verify_audit_chain(sealed, head_hash=head, head_index=index)
    return AuditReport(len(sealed), unsealed, problems)


async def page(
    uow: UnitOfWork, where: AuditFilter, *, limit: int, offset: int
) -> tuple[list[AuditEvent], int]:
    async with uow:
        return await AuditRepository(uow.conn).page(where, limit=limit, offset=offset)


async def stream(uow: UnitOfWork, where: AuditFilter) -> AsyncIterator[AuditEvent]:
    async with uow:
        async for event in AuditRepository(uow.conn).stream(where):
            yield event


class AuditedUnitOfWork(UnitOfWork):
    """A unit of work for a service that takes one: its first committed transaction (the
    one that makes the change) also writes the audit record, on the same connection, so
    the two commit or roll back together. The record names what the service passed to
    :meth:`outcome` (the refund it created, say), else ``subject``."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        actor: Actor,
        action: str,
        subject: str,
        clock: Clock,
        details: object = None,
    ) -> None:
        super().__init__(engine)
        self._audit = (actor, action, subject, clock, details)
        self._named: str | None = None
        self.recorded = False

    def outcome(self, object_id: str) -> None:
        self._named = object_id
        super().outcome(object_id)

    async def commit(self) -> None:
        writing = not self.recorded
        if writing:
            actor, action, subject, clock, details = self._audit
            after = {"of": subject, **(details if isinstance(details, dict) else {})}
            await record(self.conn, actor, action, self._named or subject, clock=clock, after=after)
        await super().commit()
        if writing:
            self.recorded = True
