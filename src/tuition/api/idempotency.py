"""The ``/v1`` route class: authenticate, check the body, then ``Idempotency-Key``.

Every request is authenticated before any of its body is read (an anonymous caller
cannot make us read megabytes), then a JSON body is read and checked once for every
route (size, nesting, text: see json_body.py). Only then does Idempotency-Key apply.

``Idempotency-Key`` for POST routes, enforced by a UNIQUE constraint.

The first request with a key inserts a ``running`` record with one ``INSERT … ON
CONFLICT DO NOTHING`` that commits on its own, before the handler's work; the UNIQUE
(api key, key) constraint makes that insert the single winner, and a random ``holder``
token names this run. While the handler runs, the claim is bound to every unit of work
it opens (store/access.py ``holding``): the first one that commits writes, in its own
transaction, ``state = 'committed'`` and the object the use case named
(``uow.outcome(id)``), fenced by the holder token. So the operation's first writes and
the key's outcome commit together or not at all. Then the response (status and body)
is stored (``done``).

A later request with the same key and the same body gets the stored response without
the handler running; with a different body it gets 422 ``idempotency_key_reused``. A
request arriving while the first is still running waits a little for it, then gets 409
``idempotency_key_in_use``. Every answer below 500 that the route gives is stored,
refusals included (a 422 naming a field, a 409), so a key stands for one request and
one answer. Answers given before the key is claimed are not stored, because nothing
ran: 401, an invalid key, a body that is too large, late, malformed or holds invalid
text.

After a failure on our side (a 5xx, a crash, a lost database connection) what the
retry gets depends on what committed:

- nothing committed (the record is still ``running``): the record is released, or its
  lease expires if even that failed, and the retry runs the operation again against a
  database in which the first run left nothing;
- the operation committed but its answer was lost (``committed``): the retry never runs
  it again; it gets the route's rendering of the object the operation named, as it is
  now (header ``Idempotent-Replayed: true``), or 409 ``idempotency_answer_lost`` on a
  route that cannot render one;
- a run whose lease was taken over cannot commit any more (the holder token no longer
  matches): its commit raises 409 ``idempotency_key_in_use`` and writes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from tuition.api import errors
from tuition.api.deps import Container, current_api_key, get_container
from tuition.api.json_body import check_json, is_json
from tuition.domain.errors import (
    Conflict,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    ValidationFailed,
)
from tuition.store.access import IdempotencyClaim, IdempotencyRecord, holding, new_holder

HEADER = "idempotency-key"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# The column's length; the fingerprint covers the whole path, this is only for messages.
_STORED_PATH_CHARS = 500
LEASE = timedelta(seconds=60)
WAIT_FOR_RUNNING = 5.0
POLL_INTERVAL = 0.05
REPLAY_HEADER = "idempotent-replayed"

_log = logging.getLogger(__name__)

# How a route answers a retry whose operation committed but whose answer was lost:
# (container, request, the outcome id the use case named) -> the response model, or
# None when it cannot tell.
Replay = Callable[[Container, Request, str | None], Awaitable[Any]]
_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])
_REPLAY_ATTRIBUTE = "idempotent_replay"


def replayed_by(render: Replay) -> Callable[[_Endpoint], _Endpoint]:
    """Mark a POST endpoint with how to re-render its outcome for a retry (see above);
    put it below the route decorator."""

    def mark(endpoint: _Endpoint) -> _Endpoint:
        setattr(endpoint, _REPLAY_ATTRIBUTE, render)
        return endpoint

    return mark


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
        replay = _Rerender(getattr(self.endpoint, _REPLAY_ATTRIBUTE, None), self.status_code)

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
            return await _idempotent(request, key, handler, replay)

        return route


class _Rerender:
    def __init__(self, render: Replay | None, status_code: int | None) -> None:
        self.render, self.status_code = render, status_code or 200

    async def __call__(self, request: Request, key: str, record: IdempotencyRecord) -> Response:
        model = None
        if self.render is not None:
            model = await self.render(get_container(request), request, record.outcome_id)
        if model is None:
            raise Conflict(
                f"the request with Idempotency-Key {key!r} was applied, but its answer was "
                "lost; read the resource it changed",
                code="idempotency_answer_lost",
                param="Idempotency-Key",
            )
        return JSONResponse(
            jsonable_encoder(model), status_code=self.status_code, headers={REPLAY_HEADER: "true"}
        )


async def _idempotent(
    request: Request,
    key: str,
    handler: Callable[[Request], Awaitable[Response]],
    rerender: _Rerender,
) -> Response:
    api_key = await current_api_key(request)
    container = get_container(request)
    clock, ttl = container.clock, timedelta(seconds=container.settings.idempotency_ttl_seconds)
    fingerprint = request_fingerprint(request.method, request.url.path, await request.body())
    deadline = asyncio.get_running_loop().time() + WAIT_FOR_RUNNING
    holder = new_holder()

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
                holder=holder,
            )
            existing = None if record_id else await uow.idempotency.get(api_key.id, key)
            if existing is not None and await uow.idempotency.take_over(
                existing.id,
                now=now,
                request_hash=fingerprint,
                locked_until=now + LEASE,
                expires_at=now + ttl,
                holder=holder,
            ):
                record_id, existing = existing.id, None
            await uow.commit()

        if record_id is not None:
            claim = IdempotencyClaim(record_id, holder)
            return await _run_and_store(container, claim, request, handler)
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
        waited_out = asyncio.get_running_loop().time() >= deadline
        if existing.state == "committed" and (waited_out or existing.locked_until <= now):
            # Its holder is gone (lease ended) or slow: the outcome is there, answer it.
            return await rerender(request, key, existing)
        if waited_out:
            raise IdempotencyKeyInUse(
                f"a request with Idempotency-Key {key!r} is still being processed; retry later",
                param="Idempotency-Key",
            )
        await asyncio.sleep(POLL_INTERVAL)


async def _run_and_store(
    container: Container,
    claim: IdempotencyClaim,
    request: Request,
    handler: Callable[[Request], Awaitable[Response]],
) -> Response:
    try:
        with holding(claim):
            response = await handler(request)
    except BaseException as exc:
        # A refusal (a 4xx, validation of the body included) is an answer and is replayed;
        # a crash is not: a retry runs again if nothing committed, else re-renders.
        answer = errors.answer_for(request, exc)
        if answer is not None and answer.status_code < 500:
            await _store(container, claim, answer.status_code, bytes(answer.body))
            return answer
        await _release(container, claim)
        raise
    if response.status_code >= 500:
        await _release(container, claim)
        return response
    try:
        await _store(container, claim, response.status_code, bytes(response.body))
    except BaseException:
        await _release(container, claim)  # a committed outcome is re-rendered at once
        raise
    return response


async def _store(container: Container, claim: IdempotencyClaim, status: int, body: bytes) -> None:
    async with container.uow().autocommit() as uow:
        await uow.idempotency.finish(
            claim.record_id, status=status, body=body.decode(), holder=claim.holder
        )
        await uow.commit()


async def _release(container: Container, claim: IdempotencyClaim) -> None:
    """Best effort: when the database is what failed, the lease expires instead."""
    try:
        async with container.uow().autocommit() as uow:
            await uow.idempotency.release(
                claim.record_id, holder=claim.holder, now=container.clock.now()
            )
            await uow.commit()
    except Exception:
        _log.warning("could not release Idempotency-Key record %s", claim.record_id)
