"""The worker on both engines: webhooks delivered once each, backoff, recovery, expiry."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import random
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.integration.shop import order_body, post
from tuition.clock import FrozenClock
from tuition.services.webhook_targets import IPAddress
from tuition.simulator.app import Simulator
from tuition.store.tables import webhook_deliveries
from tuition.store.uow import UnitOfWork
from tuition.webhooks import WebhookVerificationError, verify
from tuition.worker.runner import Worker, WorkerConfig


class Receiver:
    """A platform's webhook endpoint: verifies, records, fails on demand, spots overlap."""

    def __init__(self, secret: str = "", fail_first: int = 0, delay: float = 0.0) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.delay = delay
        self.received: list[str] = []
        self.in_flight: set[str] = set()
        self.overlaps: list[str] = []
        self.rejected: list[str] = []

    def transport(self) -> httpx.MockTransport:
        async def handle(request: httpx.Request) -> httpx.Response:
            body = await request.aread()
            try:
                event = verify(
                    body,
                    request.headers.get("Tuition-Signature"),
                    self.secret,
                    now=int(json.loads(body)["created"]) + 1,
                )
            except WebhookVerificationError as exc:
                self.rejected.append(str(exc))
                return httpx.Response(400)
            event_id = event["id"]
            if event_id in self.in_flight:
                self.overlaps.append(event_id)
            self.in_flight.add(event_id)
            try:
                if self.delay:
                    await asyncio.sleep(self.delay)
                if self.fail_first > 0:
                    self.fail_first -= 1
                    return httpx.Response(500, text="try later")
                self.received.append(event_id)
                return httpx.Response(200, text="ok")
            finally:
                self.in_flight.discard(event_id)

        return httpx.MockTransport(handle)


async def _endpoint(client: httpx.AsyncClient, events: list[str] | None = None) -> dict[str, Any]:
    return await post(
        client,
        "/v1/webhook_endpoints",
        {"url": "https://platform.example/hooks", "events": events or ["*"]},
    )


async def _public_dns(_host: str, _port: int) -> list[IPAddress]:
    """platform.example as if it resolved to a public address (no DNS in tests)."""
    return [ipaddress.ip_address("93.184.215.14")]


def _worker(app: FastAPI, receiver: Receiver, **config: Any) -> Worker:
    return Worker(
        app.state.modes.live,
        WorkerConfig(**{"sweep_interval": timedelta(seconds=0), **config}),
        transport=receiver.transport(),
        rng=random.Random(7),
        resolver=_public_dns,
    )


async def _emit(uow: UnitOfWork, clock: FrozenClock, count: int) -> list[str]:
    ids = []
    async with uow:
        for n in range(count):
            ids.append(await uow.events.emit("order.paid", f"ord_{n}", {"n": n}, at=clock.now()))
        await uow.commit()
    return ids


async def test_three_workers_deliver_every_event_once_and_never_concurrently(
    app: FastAPI, client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock, backend: str
) -> None:
    endpoint = await _endpoint(client)
    receiver = Receiver(endpoint["secret"], delay=0.001)
    total = 1000 if backend == "postgresql" else 300
    ids = await _emit(uow, clock, total)
    workers = [_worker(app, receiver, batch=50) for _ in range(3)]

    async def drive(worker: Worker) -> None:
        for _ in range(200):
            stats = await worker.run_once()
            if not stats.busy and len(receiver.received) >= total:
                return

    await asyncio.gather(*(drive(w) for w in workers))
    for w in workers:
        await w.close()
    assert sorted(receiver.received) == sorted(ids)
    assert receiver.overlaps == []
    assert receiver.rejected == []
    async with uow:
        counts = await uow.work.delivery_counts()
    assert counts == {"succeeded": total}


async def test_a_failing_receiver_is_retried_with_exponential_backoff(
    app: FastAPI, client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    endpoint = await _endpoint(client, ["order.paid"])
    receiver = Receiver(endpoint["secret"], fail_first=3)
    [event_id] = await _emit(uow, clock, 1)
    worker = _worker(app, receiver)
    start = clock.now()
    for _ in range(4):
        await worker.run_once()
        async with uow:
            next_at = (
                await uow.conn.execute(select(webhook_deliveries.c.next_attempt_at))
            ).scalar_one()
        clock.set(max(clock.now(), next_at))
    await worker.close()
    assert receiver.received == [event_id]
    history = (await client.get(f"/v1/events/{event_id}")).json()["deliveries"][0]
    assert history["status"] == "succeeded"
    times = [(httpx_time(a["attempted_at"]) - start).total_seconds() for a in history["history"]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # 30 s, 60 s, 120 s, each within the ±20 % jitter.
    for gap, base in zip(gaps, (30, 60, 120), strict=True):
        assert base * 0.8 <= gap <= base * 1.2, gaps
    assert [a["status_code"] for a in history["history"]] == [500, 500, 500, 200]
    assert history["history"][0]["response_excerpt"] == "try later"


def httpx_time(value: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_deliveries_give_up_after_three_days(
    app: FastAPI, client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    endpoint = await _endpoint(client)
    receiver = Receiver(endpoint["secret"], fail_first=10_000)
    [event_id] = await _emit(uow, clock, 1)
    worker = _worker(app, receiver)
    for _ in range(40):
        await worker.run_once()
        clock.advance(timedelta(hours=7))
    await worker.close()
    delivery = (await client.get(f"/v1/events/{event_id}")).json()["deliveries"][0]
    assert delivery["status"] == "failed"
    assert 10 <= delivery["attempts"] <= 25
    resent = await post(client, f"/v1/events/{event_id}/resend", {})
    assert resent["queued"] == 1


async def test_a_wrong_secret_fails_the_receivers_verification(
    app: FastAPI, client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    await _endpoint(client)
    receiver = Receiver("whsec_not_the_secret")
    await _emit(uow, clock, 1)
    worker = _worker(app, receiver)
    await worker.run_once()
    await worker.close()
    assert receiver.received == []
    assert receiver.rejected == ["signature does not match: wrong secret or altered body"]


async def test_only_subscribed_and_enabled_endpoints_get_events(
    app: FastAPI, client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    wanted = await _endpoint(client, ["order.paid"])
    await _endpoint(client, ["refund.succeeded"])
    off = await _endpoint(client, ["*"])
    disabled = await client.patch(f"/v1/webhook_endpoints/{off['id']}", json={"enabled": False})
    assert disabled.json()["enabled"] is False
    receiver = Receiver(wanted["secret"])
    [event_id] = await _emit(uow, clock, 1)
    worker = _worker(app, receiver)
    await worker.run_once()
    await worker.close()
    deliveries = (await client.get(f"/v1/events/{event_id}")).json()["deliveries"]
    assert [d["endpoint_id"] for d in deliveries] == [wanted["id"]]
    listed = (await client.get("/v1/webhook_endpoints")).json()["data"]
    assert all(e["secret"] is None for e in listed)


async def test_bad_endpoint_input_is_refused(client: httpx.AsyncClient) -> None:
    for body, param in (
        ({"url": "ftp://x", "events": ["*"]}, "url"),
        ({"url": "https://x.example", "events": ["order.exploded"]}, "events"),
        ({"url": "https://x.example", "events": []}, "events"),
    ):
        response = await client.post("/v1/webhook_endpoints", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["param"] == param


async def test_a_dropped_notification_ends_paid_through_the_query_job(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
) -> None:
    gateway.drop_next_notifications(1)
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "qr"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    worker = _worker(app, Receiver())
    await worker.run_once()
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "pending_payment"
    clock.advance(timedelta(seconds=61))
    await worker.run_once()
    await worker.close()
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"


async def test_an_order_paid_just_as_it_expires_ends_paid(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
) -> None:
    gateway.drop_next_notifications(1)
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    clock.advance(timedelta(minutes=14, seconds=59))
    await gateway.pay(payment["id"])
    await gateway.drain()
    clock.advance(timedelta(seconds=2))  # past expiry; the notification was lost
    worker = _worker(app, Receiver(), recover_after=timedelta(hours=1))
    await worker.run_once()
    await worker.close()
    final = (await client.get(f"/v1/orders/{order['id']}")).json()
    assert final["status"] == "paid"
    assert (await client.get(f"/v1/payments/{payment['id']}")).json()["amount_refunded"] == 0


async def test_an_unpaid_order_is_closed_on_the_channel_then_expired(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
) -> None:
    await post(client, "/v1/coupons", {"code": "ONE", "percent_off": "0.1", "max_redemptions": 1})
    order = await post(client, "/v1/orders", order_body(shop, "c1", coupon_code="ONE"))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    clock.advance(timedelta(minutes=15))
    worker = _worker(app, Receiver(), recover_after=timedelta(hours=1))
    await worker.run_once()
    await worker.close()
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "expired"
    assert (await client.get(f"/v1/payments/{payment['id']}")).json()["status"] == "closed"
    assert gateway.payment(payment["id"]).status == "CLOSED"
    assert (await client.get("/v1/coupons/ONE")).json()["times_redeemed"] == 0
    with pytest.raises(Exception, match=r"TRADE_STATUS_ERROR|not awaiting"):
        await gateway.pay(payment["id"])


async def test_a_gateway_that_cannot_close_keeps_the_order_open_and_retries(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    clock.advance(timedelta(minutes=15))
    gateway.fail_next("close", kind="timeout")
    worker = _worker(app, Receiver(), recover_after=timedelta(hours=1))
    await worker.run_once()
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "pending_payment"
    async with uow:
        job = await uow.work.job("expire_order", order["id"])
    assert job is not None
    assert job["status"] == "queued"
    assert "timeout" in (job["last_error"] or "").lower()
    clock.set(job["run_at"])
    await worker.run_once()
    await worker.close()
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "expired"
