"""Webhook endpoints and event delivery to the platform.

Registering, changing and re-keying an endpoint is audited in its transaction (the
record never holds the signing secret)."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from tuition.clock import Clock
from tuition.domain.errors import NotFound, ValidationFailed
from tuition.domain.ids import new_id
from tuition.services import audit, audit_snapshots
from tuition.services.audit import Actor
from tuition.services.webhook_targets import TargetPolicy, check_url
from tuition.store.uow import UnitOfWork
from tuition.store.work import Attempt, Delivery, Endpoint, Outcome
from tuition.webhooks import sign

EVENT_TYPES = frozenset(
    {
        "order.paid",
        "order.expired",
        "order.cancelled",
        "order.updated",
        "payment.succeeded",
        "payment.failed",
        "payment.closed",
        "refund.created",
        "refund.succeeded",
        "refund.failed",
        "invoice.requested",
        "invoice.issued",
        "invoice.rejected",
        "history.entry_hidden",
        "history.entry_unhidden",
        "subscription.created",
        "subscription.renewal_upcoming",
        "subscription.renewal_blocked",
        "subscription.renewed",
        "subscription.payment_failed",
        "subscription.past_due",
        "subscription.canceled",
        "subscription.expired",
        "subscription.resumed",
        "subscription.plan_changed",
        "payment.overpaid",
        "wallet.shortfall",
        "subscription.auto_renew_ended",
        "agreement.signed",
        "agreement.ended",
    }
)
RETRY_FOR = timedelta(days=3)
BASE_DELAY = 30.0
MAX_DELAY = 6 * 3600.0
JITTER = 0.2  # ±20 %, so endpoints that failed together do not retry together
# How much of an endpoint's answer is read and kept: enough to see why it failed, too
# little to make the delivery history a way to read whatever a URL serves.
EXCERPT_CHARS = 200
_READ_AT_MOST = 4 * EXCERPT_CHARS  # bytes; the rest of a large answer is never read
# Of the worker's concurrent requests, the share one endpoint may hold while a batch has
# others too: one that hangs until the timeout leaves the rest of the slots to them.
ENDPOINT_SHARE = 0.5


def backoff(attempts: int, rng: random.Random) -> timedelta:
    """Delay before retry number ``attempts`` (1 after the first failure): 30 s, 60 s, …"""
    delay = min(BASE_DELAY * 2 ** (attempts - 1), MAX_DELAY)
    return timedelta(seconds=delay * (1 + rng.uniform(-JITTER, JITTER)))


def _check_events(events: list[str]) -> list[str]:
    unknown = sorted(set(events) - EVENT_TYPES - {"*"})
    if not events or unknown:
        raise ValidationFailed(
            f"unknown event types {unknown}; choose from {sorted(EVENT_TYPES)} or '*'"
            if unknown
            else "subscribe to at least one event type, or '*'",
            code="event_type_unknown",
            param="events",
        )
    return sorted(set(events))


async def create_endpoint(
    uow: UnitOfWork,
    *,
    url: str,
    events: list[str],
    description: str,
    clock: Clock,
    allowed_hosts: Collection[str] = (),
    actor: Actor = audit.SYSTEM,
) -> Endpoint:
    """Register an endpoint; ``allowed_hosts`` may be non-public (see webhook_targets)."""
    now = clock.now()
    endpoint = Endpoint(
        id=new_id("whe"),
        url=check_url(url, TargetPolicy.allowing(allowed_hosts)),
        description=description,
        events=_check_events(events),
        secret=new_secret(),
        enabled=True,
        created_at=now,
        updated_at=now,
    )
    async with uow:
        await uow.work.add_endpoint(endpoint)
        await audit.record(
            uow.conn,
            actor,
            "webhook_endpoint.created",
            endpoint.id,
            clock=clock,
            after=audit_snapshots.endpoint(endpoint),
        )
        await uow.commit()
    await audit.seal(uow)
    return endpoint


async def update_endpoint(
    uow: UnitOfWork,
    endpoint_id: str,
    *,
    url: str | None = None,
    events: list[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
    clock: Clock,
    allowed_hosts: Collection[str] = (),
    actor: Actor = audit.SYSTEM,
) -> Endpoint:
    values: dict[str, Any] = {"updated_at": clock.now()}
    if url is not None:
        values["url"] = check_url(url, TargetPolicy.allowing(allowed_hosts))
    if events is not None:
        values["events"] = _check_events(events)
    if description is not None:
        values["description"] = description
    if enabled is not None:
        values["enabled"] = enabled
    async with uow:
        old = await uow.work.endpoint(endpoint_id, for_update=True)  # before/after exact
        if old is None:
            raise NotFound(f"no webhook endpoint {endpoint_id!r}", param="endpoint_id")
        await uow.work.update_endpoint(endpoint_id, **values)
        endpoint = await uow.work.endpoint(endpoint_id)
        assert endpoint is not None
        await audit.record(
            uow.conn,
            actor,
            "webhook_endpoint.updated",
            endpoint_id,
            clock=clock,
            before=audit_snapshots.endpoint(old),
            after=audit_snapshots.endpoint(endpoint),
        )
        await uow.commit()
    await audit.seal(uow)
    return endpoint


def new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


async def rotate_secret(
    uow: UnitOfWork, endpoint_id: str, *, clock: Clock, actor: Actor = audit.SYSTEM
) -> Endpoint:
    """Give the endpoint a new signing secret (returned once; the old one stops at
    once: deliveries from now on are signed with the new one). Audited without either."""
    async with uow:
        if await uow.work.endpoint(endpoint_id, for_update=True) is None:
            raise NotFound(f"no webhook endpoint {endpoint_id!r}", param="endpoint_id")
        await uow.work.update_endpoint(endpoint_id, secret=new_secret(), updated_at=clock.now())
        endpoint = await uow.work.endpoint(endpoint_id)
        assert endpoint is not None
        await audit.record(
            uow.conn, actor, "webhook_endpoint.secret_rotated", endpoint_id, clock=clock
        )
        await uow.commit()
    await audit.seal(uow)
    return endpoint


@dataclass(slots=True)
class Deliverer:
    """Sends claimed deliveries; one per worker, holding its HTTP client (whose transport
    is a :class:`~tuition.services.webhook_targets.GuardedTransport`), so connections to
    an endpoint are kept alive and reused from one delivery to the next."""

    client: httpx.AsyncClient
    clock: Clock
    rng: random.Random

    async def deliver_batch(
        self,
        load: UnitOfWork,
        record: UnitOfWork,
        claimed: Sequence[Delivery],
        *,
        concurrency: int,
    ) -> list[str]:
        """Send a claimed batch, at most ``concurrency`` requests at a time (when the batch
        is for several endpoints, at most :data:`ENDPOINT_SHARE` of them to one), and
        record every attempt; returns the new statuses in ``claimed``'s order.

        The batch's events and endpoints are read in one transaction (two statements),
        each event's body is encoded once whatever its number of endpoints, and the
        outcomes are written in one transaction once every request has ended (each is
        bounded by the client's timeout). A crash before that commit leaves the batch
        claimed until its lease passes, then it is sent again: at least once, as before.

        An endpoint that cannot be reached (a connection error or a timeout) holds
        neither the others' requests, which never wait behind more than its share of
        the slots, nor the batch for all of its deliveries: those
        not yet sent are postponed, without an attempt, to when the failed one is
        retried."""
        if not claimed:
            return []
        async with load:
            events = await load.work.events_by_id({d.event_id for d in claimed})
            endpoints = await load.work.endpoints_by_id({d.endpoint_id for d in claimed})
        bodies = {event_id: event_body(event) for event_id, event in events.items()}
        slots = max(1, concurrency)
        gate = asyncio.Semaphore(slots)
        share = slots if len(endpoints) <= 1 else max(1, int(slots * ENDPOINT_SHARE))
        per_endpoint = {e: asyncio.Semaphore(share) for e in endpoints}
        unreachable: dict[str, datetime] = {}  # endpoint id -> when it is tried again
        postponed: list[tuple[int, datetime]] = []

        async def one(delivery: Delivery) -> Outcome | None:
            endpoint = endpoints.get(delivery.endpoint_id)
            body = bodies.get(delivery.event_id)
            if endpoint is None or not endpoint.enabled or body is None:
                now = self.clock.now()
                why = "event not found" if body is None else "endpoint disabled"
                return Outcome(Attempt(delivery.id, now, None, 0, None, why), "failed", now, why)
            async with per_endpoint[endpoint.id], gate:
                if endpoint.id in unreachable:
                    postponed.append((delivery.id, unreachable[endpoint.id]))
                    return None
                outcome, reached = await self._send(delivery, endpoint, delivery.event_id, body)
            if not reached and endpoint.id not in unreachable:
                again = outcome.next_attempt_at
                if outcome.status != "pending":
                    again = outcome.attempt.attempted_at + backoff(1, self.rng)
                unreachable[endpoint.id] = again
            return outcome

        results = await asyncio.gather(*(one(d) for d in claimed))
        outcomes = [o for o in results if o is not None]
        async with record:
            await record.work.record_attempts(outcomes)
            await record.work.postpone_deliveries(postponed)
            await record.commit()
        return ["pending" if o is None else o.status for o in results]

    async def _send(
        self, delivery: Delivery, endpoint: Endpoint, event_id: str, body: bytes
    ) -> tuple[Outcome, bool]:
        """One POST, signed now (the signature's timestamp is the attempt's), and
        whether the endpoint was reached (False: no connection, or no answer in time)."""
        started = time.perf_counter()
        attempted_at = self.clock.now()
        status_code: int | None = None
        excerpt: str | None = None
        error: str | None = None
        reached = True
        try:
            async with self.client.stream(
                "POST",
                endpoint.url,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "Tuition-Signature": sign(
                        endpoint.secret, body, timestamp=int(attempted_at.timestamp())
                    ),
                    "Tuition-Event-Id": event_id,
                    "User-Agent": "Tuition-Webhooks/1",
                },
            ) as response:
                status_code, excerpt = response.status_code, await _excerpt(response)
            if not 200 <= response.status_code < 300:
                error = f"HTTP {response.status_code}"
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            reached = not isinstance(exc, httpx.TransportError)
        latency = int((time.perf_counter() - started) * 1000)
        status, next_at = self._next(delivery, attempted_at, failed=error is not None)
        outcome = Outcome(
            Attempt(delivery.id, attempted_at, status_code, latency, excerpt, error),
            status,
            next_at,
            error,
        )
        return outcome, reached

    def _next(self, delivery: Delivery, now: datetime, *, failed: bool) -> tuple[str, datetime]:
        if not failed:
            return "succeeded", now
        retry_at = now + backoff(delivery.attempts + 1, self.rng)
        if retry_at > delivery.created_at + RETRY_FOR:
            return "failed", now
        return "pending", retry_at


def event_body(event: dict[str, Any]) -> bytes:
    """The bytes every endpoint of ``event`` is sent (and its signature covers)."""
    return json.dumps(
        {
            "id": event["id"],
            "object": "event",
            "type": event["type"],
            "created": int(event["created_at"].timestamp()),
            "data": event["data"],
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


async def _excerpt(response: httpx.Response) -> str:
    """The first :data:`EXCERPT_CHARS` characters of the answer, reading little of it."""
    head = b""
    async for chunk in response.aiter_bytes():
        head += chunk
        if len(head) >= _READ_AT_MOST:
            break
    try:
        text = head[:_READ_AT_MOST].decode(response.charset_encoding or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        text = head[:_READ_AT_MOST].decode("utf-8", "replace")
    return text[:EXCERPT_CHARS]
