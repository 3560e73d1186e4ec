"""API keys: created once and shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from tuition.clock import Clock
from tuition.domain.errors import AuthenticationFailed, NotFound, ValidationFailed
from tuition.domain.ids import new_id
from tuition.domain.modes import Mode, mode_of_key
from tuition.store.access import ApiKeyRecord
from tuition.store.uow import UnitOfWork


@dataclass(frozen=True, slots=True)
class CreatedKey:
    record: ApiKeyRecord
    secret: str


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_key(uow: UnitOfWork, *, name: str, mode: Mode, clock: Clock) -> CreatedKey:
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
    )
    async with uow:
        await uow.api_keys.add(record, hash_key(secret))
        await uow.commit()
    return CreatedKey(record, secret)


async def list_keys(uow: UnitOfWork) -> list[ApiKeyRecord]:
    async with uow:
        return await uow.api_keys.list()


async def revoke_key(uow: UnitOfWork, key_id: str, *, clock: Clock) -> None:
    async with uow:
        if not await uow.api_keys.revoke(key_id, clock.now()):
            raise NotFound(f"no active API key {key_id!r}", param="key_id")
        await uow.commit()


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
