"""What a request handler can ask for: the composed services of app.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from tuition.channels.registry import ChannelRegistry
from tuition.clock import Clock
from tuition.config import Settings
from tuition.domain.errors import AuthenticationFailed
from tuition.services.api_keys import authenticate
from tuition.store.access import ApiKeyRecord
from tuition.store.uow import UnitOfWork


@dataclass(slots=True)
class Container:
    settings: Settings
    engine: AsyncEngine
    clock: Clock
    registry: ChannelRegistry

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.engine)


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


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
    record = await authenticate(get_container(request).uow(), secret.strip())
    request.state.api_key = record
    return record


ContainerDep = Annotated[Container, Depends(get_container)]
ApiKeyDep = Annotated[ApiKeyRecord, Depends(current_api_key)]
