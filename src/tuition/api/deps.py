"""What a request handler can ask for: the composed services of app.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tuition.container import ApiKeyCache, Container, Modes
from tuition.domain.api_scopes import allows, needed_for
from tuition.domain.errors import AuthenticationFailed, PermissionDenied
from tuition.domain.modes import Mode
from tuition.services.api_keys import authenticate, key_mode
from tuition.services.audit import Actor, AuditedUnitOfWork
from tuition.store.access import ApiKeyRecord
from tuition.store.uow import UnitOfWork

__all__ = [
    "ActorDep",
    "ApiKeyCache",
    "Container",
    "audited",
    "current_api_key",
    "get_container",
    "live_container",
]


def get_container(request: Request) -> Container:
    """The container of the request's mode: the API key's, the console's chosen mode,
    the mode a public page's object lives in (``request.state.mode``), else live."""
    modes: Modes = request.app.state.modes
    mode: Mode = getattr(request.state, "mode", "live")
    return modes[mode]


def live_container(request: Request) -> Container:
    """The live container whatever the request's mode: operators and console sessions
    live there."""
    modes: Modes = request.app.state.modes
    return modes.live


async def _container(request: Request) -> Container:
    # An authenticated route's container is its key's, whichever dependency FastAPI
    # resolves first. (A plain ``def`` dependency would run in a worker thread.)
    if "authorization" in request.headers and getattr(request.state, "mode", None) is None:
        await current_api_key(request)
    return get_container(request)


async def current_api_key(request: Request) -> ApiKeyRecord:
    """The caller's API key from ``Authorization: Bearer``; cached on the request.

    The key is looked up in the store of the mode its prefix names, and the request
    then sees that mode's store only."""
    cached: ApiKeyRecord | None = getattr(request.state, "api_key", None)
    if cached is not None:
        check_scopes(request, cached)
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
    secret = secret.strip()
    modes: Modes = request.app.state.modes
    container = modes[key_mode(secret)]
    record = container.api_keys.get(secret)
    if record is None:
        record = await authenticate(container.uow(), secret)
        container.api_keys.put(secret, record)
    request.state.api_key = record
    request.state.mode = record.mode
    check_scopes(request, record)  # a restricted key: only what its scopes allow
    return record


def check_scopes(request: Request, record: ApiKeyRecord) -> None:
    """Refuse (403) what a restricted key's scopes do not cover, by the matched route."""
    if record.scopes is None:
        return
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    if not allows(record.scopes, request.method, path):
        raise PermissionDenied(
            f"API key {record.prefix}… is restricted to {', '.join(record.scopes)}; "
            f"{request.method} {path} needs {needed_for(request.method, path)}",
            code="api_key_scope",
        )


ContainerDep = Annotated[Container, Depends(_container)]
ApiKeyDep = Annotated[ApiKeyRecord, Depends(current_api_key)]


async def api_actor(request: Request) -> Actor:
    """Who makes an API change, for the audit trail: the caller's key, its IP, the request id."""
    record = await current_api_key(request)
    return Actor.api_key(record.id, request.client.host if request.client else None)


ActorDep = Annotated[Actor, Depends(api_actor)]


class _SubjectAsGiven(AuditedUnitOfWork):
    """An audited unit of work whose record keeps the subject it was given, whatever the
    use case names for an Idempotency-Key replay (a subscription names its first order)."""

    def outcome(self, object_id: str) -> None:
        UnitOfWork.outcome(self, object_id)


def audited(
    container: Container,
    actor: Actor,
    action: str,
    subject: str,
    *,
    subject_as_given: bool = False,
    **details: object,
) -> AuditedUnitOfWork:
    """A unit of work for an API change: the use case's transaction that makes the change
    also writes the audit record naming the caller's key (services/audit.py), as the
    console's do for its operators. The record's subject is what the use case names as
    its outcome (the refund it made), else ``subject``."""
    kind = _SubjectAsGiven if subject_as_given else AuditedUnitOfWork
    return kind(
        container.engine,
        actor=actor,
        action=action,
        subject=subject,
        clock=container.clock,
        details=details or None,
    )
