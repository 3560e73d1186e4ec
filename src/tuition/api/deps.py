"""What a request handler can ask for: the composed services of app.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Delete, Update, event
from sqlalchemy.ext.asyncio import AsyncEngine

from tuition.channels.registry import ChannelRegistry
from tuition.clock import Clock
from tuition.config import Settings
from tuition.domain.errors import AuthenticationFailed
from tuition.services.api_keys import authenticate, hash_key
from tuition.store.access import ApiKeyRecord
from tuition.store.tables import api_keys
from tuition.store.uow import UnitOfWork

# How long an authenticated API key is trusted without reading it again. A key revoked
# by another process (``tuition keys revoke``, another API worker) is refused by every
# process within this many seconds; one revoked through this process, at once.
API_KEY_CACHE_SECONDS = 5.0
_API_KEY_CACHE_SIZE = 1024


class ApiKeyCache:
    """Recently authenticated keys, by hash, so a request needs no read of ``api_keys``.

    Only successful authentications are kept (an unknown or revoked key is read every
    time), for ``ttl`` seconds of monotonic time. Any UPDATE or DELETE of ``api_keys``
    through the watched engine empties the cache.
    """

    def __init__(
        self,
        ttl: float = API_KEY_CACHE_SECONDS,
        *,
        size: int = _API_KEY_CACHE_SIZE,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._size = size
        self._now = now
        self._entries: dict[str, tuple[float, ApiKeyRecord]] = {}

    def get(self, secret: str) -> ApiKeyRecord | None:
        key = hash_key(secret)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._now():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, secret: str, record: ApiKeyRecord) -> None:
        if self._ttl <= 0:
            return
        if len(self._entries) >= self._size:
            self._entries.pop(next(iter(self._entries)))  # the oldest entry
        self._entries[hash_key(secret)] = (self._now() + self._ttl, record)

    def clear(self) -> None:
        self._entries.clear()

    def watch(self, engine: AsyncEngine) -> None:
        """Forget every key when ``api_keys`` is changed through ``engine``."""

        def after_execute(_conn: Any, statement: Any, *_args: Any) -> None:
            if isinstance(statement, Update | Delete) and statement.table is api_keys:
                self.clear()

        event.listen(engine.sync_engine, "after_execute", after_execute)


@dataclass(slots=True)
class Container:
    settings: Settings
    engine: AsyncEngine
    clock: Clock
    registry: ChannelRegistry
    api_keys: ApiKeyCache = field(default_factory=ApiKeyCache)

    def __post_init__(self) -> None:
        self.api_keys.watch(self.engine)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.engine)


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


async def _container(request: Request) -> Container:
    # FastAPI runs a plain ``def`` dependency in a worker thread; this one needs none.
    return get_container(request)


async def current_api_key(request: Request) -> ApiKeyRecord:
    """The caller's API key from ``Authorization: Bearer``; cached on the request."""
    cached: ApiKeyRecord | None = getattr(request.state, "api_key", None)
    if cached is not None:
        return cached
    header = request.headers.get("authorization")
    if not header:
        raise AuthenticationFailed(
            "no API key given; send it as 'Authorization: Bearer sk_test_…'", code="api_key_missing"
        )
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthenticationFailed(
            "the Authorization header must be 'Bearer <API key>'", code="api_key_missing"
        )
    container = get_container(request)
    secret = secret.strip()
    record = container.api_keys.get(secret)
    if record is None:
        record = await authenticate(container.uow(), secret)
        container.api_keys.put(secret, record)
    request.state.api_key = record
    return record


ContainerDep = Annotated[Container, Depends(_container)]
ApiKeyDep = Annotated[ApiKeyRecord, Depends(current_api_key)]
