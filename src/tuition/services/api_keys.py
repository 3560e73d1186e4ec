"""API keys: created once and shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from tuition.clock import Clock
from tuition.domain.api_scopes import parse_scopes
from tuition.domain.errors import AuthenticationFailed, NotFound, ValidationFailed
from tuition.domain.ids import new_id
from tuition.domain.modes import Mode, mode_of_key
from tuition.services import audit
from tuition.services.audit import Actor
from tuition.store.access import ApiKeyRecord
from tuition.store.uow import UnitOfWork


@dataclass(frozen=True, slots=True)
class CreatedKey:
    record: ApiKeyRecord
    secret: str


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_key(
    uow: UnitOfWork,
    *,
    name: str,
    mode: Mode,
    clock: Clock,
    scopes: Sequence[str] = (),
    actor: Actor = audit.SYSTEM,
) -> CreatedKey:
    """A new key, full or restricted to ``scopes`` (domain/api_scopes.py)."""
    chosen = parse_scopes(scopes)
    if mode not in ("test", "live"):
        raise ValidationFailed(f"mode must be 'test' or 'live', not {mode!r}", param="mode")
    if not name.strip() or len(name) > 200:
        raise ValidationFailed("name must be 1 to 200 characters", param="name")
    secret = f"sk_{mode}_{secrets.token_urlsafe(32)}"
    record = ApiKeyRecord(
        id=new_id("key"),
        name=name.strip(),
        mode=mode,
        prefix=secret[:12],
        created_at=clock.now(),
        revoked_at=None,
        scopes=tuple(s.value for s in chosen) if chosen else None,
    )
    async with uow:
        await uow.api_keys.add(record, hash_key(secret))
        await audit.record(
            uow.conn,
            actor,
            "api_key.created",
            record.id,
            clock=clock,
            after={"name": record.name, "mode": mode, "scopes": list(record.scopes or ["all"])},
        )
        await uow.commit()
    await audit.seal(uow)
    return CreatedKey(record, secret)


async def list_keys(uow: UnitOfWork) -> list[ApiKeyRecord]:
    async with uow:
        return await uow.api_keys.list()


async def revoke_key(
    uow: UnitOfWork, key_id: str, *, clock: Clock, actor: Actor = audit.SYSTEM
) -> None:
    async with uow:
        if not await uow.api_keys.revoke(key_id, clock.now()):
            raise NotFound(f"no active API key {key_id!r}", param="key_id")
        await audit.record(uow.conn, actor, "api_key.revoked", key_id, clock=clock)
        await uow.commit()
    await audit.seal(uow)


def key_mode(secret: str) -> Mode:
    """The mode whose store holds the key ``secret`` (it is in the secret's prefix)."""
    mode = mode_of_key(secret)
    if mode is None:
        raise AuthenticationFailed(
            "the API key is malformed: expected 'Bearer sk_test_…' or 'Bearer sk_live_…'"
        )
    return mode


async def authenticate(uow: UnitOfWork, secret: str) -> ApiKeyRecord:
    """The key ``secret`` from ``uow``'s store: the store of ``key_mode(secret)``."""
    mode = key_mode(secret)
    async with uow:
        record = await uow.api_keys.by_hash(hash_key(secret))
    if record is None or record.mode != mode:
        raise AuthenticationFailed(f"unknown API key {secret[:12]}…")
    if record.revoked_at is not None:
        raise AuthenticationFailed(
            f"API key {record.prefix}… was revoked at {record.revoked_at.isoformat()}",
            code="api_key_revoked",
        )
    return record
