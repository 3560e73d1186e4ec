"""The ``/v1`` route class: authenticate, check the body, then ``Idempotency-Key``.

Every request is authenticated before any of its body is read (an anonymous caller
cannot make us read megabytes), then a JSON body is read and checked once for every
route (size, nesting, text: see json_body.py). Only then does Idempotency-Key apply.

``Idempotency-Key`` for POST routes, enforced by a UNIQUE constraint.

The first request with a key inserts a ``running`` record with one ``INSERT … ON
CONFLICT DO NOTHING`` that commits on its own, before the handler's work; the UNIQUE
(api key, key) constraint makes that insert the single winner. The handler
then runs, and its response (status and body) is stored. A later request with the same
key and the same body gets the stored response without the handler running; with a
different body it gets 422 ``idempotency_key_reused``. A request arriving while the
first is still running waits a little for it, then gets 409 ``idempotency_key_in_use``.
Every answer below 500 that the route gives is stored, refusals included (a 422 naming a
field, a 409), so a key stands for one request and one answer. Answers given before the
key is claimed are not stored, because nothing ran: 401, an invalid key, a body that is
too large, late, malformed or holds invalid text. Responses of 5xx are not stored: the
record is released so a retry runs again. A holder that died leaves a record whose lease
expires, after which the key can be taken over.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from tuition.api import errors
from tuition.api.deps import Container, current_api_key, get_container
from tuition.api.json_body import check_json, is_json
from tuition.domain.errors import (
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    ValidationFailed,
)

HEADER = "idempotency-key"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# The column's length; the fingerprint covers the whole path, this is only for messages.
_STORED_PATH_CHARS = 500
LEASE = timedelta(seconds=60)
WAIT_FOR_RUNNING = 5.0
POLL_INTERVAL = 0.05
REPLAY_HEADER = "idempotent-replayed"


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    """Hash of what makes two requests "the same": JSON compared by value, not bytes."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):  # not JSON (JSON bodies were checked before)
        canonical = body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


class IdempotentRoute(APIRoute):
    """An APIRoute whose POST handlers honour ``Idempotency-Key``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        authenticated = any(d.dependency is current_api_key for d in self.dependencies)

        async def route(request: Request) -> Response:
            if authenticated:
                await current_api_key(request)
            key = request.headers.get(HEADER) if request.method == "POST" else None
            if key is not None and (not 1 <= len(key) <= 255 or not key.isprintable()):
                raise ValidationFailed(
                    "Idempotency-Key must be 1 to 255 printable characters",
                    param="Idempotency-Key",
                )
            if request.method in _BODY_METHODS:
                body = await request.body()  # bounded in size and time by the middleware
                if body and is_json(request.headers.get("content-type")):
                    check_json(body)
            if key is None:
                return await handler(request)
            return await _idempotent(request, key, handler)

        return route


async def _idempotent(
    request: Request, key: str, handler: Callable[[Request], Awaitable[Response]]
) -> Response:
    api_key = await current_api_key(request)
    container = get_container(request)
    clock, ttl = container.clock, timedelta(seconds=container.settings.idempotency_ttl_seconds)
    fingerprint = request_fingerprint(request.method, request.url.path, await request.body())
    deadline = asyncio.get_running_loop().time() + WAIT_FOR_RUNNING

    while True:
        now = clock.now()
        # Every statement here is atomic by itself (INSERT … ON CONFLICT, a CAS), so no
        # transaction wraps them: on PostgreSQL that is one round trip for the claim.
        async with container.uow().autocommit() as uow:
            record_id = await uow.idempotency.claim(
                api_key_id=api_key.id,
                key=key,
                request_hash=fingerprint,
                method=request.method,
                path=request.url.path[:_STORED_PATH_CHARS],
                now=now,
                locked_until=now + LEASE,
                expires_at=now + ttl,
            )
            existing = None if record_id else await uow.idempotency.get(api_key.id, key)
            if existing is not None and await uow.idempotency.take_over(
                existing.id,
                now=now,
                request_hash=fingerprint,
                locked_until=now + LEASE,
                expires_at=now + ttl,
            ):
                record_id, existing = existing.id, None
            await uow.commit()

        if record_id is not None:
            return await _run_and_store(container, record_id, request, handler)
        if existing is None:  # vanished between claim and read: released; try again
            continue
        if existing.request_hash != fingerprint:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {key!r} was already used with a different request "
                f"({existing.method} {existing.path}); use a new key for a new request",
                param="Idempotency-Key",
            )
        if existing.state == "done":
            assert existing.response_status is not None
            return Response(
                content=existing.response_body or b"",
                status_code=existing.response_status,
                media_type="application/json",
                headers={REPLAY_HEADER: "true"},
            )
        if asyncio.get_running_loop().time() >= deadline:
            raise IdempotencyKeyInUse(
                f"a request with Idempotency-Key {key!r} is still being processed; retry later",
                param="Idempotency-Key",
            )
        await asyncio.sleep(POLL_INTERVAL)


async def _run_and_store(
    container: Container,
    record_id: int,
    request: Request,
    handler: Callable[[Request], Awaitable[Response]],
) -> Response:
    try:
        response = await handler(request)
    except BaseException as exc:
        # A refusal (a 4xx, validation of the body included) is an answer and is replayed;
        # a crash is not, so a retry runs again.
        answer = errors.answer_for(request, exc)
        refused = answer is not None and answer.status_code < 500
        async with container.uow().autocommit() as uow:
            if answer is not None and refused:
                await uow.idempotency.finish(
                    record_id, status=answer.status_code, body=bytes(answer.body).decode()
                )
            else:
                await uow.idempotency.release(record_id)
            await uow.commit()
        if answer is not None and refused:
            return answer
        raise
    async with container.uow().autocommit() as uow:
        if response.status_code >= 500:
            await uow.idempotency.release(record_id)
        else:
            await uow.idempotency.finish(
                record_id, status=response.status_code, body=bytes(response.body).decode()
            )
        await uow.commit()
    return response
