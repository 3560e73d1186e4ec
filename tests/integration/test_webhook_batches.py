"""Deliveries sent and recorded a batch at a time, on both engines: a crash between the
sends and the record sends them again, a dead endpoint fails alone, and an event's body
is encoded once for all its endpoints."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.shop import post
from tests.integration.test_worker import Receiver, _emit, _endpoint, _public_dns, _worker
from tuition.clock import FrozenClock
from tuition.services import webhooks
from tuition.store.uow import UnitOfWork
from tuition.store.work import WorkRepository
from tuition.worker.runner import Worker, WorkerConfig


async def _statuses(uow: UnitOfWork, event_id: str) -> list[tuple[str, int, int]]:
    async with uow:
        found = await uow.work.deliveries_of(event_id)
    return [(d.status, d.attempts, len(attempts)) for d, attempts in found]


async def test_a_crash_between_sending_and_recording_sends_the_batch_again(
    app: FastAPI,
    client: httpx.AsyncClient,
    uow: UnitOfWork,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint = await _endpoint(client)
    receiver = Receiver(endpoint["secret"])
    ids = await _emit(uow, clock, 5)
    worker = _worker(app, receiver)

    async def crash(self: WorkRepository, outcomes: Any) -> None:
        raise ConnectionError("the database went away before the outcomes were written")

    with monkeypatch.context() as patch:
        patch.setattr(WorkRepository, "record_attempts", crash)
        with pytest.raises(ConnectionError):
            await worker.run_once()
    assert sorted(receiver.received) == sorted(ids)  # sent, but nothing recorded
    for event_id in ids:
        assert await _statuses(uow, event_id) == [("pending", 0, 0)]

    await worker.run_once()  # still leased: nobody sends them meanwhile
    assert len(receiver.received) == len(ids)

    clock.advance(WorkerConfig().lease + timedelta(seconds=1))
    await worker.run_once()
    await worker.close()
    assert sorted(receiver.received) == sorted(ids + ids)  # at least once: again, not lost
    for event_id in ids:
        assert await _statuses(uow, event_id) == [("succeeded", 1, 1)]


async def test_a_dead_endpoint_fails_alone_and_the_others_are_delivered(
    app: FastAPI, client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    live = await _endpoint(client)
    await post(
        client, "/v1/webhook_endpoints", {"url": "https://dead.example/hooks", "events": ["*"]}
    )
    receiver = Receiver(live["secret"])
    alive = receiver.transport()

    async def route(request: httpx.Request) -> httpx.Response:
        if "dead.example" in (request.url.host, request.headers.get("host")):
            raise httpx.ConnectError("connection refused", request=request)
        return await alive.handle_async_request(request)

    worker = Worker(
        app.state.modes.live,
        WorkerConfig(sweep_interval=timedelta(0)),
        transport=httpx.MockTransport(route),
        rng=random.Random(7),
        resolver=_public_dns,
    )
    ids = await _emit(uow, clock, 3)
    await worker.run_once()
    await worker.close()
    assert sorted(receiver.received) == sorted(ids)
    for event_id in ids:
        async with uow:
            found = await uow.work.deliveries_of(event_id)
        by_url = {d.endpoint_id == live["id"]: (d, attempts) for d, attempts in found}
        ok, ok_attempts = by_url[True]
        dead, dead_attempts = by_url[False]
        assert (ok.status, ok.attempts, ok.delivered_at is not None) == ("succeeded", 1, True)
        assert [a.status_code for a in ok_attempts] == [200]
        # Tried (or, once the endpoint was found unreachable, postponed untried) and
        # backed off: retried later, never failed for good.
        assert (dead.status, dead.delivered_at) == ("pending", None)
        assert dead.attempts == len(dead_attempts) <= 1
        assert dead.next_attempt_at > clock.now()
        for attempt in dead_attempts:
            assert attempt.error is not None
            assert attempt.error.startswith("ConnectError")


async def test_an_events_body_is_encoded_once_for_all_its_endpoints(
    app: FastAPI,
    client: httpx.AsyncClient,
    uow: UnitOfWork,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = await _endpoint(client)
    await _endpoint(client)
    await _endpoint(client)
    bodies: list[bytes] = []
    receiver = Receiver(first["secret"])
    checked = receiver.transport()

    async def capture(request: httpx.Request) -> httpx.Response:
        bodies.append(await request.aread())
        return await checked.handle_async_request(request)

    encode = webhooks.event_body
    encoded: list[str] = []

    def counting(event: dict[str, Any]) -> bytes:
        encoded.append(event["id"])
        return encode(event)

    monkeypatch.setattr(webhooks, "event_body", counting)
    worker = Worker(
        app.state.modes.live,
        WorkerConfig(sweep_interval=timedelta(0)),
        transport=httpx.MockTransport(capture),
        rng=random.Random(7),
        resolver=_public_dns,
    )
    ids = await _emit(uow, clock, 2)
    await worker.run_once()
    await worker.close()
    assert sorted(encoded) == sorted(ids)  # once per event, not once per endpoint
    assert len(bodies) == 6
    assert len(set(bodies)) == 2  # every endpoint got the same bytes
    # Each is signed with its own endpoint's secret: the first endpoint's verifies.
    assert sorted(receiver.received) == sorted(ids)
    assert len(receiver.rejected) == 4


async def test_an_unreachable_endpoints_other_deliveries_wait_without_an_attempt(
    app: FastAPI, client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    live = await _endpoint(client)
    dead_endpoint = await post(
        client, "/v1/webhook_endpoints", {"url": "https://dead.example/hooks", "events": ["*"]}
    )
    receiver = Receiver(live["secret"])
    alive = receiver.transport()
    refused: list[str] = []

    async def route(request: httpx.Request) -> httpx.Response:
        if "dead.example" in (request.url.host, request.headers.get("host")):
            refused.append(request.headers["Tuition-Event-Id"])
            raise httpx.ConnectTimeout("no answer", request=request)
        return await alive.handle_async_request(request)

    worker = Worker(
        app.state.modes.live,
        WorkerConfig(sweep_interval=timedelta(0)),
        transport=httpx.MockTransport(route),
        rng=random.Random(7),
        resolver=_public_dns,
    )
    ids = await _emit(uow, clock, 12)
    await worker.run_once()
    assert sorted(receiver.received) == sorted(ids)  # the live endpoint got everything
    assert 1 <= len(refused) <= WorkerConfig().webhook_concurrency * webhooks.ENDPOINT_SHARE
    dead: list[Any] = []
    for event_id in ids:
        async with uow:
            found = await uow.work.deliveries_of(event_id)
        dead += [(d, a) for d, a in found if d.endpoint_id == dead_endpoint["id"]]
    tried = [d for d, attempts in dead if attempts]
    waiting = [d for d, attempts in dead if not attempts]
    assert len(tried) == len(refused)
    assert len(waiting) == len(ids) - len(refused)
    retry_at = min(d.next_attempt_at for d in tried)
    for d in waiting:  # not counted as attempts, due when the failed one is retried
        assert (d.status, d.attempts, d.next_attempt_at) == ("pending", 0, retry_at)
    assert all((d.status, d.attempts) == ("pending", 1) for d in tried)

    await worker.run_once()  # nothing is due before the retry
    assert len(refused) == len(tried)
    clock.set(max(d.next_attempt_at for d in tried))
    await worker.run_once()
    await worker.close()
    assert len(refused) > len(tried)  # tried again once due


async def test_a_hanging_endpoint_holds_only_its_share_of_the_requests(
    app: FastAPI, client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    live = await _endpoint(client)
    await post(
        client, "/v1/webhook_endpoints", {"url": "https://dead.example/hooks", "events": ["*"]}
    )
    receiver = Receiver(live["secret"])
    alive = receiver.transport()
    ids = await _emit(uow, clock, 6)
    all_live = asyncio.Event()
    released_by_the_others: list[bool] = []

    async def route(request: httpx.Request) -> httpx.Response:
        if "dead.example" in (request.url.host, request.headers.get("host")):
            # Hangs until every live delivery has arrived: possible only if the others
            # got request slots while this one held its own.
            try:
                await asyncio.wait_for(all_live.wait(), 10)
                released_by_the_others.append(True)
            except TimeoutError:
                released_by_the_others.append(False)
            raise httpx.ReadTimeout("no answer", request=request)
        response = await alive.handle_async_request(request)
        if len(receiver.received) == len(ids):
            all_live.set()
        return response

    worker = Worker(
        app.state.modes.live,
        WorkerConfig(sweep_interval=timedelta(0), webhook_concurrency=2),
        transport=httpx.MockTransport(route),
        rng=random.Random(7),
        resolver=_public_dns,
    )
    await worker.run_once()
    await worker.close()
    assert sorted(receiver.received) == sorted(ids)
    assert released_by_the_others == [True]  # one hung request, the rest postponed
