"""Repositories for API keys and idempotency records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.store.db import insert_ignoring_conflicts
from tuition.store.tables import api_keys, idempotency_keys


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str
    name: str
    mode: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


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
            )
        )

    async def by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        row = (
            await self.conn.execute(select(*_KEY_COLUMNS).where(api_keys.c.key_hash == key_hash))
        ).first()
        return ApiKeyRecord(**row._mapping) if row else None

    async def list(self) -> list[ApiKeyRecord]:
        rows = await self.conn.execute(select(*_KEY_COLUMNS).order_by(api_keys.c.id))
        return [ApiKeyRecord(**row._mapping) for row in rows]

    async def revoke(self, key_id: str, at: datetime) -> bool:
        """Revoke once; False if no such key or already revoked."""
        result = await self.conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return result.rowcount == 1


_KEY_COLUMNS = (
    api_keys.c.id,
    api_keys.c.name,
    api_keys.c.mode,
    api_keys.c.prefix,
    api_keys.c.created_at,
    api_keys.c.revoked_at,
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
    ) -> int | None:
        """Insert a running record; None when the key already exists (UNIQUE decides).

        One statement (``ON CONFLICT DO NOTHING``, no savepoint): atomic on its own, so
        it may run in an autocommit unit of work.
        """
        result = await self.conn.execute(
            insert_ignoring_conflicts(self.conn, idempotency_keys, idempotency_keys.c.id),
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
            },
        )
        record_id = result.scalar_one_or_none()
        return None if record_id is None else int(record_id)

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
    ) -> bool:
        """Reclaim a record whose holder died (lease passed) or that expired; CAS on state."""
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
            )
        )
        return result.rowcount == 1

    async def finish(self, record_id: int, *, status: int, body: str) -> None:
        await self.conn.execute(
            _FINISH,
            {
                "where_id": record_id,
                "state": "done",
                "response_status": status,
                "response_body": body,
            },
        )

    async def release(self, record_id: int) -> None:
        """Forget a running record whose request failed on our side, so a retry runs."""
        await self.conn.execute(
            delete(idempotency_keys).where(
                idempotency_keys.c.id == record_id, idempotency_keys.c.state == "running"
            )
        )

    async def purge_expired(self, now: datetime) -> int:
        result = await self.conn.execute(
            delete(idempotency_keys).where(idempotency_keys.c.expires_at <= now)
        )
        return result.rowcount


_FINISH = update(idempotency_keys).where(idempotency_keys.c.id == bindparam("where_id"))
