"""Repositories for API keys and idempotency records."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import ColumnElement, bindparam, delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import Update

from tuition.store.direct import Direct
from tuition.store.staged import Shape, StagedWrites
from tuition.store.tables import api_keys, idempotency_keys


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str
    name: str
    mode: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    scopes: tuple[str, ...] | None = None  # None: a full key (domain/api_scopes.py)


def _key(m: Any) -> ApiKeyRecord:
    values = dict(m)
    text = values.pop("scopes")
    return ApiKeyRecord(**values, scopes=tuple(text.split(",")) if text else None)


class ApiKeyRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, record: ApiKeyRecord, key_hash: str) -> None:
        await self.conn.execute(
            insert(api_keys).values(
                id=record.id,
                name=record.name,
                mode=record.mode,
                prefix=record.prefix,
                key_hash=key_hash,
                created_at=record.created_at,
                revoked_at=record.revoked_at,
                scopes=",".join(record.scopes) if record.scopes else None,
            )
        )

    async def by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        row = (
            await self.conn.execute(select(*_KEY_COLUMNS).where(api_keys.c.key_hash == key_hash))
        ).first()
        return _key(row._mapping) if row else None

    async def list(self) -> list[ApiKeyRecord]:
        rows = await self.conn.execute(select(*_KEY_COLUMNS).order_by(api_keys.c.id))
        return [_key(row._mapping) for row in rows]

    async def revoke(self, key_id: str, at: datetime) -> bool:
        """Revoke once; False if no such key or already revoked. The caches watching
        this engine (:func:`watch_key_changes`) forget every key at once."""
        result = await self.conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        for forget in _key_watchers.get(self.conn.sync_engine, ()):
            forget()
        return result.rowcount == 1


# Who forgets cached keys when a key changes, by engine: the API's key cache
# (container.py). The only statement that changes a key is ``revoke`` above.
_key_watchers: WeakKeyDictionary[Engine, list[Callable[[], None]]] = WeakKeyDictionary()


def watch_key_changes(engine: AsyncEngine, forget: Callable[[], None]) -> None:
    """Call ``forget`` whenever a key is revoked through ``engine``."""
    _key_watchers.setdefault(engine.sync_engine, []).append(forget)


_KEY_COLUMNS = (
    api_keys.c.id,
    api_keys.c.name,
    api_keys.c.mode,
    api_keys.c.prefix,
    api_keys.c.created_at,
    api_keys.c.revoked_at,
    api_keys.c.scopes,
)


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    id: int
    request_hash: str
    method: str
    path: str
    state: str
    response_status: int | None
    response_body: str | None
    locked_until: datetime
    expires_at: datetime
    outcome_id: str | None = None


@dataclass(slots=True)
class IdempotencyClaim:
    """A key this request holds while its handler runs (see :func:`holding`).

    Every unit of work opened meanwhile in the same task sees it: the first one that
    commits marks the record ``committed`` in its own transaction (fenced by
    ``holder``), with the object named by :meth:`UnitOfWork.outcome`; so the key's
    outcome and the operation's first writes commit together or not at all.
    """

    record_id: int
    holder: str
    outcome_id: str | None = None
    written_outcome: str | None = None
    fenced: bool = False

    @property
    def unwritten(self) -> bool:
        return not self.fenced or self.outcome_id != self.written_outcome


_claim: ContextVar[IdempotencyClaim | None] = ContextVar("idempotency_claim", default=None)


def current_claim() -> IdempotencyClaim | None:
    return _claim.get()


@contextmanager
def holding(claim: IdempotencyClaim) -> Iterator[IdempotencyClaim]:
    """Bind ``claim`` to the units of work this task opens inside the block."""
    token = _claim.set(claim)
    try:
        yield claim
    finally:
        _claim.reset(token)


def new_holder() -> str:
    return secrets.token_hex(16)


class IdempotencyRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def claim(
        self,
        *,
        api_key_id: str,
        key: str,
        request_hash: str,
        method: str,
        path: str,
        now: datetime,
        locked_until: datetime,
        expires_at: datetime,
        holder: str | None = None,
    ) -> int | None:
        """Insert a running record; None when the key already exists (UNIQUE decides).

        One statement (``ON CONFLICT DO NOTHING``, no savepoint): atomic on its own, so
        it may run in an autocommit unit of work.
        """
        row = await _CLAIM.first(
            self.conn,
            {
                "api_key_id": api_key_id,
                "key": key,
                "request_hash": request_hash,
                "method": method,
                "path": path,
                "state": "running",
                "created_at": now,
                "locked_until": locked_until,
                "expires_at": expires_at,
                "holder": holder,
            },
        )
        return None if row is None else int(row["id"])

    async def get(self, api_key_id: str, key: str) -> IdempotencyRecord | None:
        row = (
            await self.conn.execute(
                select(
                    idempotency_keys.c.id,
                    idempotency_keys.c.request_hash,
                    idempotency_keys.c.method,
                    idempotency_keys.c.path,
                    idempotency_keys.c.state,
                    idempotency_keys.c.response_status,
                    idempotency_keys.c.response_body,
                    idempotency_keys.c.locked_until,
                    idempotency_keys.c.expires_at,
                    idempotency_keys.c.outcome_id,
                ).where(idempotency_keys.c.api_key_id == api_key_id, idempotency_keys.c.key == key)
            )
        ).first()
        return IdempotencyRecord(**row._mapping) if row else None

    async def take_over(
        self,
        record_id: int,
        *,
        now: datetime,
        request_hash: str,
        locked_until: datetime,
        expires_at: datetime,
        holder: str | None = None,
    ) -> bool:
        """Reclaim a record whose holder died before its operation committed (lease
        passed) or that expired; CAS on state. A ``committed`` record is never taken
        over before it expires: its operation ran, a retry replays it."""
        result = await self.conn.execute(
            update(idempotency_keys)
            .where(
                idempotency_keys.c.id == record_id,
                (
                    (idempotency_keys.c.expires_at <= now)
                    | (
                        (idempotency_keys.c.state == "running")
                        & (idempotency_keys.c.locked_until <= now)
                    )
                ),
            )
            .values(
                state="running",
                request_hash=request_hash,
                response_status=None,
                response_body=None,
                created_at=now,
                locked_until=locked_until,
                expires_at=expires_at,
                holder=holder,
                outcome_id=None,
            )
        )
        return result.rowcount == 1

    def stage_outcome(self, staged: StagedWrites, claim: IdempotencyClaim) -> None:
        """Inside the operation's transaction: stage marking the key ``committed`` with
        its outcome, a guarded write. It matches no row when ``claim`` no longer holds
        the key (its lease was taken over, or the record expired): then the caller must
        not commit."""
        staged.guard(
            _COMMIT_OUTCOME,
            {
                "where_id": claim.record_id,
                "where_holder": claim.holder,
                "new_outcome": claim.outcome_id,
            },
        )

    async def finish(
        self, record_id: int, *, status: int, body: str, holder: str | None = None
    ) -> bool:
        """Store the answer; False when ``holder`` no longer holds the key."""
        params: dict[str, object] = {
            "where_id": record_id,
            "state": "done",
            "response_status": status,
            "response_body": body,
        }
        if holder is not None:
            params["where_holder"] = holder
        return await (_FINISH if holder is None else _FINISH_HELD).rowcount(self.conn, params) == 1

    async def release(self, record_id: int, *, holder: str | None = None, now: datetime) -> None:
        """After a failure on our side: forget a running record, so a retry runs; end the
        lease of a committed one, so a retry replays its outcome at once."""
        held = (idempotency_keys.c.id == record_id) & _held_by(holder)
        await self.conn.execute(
            delete(idempotency_keys).where(held, idempotency_keys.c.state == "running")
        )
        await self.conn.execute(
            update(idempotency_keys)
            .where(held, idempotency_keys.c.state == "committed")
            .values(locked_until=now)
        )

    async def purge_expired(self, now: datetime) -> int:
        result = await self.conn.execute(
            delete(idempotency_keys).where(idempotency_keys.c.expires_at <= now)
        )
        return result.rowcount


def _held_by(holder: str | None) -> ColumnElement[bool]:
    column = idempotency_keys.c.holder
    return column.is_(None) if holder is None else column == holder


_CLAIM = Direct(
    postgresql.insert(idempotency_keys).on_conflict_do_nothing().returning(idempotency_keys.c.id),
    sqlite=sqlite.insert(idempotency_keys)
    .on_conflict_do_nothing()
    .returning(idempotency_keys.c.id),
)
_FINISH_ANY = update(idempotency_keys).where(idempotency_keys.c.id == bindparam("where_id"))
_FINISH = Direct(_FINISH_ANY)
_FINISH_HELD = Direct(
    _FINISH_ANY.where(
        idempotency_keys.c.holder == bindparam("where_holder"),
        or_(idempotency_keys.c.state == "running", idempotency_keys.c.state == "committed"),
    )
)


def _commit_outcome(prefix: str, _dialect: str) -> Update:
    """Mark a key ``committed`` with its outcome, fenced by its holder token."""
    return (
        update(idempotency_keys)
        .where(
            idempotency_keys.c.id == bindparam(prefix + "where_id"),
            idempotency_keys.c.holder == bindparam(prefix + "where_holder"),
            or_(idempotency_keys.c.state == "running", idempotency_keys.c.state == "committed"),
        )
        .values(state="committed", outcome_id=bindparam(prefix + "new_outcome"))
        .returning(idempotency_keys.c.id)
    )


_COMMIT_OUTCOME = Shape(_commit_outcome, guarded=True)
