"""Refunds on request through Alipay and WeChat Pay as the simulator plays them: success,
failure, processing then success by query, and a lost answer recovered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.shop import order_body, post
from tuition.app import create_app
from tuition.clock import FrozenClock
from tuition.config import load_settings
from tuition.services.api_keys import create_key
from tuition.services.ledger import verify_ledger
from tuition.services.payments import PaymentDeps, reconcile_payment
from tuition.simulator.app import Simulator
from tuition.store.uow import UnitOfWork
from tuition.worker.runner import Worker, WorkerConfig

METHODS = {"alipay": "qr", "wechatpay": "native"}  # both create the trade at once


@pytest.fixture(params=sorted(METHODS))
def channel(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def app(db_url: str, engine: AsyncEngine, clock: FrozenClock, tmp_path: Path) -> FastAPI:
    settings = load_settings(
        database_url=db_url,
        simulator=True,
        public_url="http://tuition.test",
        simulator_key_file=str(tmp_path / "sim.pem"),
    )
    return create_app(settings, engine=engine, test_engine=engine, clock=clock, run_worker=False)


@pytest.fixture
async def client(app: FastAPI, engine: AsyncEngine, clock: FrozenClock) -> AsyncIterator[Any]:
    key = await create_key(UnitOfWork(engine), name="t", mode="test", clock=clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://tuition.test",
        headers={"Authorization": f"Bearer {key.secret}"},
    ) as c:
        yield c


@pytest.fixture
def sim(app: FastAPI) -> Simulator:
    simulator = app.state.runtime.simulator
    assert simulator is not None
    # Nothing listens at the public URL here: every outcome is learnt by query.
    simulator.drop_next_notifications(1000)
    return simulator  # type: ignore[no-any-return]


async def _paid_order(
    app: FastAPI, client: httpx.AsyncClient, sim: Simulator, shop: dict[str, str], channel: str
) -> dict[str, Any]:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    payment = await post(
        client,
        f"/v1/orders/{order['id']}/payments",
        {"channel": channel, "method": METHODS[channel]},
    )
    await sim.pay(payment["id"])
    container = app.state.modes.live
    deps = PaymentDeps(container.registry, container.clock, container.settings.base_url)
    await reconcile_payment(container.uow(), payment["id"], deps=deps)
    return order


async def _run_worker(app: FastAPI, clock: FrozenClock, times: int = 1) -> None:
    worker = Worker(app.state.modes.live, WorkerConfig(sweep_interval=timedelta(seconds=0)))
    try:
        for _ in range(times):
            clock.advance(timedelta(seconds=61))
            await worker.run_once()
    finally:
        await worker.close()


async def _status(client: httpx.AsyncClient, refund_id: str) -> str:
    return str((await client.get(f"/v1/refunds/{refund_id}")).json()["status"])


async def test_a_refund_succeeds_through_the_channel_and_the_books_balance(
    app: FastAPI,
    client: httpx.AsyncClient,
    sim: Simulator,
    shop: dict[str, str],
    channel: str,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    order = await _paid_order(app, client, sim, shop, channel)
    first = await post(client, "/v1/refunds", {"order_id": order["id"], "amount": 4000})
    second = await post(client, "/v1/refunds", {"order_id": order["id"]})
    await _run_worker(app, clock)  # WeChat Pay answers "processing"; the query settles it
    assert await _status(client, first["id"]) == "succeeded"
    assert await _status(client, second["id"]) == "succeeded"
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "refunded"
    assert len(sim.state.refunds) == 2  # two requests, two refund numbers at the gateway
    report = await verify_ledger(uow)
    assert report.ok, report.problems


async def test_a_refund_the_gateway_fails_is_failed_with_its_reason(
    app: FastAPI,
    client: httpx.AsyncClient,
    sim: Simulator,
    shop: dict[str, str],
    channel: str,
    clock: FrozenClock,
) -> None:
    order = await _paid_order(app, client, sim, shop, channel)
    sim.fail_next_refunds(1)
    made = await post(client, "/v1/refunds", {"order_id": order["id"]})
    await _run_worker(app, clock)
    failed = (await client.get(f"/v1/refunds/{made['id']}")).json()
    assert failed["status"] == "failed"
    assert failed["failure_code"]
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"


async def test_a_refund_still_processing_succeeds_when_the_gateway_does(
    app: FastAPI,
    client: httpx.AsyncClient,
    sim: Simulator,
    shop: dict[str, str],
    channel: str,
    clock: FrozenClock,
) -> None:
    order = await _paid_order(app, client, sim, shop, channel)
    sim.hold_next_refunds(1)
    made = await post(client, "/v1/refunds", {"order_id": order["id"]})
    assert made["status"] == "pending"
    await _run_worker(app, clock)
    assert await _status(client, made["id"]) == "pending"
    await sim.settle_refund(made["id"])
    await _run_worker(app, clock)
    assert await _status(client, made["id"]) == "succeeded"


async def test_a_refund_whose_answer_was_lost_is_recovered_by_the_query(
    app: FastAPI,
    client: httpx.AsyncClient,
    sim: Simulator,
    shop: dict[str, str],
    channel: str,
    clock: FrozenClock,
) -> None:
    order = await _paid_order(app, client, sim, shop, channel)
    sim.lose_next_refund_answers(1)
    made = await post(client, "/v1/refunds", {"order_id": order["id"]})
    assert made["status"] == "pending"
    await _run_worker(app, clock, times=2)
    assert await _status(client, made["id"]) == "succeeded"
    assert len(sim.state.refunds) == 1
