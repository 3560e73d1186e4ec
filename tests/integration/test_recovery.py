"""Recovery that never starves, on both engines (issue 15): every open payment past its
recovery delay is queried on a schedule whatever else is open, refunds are resent behind
any backlog, and attempts the gateway never saw are closed instead of retried for ever.

No timing: the FrozenClock moves, and what is counted is gateway queries and worker runs.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, select

from tests.integration.shop import order_body, post
from tuition.clock import FrozenClock
from tuition.domain.ids import new_id
from tuition.domain.payments import PaymentStatus
from tuition.simulator.app import Simulator
from tuition.store.payments import PaymentRecord, new_attempt
from tuition.store.tables import jobs
from tuition.store.uow import UnitOfWork
from tuition.worker.jobs import recheck_after, reconcile
from tuition.worker.runner import Worker, WorkerConfig

RECOVER_AFTER = timedelta(seconds=60)
STEP = timedelta(seconds=5)  # the worker's sweep interval


def _worker(app: FastAPI, **config: Any) -> Worker:
    return Worker(
        app.state.modes.live,
        WorkerConfig(**{"sweep_interval": timedelta(seconds=0), **config}),
        rng=random.Random(7),
    )


def _count_queries(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The payment ids the worker asks the sandbox gateway about, in order."""
    channel = app.state.modes.live.registry.get("sandbox")
    asked: list[str] = []
    original = channel.query_payment

    async def counted(payment_id: str) -> Any:
        asked.append(payment_id)
        return await original(payment_id)

    monkeypatch.setattr(channel, "query_payment", counted)
    return asked


async def _checkout(client: httpx.AsyncClient, shop: dict[str, str], n: int) -> dict[str, Any]:
    """An order and one attempt the buyer opened (and may or may not pay)."""
    order = await post(client, "/v1/orders", order_body(shop, "c1", customer_id=f"u_{n}"))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "qr"}
    )
    payment["order"] = order
    return payment


async def _paid_but_silent(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, n: int
) -> dict[str, Any]:
    """A payment the buyer paid whose notification the gateway lost."""
    payment = await _checkout(client, shop, n)
    gateway.drop_next_notifications(1)
    await gateway.pay(payment["id"])
    await gateway.drain()
    assert (await client.get(f"/v1/payments/{payment['id']}")).json()["status"] == "pending"
    return payment


def _attempt(order: dict[str, Any], created_at: datetime) -> PaymentRecord:
    """An attempt as create_payment stores it before calling the gateway (``created``)."""
    return new_attempt(
        payment_id=new_id("pay"),
        order_id=order["id"],
        customer_id=order["customer_id"],
        channel="sandbox",
        method="qr",
        app_id="app_sandbox",
        amount=order["total"],
        currency=order["currency"],
        at=created_at,
    )


def _next_check(age: timedelta) -> timedelta:
    """When the schedule next asks about an attempt of ``age`` (1, 2, 4, 8, 13 ... min)."""
    at = RECOVER_AFTER
    while at <= age:
        at += recheck_after(at)
    return at


async def _job_count(uow: UnitOfWork, kind: str) -> int:
    async with uow:
        query = select(func.count()).select_from(jobs).where(jobs.c.kind == kind)
        return int((await uow.conn.execute(query)).scalar_one())


async def test_a_lost_notification_is_recovered_behind_110_abandoned_checkouts(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 15 item 1: the sweep used to queue only the 100 oldest open payments, so the
    buyer who paid behind 110 abandoned checkouts waited for the order's expiry."""
    abandoned = [await _checkout(client, shop, n) for n in range(110)]
    clock.advance(timedelta(seconds=30))
    silent = await _paid_but_silent(client, shop, gateway, 999)
    asked = _count_queries(app, monkeypatch)
    worker = _worker(app)
    clock.advance(timedelta(seconds=31))  # the abandoned ones are due, the silent one not yet
    await worker.run_once()
    await worker.run_once()
    assert sorted(asked) == sorted(p["id"] for p in abandoned)  # each once, still waiting
    asked.clear()
    clock.advance(timedelta(seconds=30))  # the silent one is due; the others look again later
    await worker.run_once()
    await worker.close()
    assert asked == [silent["id"]]
    order = (await client.get(f"/v1/orders/{silent['order']['id']}")).json()
    assert order["status"] == "paid"


async def test_thousands_of_attempts_without_jobs_are_all_swept_and_none_delays_another(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """2,000 open attempts written before jobs came with them (no job row): one sweep
    pages through all of them, and the paid-but-silent one is queried in the next run."""
    holder = (await _checkout(client, shop, 0))["order"]
    async with uow:
        for _ in range(2000):
            await uow.payments.add(_attempt(holder, clock.now()))
        await uow.commit()
    silent = await _paid_but_silent(client, shop, gateway, 1)
    asked = _count_queries(app, monkeypatch)
    worker = _worker(app)
    clock.advance(RECOVER_AFTER + timedelta(seconds=1))
    await worker.run_once()
    # 2,000 swept + the two queued with their payments, not the first 100 only.
    assert await _job_count(uow, "reconcile_payment") == 2002
    assert silent["id"] in asked[:2]  # due before the swept ones: first in line
    assert len(asked) <= worker.config.batch
    order = (await client.get(f"/v1/orders/{silent['order']['id']}")).json()
    assert order["status"] == "paid"
    await worker.close()


async def test_the_recovery_bound_holds_behind_2000_abandoned_attempts(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The guarantee in docs/operations.md: 2,000 attempts opened over the last ten
    minutes and never paid, each on its schedule; a paid payment whose notification is
    lost is queried in the first worker run after its recovery delay (within one sweep
    interval of it), and no run is so full that it leaves due work behind."""
    holder = (await _checkout(client, shop, 0))["order"]
    start = clock.now()
    clock.advance(timedelta(minutes=10))
    now = clock.now()
    async with uow:
        for n in range(2000):
            created = start + timedelta(milliseconds=300 * n)
            attempt = _attempt(holder, created)
            await uow.payments.add_with_job(
                attempt, kind="reconcile_payment", run_at=created + _next_check(now - created)
            )
        await uow.commit()
    silent = await _paid_but_silent(client, shop, gateway, 1)
    asked = _count_queries(app, monkeypatch)
    worker = _worker(app, batch=100)
    recovered_after: timedelta | None = None
    busiest = 0
    for _ in range(16):  # 80 s of worker runs, one per sweep interval
        clock.advance(STEP)
        asked.clear()
        await worker.run_once()
        busiest = max(busiest, len(asked))
        if recovered_after is None and silent["id"] in asked:
            recovered_after = clock.now() - now
    await worker.close()
    assert busiest < worker.config.batch, "a run left due work for the next"
    assert recovered_after is not None
    assert recovered_after <= RECOVER_AFTER + STEP, recovered_after
    order = (await client.get(f"/v1/orders/{silent['order']['id']}")).json()
    assert order["status"] == "paid"


async def test_an_orders_other_attempts_are_closed_when_one_pays(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    """Issue 15 item 3: an orphan (the API died creating it: ``created``, never at the
    gateway) and a second open attempt are closed once the order is paid."""
    first = await _checkout(client, shop, 1)
    order = first["order"]
    orphan = _attempt(order, clock.now())
    async with uow:
        await uow.payments.add(orphan)
        await uow.commit()
    second = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.pay(second["id"])
    await gateway.drain()
    worker = _worker(app)
    await worker.run_once()
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
    closed = (await client.get(f"/v1/payments/{first['id']}")).json()
    assert closed["status"] == "closed"
    assert gateway.payment(first["id"]).status == "CLOSED"  # closed on the channel too
    gone = (await client.get(f"/v1/payments/{orphan.id}")).json()
    assert (gone["status"], gone["failure_code"]) == ("closed", "trade_not_found")
    # Nothing is left for the recovery jobs to retry.
    clock.advance(timedelta(minutes=20))
    await worker.run_once()
    await worker.close()
    async with uow:
        assert await uow.payments.open_for_order(order["id"]) == []
        failed = await uow.conn.execute(select(jobs.c.key).where(jobs.c.status == "failed"))
        assert failed.all() == []


async def test_a_trade_the_gateway_never_saw_is_closed_once_its_order_no_longer_waits(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    """``TRADE_NOT_EXIST`` for an attempt is no error to retry with backoff: while the
    order waits the attempt is asked about again later; once the order is paid (or past
    its expiry) it is closed with the gateway's code."""
    paying = await _checkout(client, shop, 1)
    order = paying["order"]
    orphan = _attempt(order, clock.now())
    async with uow:
        await uow.payments.add_with_job(
            orphan, kind="reconcile_payment", run_at=clock.now() + RECOVER_AFTER
        )
        await uow.commit()
    worker = _worker(app)
    clock.advance(RECOVER_AFTER + timedelta(seconds=1))
    await worker.run_once()
    async with uow:
        job = await uow.work.job("reconcile_payment", orphan.id)
        still = await uow.payments.get(orphan.id)
    assert job is not None
    assert (job["status"], job["last_error"], job["attempts"]) == ("queued", None, 0)
    assert job["run_at"] > clock.now()
    assert still is not None
    assert still.status is PaymentStatus.CREATED
    # The order is paid through the other attempt; the orphan's next query closes it
    # (called directly here, before the close_attempts job would).
    await gateway.pay(paying["id"])
    await gateway.drain()
    assert await reconcile(app.state.modes.live.uow(), orphan.id, worker.deps) is None
    await worker.close()
    closed = (await client.get(f"/v1/payments/{orphan.id}")).json()
    assert (closed["status"], closed["failure_code"]) == ("closed", "TRADE_NOT_EXIST")
    assert "order is paid" in closed["failure_message"]


async def test_a_created_attempt_of_an_expired_order_is_closed_not_retried(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    clock: FrozenClock,
    uow: UnitOfWork,
    gateway: Simulator,
) -> None:
    order = (await _checkout(client, shop, 1))["order"]
    orphan = replace(_attempt(order, clock.now()), method="page")
    async with uow:
        await uow.payments.add(orphan)
        await uow.commit()
    clock.advance(timedelta(minutes=16))  # past the order's expiry
    worker = _worker(app, recover_after=timedelta(seconds=60))
    assert await reconcile(app.state.modes.live.uow(), orphan.id, worker.deps) is None
    await worker.close()
    closed = (await client.get(f"/v1/payments/{orphan.id}")).json()
    assert (closed["status"], closed["failure_code"]) == ("closed", "TRADE_NOT_EXIST")


async def _paid_order(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, n: int
) -> dict[str, Any]:
    payment = await _checkout(client, shop, n)
    await gateway.pay(payment["id"])
    await gateway.drain()
    return payment["order"]  # type: ignore[no-any-return]


async def test_a_failed_refund_submission_is_resent_behind_102_refunds_processing(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    """Issue 15 item 2: 102 refunds held processing at the gateway and one whose first
    submission timed out; the sweep pages through every pending refund without a job
    (here all of them: their jobs are removed, as for refunds written before jobs came
    with them), and the failed one is resent."""
    orders = [await _paid_order(client, shop, gateway, n) for n in range(103)]
    gateway.hold_next_refunds(102)
    held = [await post(client, "/v1/refunds", {"order_id": o["id"]}) for o in orders[:102]]
    gateway.fail_next("refund", kind="timeout")
    failed = (await client.post("/v1/refunds", json={"order_id": orders[102]["id"]})).json()
    await gateway.drain()
    assert (await client.get(f"/v1/refunds/{failed['id']}")).json()["status"] == "pending"
    async with uow:
        await uow.conn.execute(delete(jobs).where(jobs.c.kind == "submit_refund"))
        await uow.commit()
    worker = _worker(app)
    clock.advance(timedelta(seconds=61))
    assert await worker.sweep() >= 103
    assert await _job_count(uow, "submit_refund") == 103  # not the first 100 only
    for _ in range(3):
        await worker.run_once()
        await gateway.drain()
    await worker.close()
    assert (await client.get(f"/v1/refunds/{failed['id']}")).json()["status"] == "succeeded"
    statuses = {(await client.get(f"/v1/refunds/{r['id']}")).json()["status"] for r in held}
    assert statuses == {"pending"}
