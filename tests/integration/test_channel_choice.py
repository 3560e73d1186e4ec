"""Smart channel choice on both engines: ranking from our own finished attempts, the
circuit breaker with the clock injected, and `{"channel": "auto"}` end to end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert

from tests.integration.shop import order_body, post
from tuition.app import create_app
from tuition.channels.registry import ChannelRegistry
from tuition.channels.setup import build_registry
from tuition.clock import FrozenClock
from tuition.config import load_settings
from tuition.domain.channel_choice import Device, Strategy
from tuition.domain.ids import new_id
from tuition.services.channel_choice import BREAKER_REFRESH, ChoicePolicy, ranked_channels
from tuition.simulator.app import Simulator, create_simulator
from tuition.simulator.config import SimulatorConfig
from tuition.store.db import create_engine
from tuition.store.tables import payments
from tuition.store.uow import UnitOfWork


async def _no_wait(_seconds: float) -> None:
    await asyncio.sleep(0)


@pytest.fixture(scope="session")
def choice_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("choice-keys")


@pytest.fixture
async def two_channels(
    app: FastAPI, clock: FrozenClock, choice_keys: Path
) -> AsyncIterator[Simulator]:
    """Alipay at 2 % (the seed's A) and WeChat Pay at 1 % (B), on the simulator."""
    sim = create_simulator(
        SimulatorConfig(clock=clock, sleep=_no_wait, notify_transport=httpx.ASGITransport(app=app))
    )
    settings = load_settings(
        simulator=True,
        channels=["alipay", "wechatpay"],
        simulator_key_file=str(choice_keys / "simulator.pem"),
        channel_fee_rates={"alipay": "0.02", "wechatpay": "0.01"},
    )
    built = list(build_registry(settings, clock=clock, simulator=sim))
    for channel in built:
        app.state.modes.live.registry.add(channel)
    yield sim
    await sim.aclose()
    for channel in built:
        await channel.aclose()


async def _attempts(
    uow: UnitOfWork, order_id: str, channel: str, clock: FrozenClock, **statuses: int
) -> None:
    rows: list[dict[str, Any]] = []
    for status, count in statuses.items():
        for _ in range(count):
            rows.append(
                {
                    "id": new_id("pay"),
                    "order_id": order_id,
                    "customer_id": "u_1",
                    "channel": channel,
                    "method": "page",
                    "app_id": "app",
                    "status": status,
                    "amount": 100,
                    "currency": "CNY",
                    "amount_refunded": 0,
                    "refund_reserved": 100 if status == "succeeded" else 0,
                    "created_at": clock.now() - timedelta(hours=1),
                    "updated_at": clock.now(),
                }
            )
    async with uow:
        await uow.conn.execute(insert(payments), rows)
        await uow.commit()


async def test_the_seeds_numbers_from_our_own_finished_attempts_rank_under_both_strategies(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    two_channels: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
    app: FastAPI,
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    # A: 18 of 20 finished succeeded (0.90); 5 open attempts count for nothing.
    await _attempts(uow, order["id"], "alipay", clock, succeeded=18, failed=2, pending=5)
    # B: 17 of 20 finished (0.85); closed is finished, created is open.
    await _attempts(
        uow, order["id"], "wechatpay", clock, succeeded=17, failed=2, closed=1, created=4
    )
    registry = app.state.modes.live.registry

    async def ranked(strategy: Strategy) -> list[tuple[str, Decimal, str]]:
        found = await ranked_channels(
            uow,
            registry,
            policy=ChoicePolicy(strategy=strategy),
            now=clock.now(),
            device=Device.DESKTOP,
        )
        return [(c.channel, c.rate, c.method) for c in found]

    assert await ranked(Strategy.SUCCESS_PER_FEE) == [
        ("wechatpay", Decimal("0.85"), "native"),
        ("alipay", Decimal("0.9"), "page"),
    ]
    assert [c for c, _, _ in await ranked(Strategy.EXPECTED_NET)] == ["alipay", "wechatpay"]

    # Attempts older than the window are not counted: a 30-minute window sees none.
    fresh = await ranked_channels(
        uow,
        registry,
        policy=ChoicePolicy(window=timedelta(minutes=30)),
        now=clock.now(),
        device=Device.DESKTOP,
    )
    assert [(c.succeeded, c.finished) for c in fresh] == [(0, 0), (0, 0)]

    # The API's "auto" follows the configured strategy (expected_net by default).
    paying = await post(client, f"/v1/orders/{order['id']}/payments", {"channel": "auto"})
    assert (paying["channel"], paying["method"]) == ("alipay", "page")
    container = app.state.modes.live
    container.settings = container.settings.model_copy(
        update={"channel_strategy": "success_per_fee"}
    )
    other = await post(client, "/v1/orders", order_body(shop, "c2"))
    paying = await post(client, f"/v1/orders/{other['id']}/payments", {"channel": "auto"})
    assert (paying["channel"], paying["method"]) == ("wechatpay", "native")


async def test_a_mobile_buyer_gets_a_mobile_method(
    client: httpx.AsyncClient, shop: dict[str, str], two_channels: Simulator
) -> None:
    mobile = {"user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148"}
    order = await post(client, "/v1/orders", order_body(shop, "c1", client=mobile))
    body = {"channel": "auto", "client_ip": "203.0.113.9"}
    # no history yet: both count as 1.0, so the cheaper WeChat Pay (1 %) ranks first
    paying = await post(client, f"/v1/orders/{order['id']}/payments", body)
    assert (paying["channel"], paying["method"]) == ("wechatpay", "h5")
    wanted = await post(client, f"/v1/orders/{order['id']}/payments", {**body, "method": "wap"})
    assert (wanted["channel"], wanted["method"]) == ("alipay", "wap")  # only Alipay has wap


async def test_the_breaker_opens_skips_the_channel_and_closes_after_its_cool_down(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    app: FastAPI,
) -> None:
    container = app.state.modes.live
    container.settings = container.settings.model_copy(
        update={"channel_breaker_failures": 2, "channel_breaker_cooldown_seconds": 300}
    )
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    path = f"/v1/orders/{order['id']}/payments"
    for kind in ("error", "timeout"):  # a 503 and a timeout: both outcomes unknown
        gateway.fail_next("create", 1, kind=kind)  # type: ignore[arg-type]
        failed = await client.post(path, json={"channel": "auto"})
        assert failed.status_code == 502, failed.text
        assert failed.json()["error"]["code"] == "channel_timeout"
    [state] = (await anon_client.get("/readyz")).json()["channels"]
    assert (state["channel"], state["state"], state["failures"]) == ("sandbox", "open", 2)

    skipped = await client.post(path, json={"channel": "auto"})
    assert skipped.status_code == 409, skipped.text
    assert skipped.json()["error"]["code"] == "no_channel_available"

    clock.advance(timedelta(seconds=300))  # the cool-down is over: tried again
    [state] = (await anon_client.get("/readyz")).json()["channels"]
    assert state["state"] == "half_open"
    paying = await post(client, path, {"channel": "auto"})
    assert (paying["channel"], paying["status"]) == ("sandbox", "pending")
    [state] = (await anon_client.get("/readyz")).json()["channels"]
    assert (state["state"], state["failures"]) == ("closed", 0)


async def test_a_failure_while_half_open_opens_the_breaker_again(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    app: FastAPI,
    anon_client: httpx.AsyncClient,
) -> None:
    container = app.state.modes.live
    container.settings = container.settings.model_copy(update={"channel_breaker_failures": 1})
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    path = f"/v1/orders/{order['id']}/payments"
    gateway.fail_next("create", 2, kind="error")
    assert (
        await client.post(path, json={"channel": "sandbox", "method": "page"})
    ).status_code == 502
    clock.advance(timedelta(seconds=300))
    assert (await client.post(path, json={"channel": "auto"})).status_code == 502  # the trial
    [state] = (await anon_client.get("/readyz")).json()["channels"]
    assert state["state"] == "open"
    assert (await client.post(path, json={"channel": "auto"})).status_code == 409


async def test_with_one_channel_broken_the_buyer_is_offered_the_next(
    client: httpx.AsyncClient, shop: dict[str, str], two_channels: Simulator, app: FastAPI
) -> None:
    container = app.state.modes.live
    container.settings = container.settings.model_copy(update={"channel_breaker_failures": 1})
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    path = f"/v1/orders/{order['id']}/payments"
    two_channels.fail_next("create", 1, kind="error")
    # no history: the cheaper WeChat Pay ranks first, and its call fails
    first = await client.post(path, json={"channel": "auto"})
    assert first.status_code == 502, first.text
    listed = (await client.get(f"/v1/orders/{order['id']}/payments")).json()["data"]
    assert [p["channel"] for p in listed] == ["wechatpay"]
    paying = await post(client, path, {"channel": "auto"})
    assert paying["channel"] == "alipay"


async def test_the_checkout_offers_channels_in_ranking_order_without_broken_ones(
    client: httpx.AsyncClient, shop: dict[str, str], two_channels: Simulator, app: FastAPI
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    url = order["checkout_url"].split("tuition.test", 1)[-1]
    page = (await client.get(url)).text
    # no history: the cheaper WeChat Pay ranks first under expected_net
    assert page.index('value="wechatpay:native"') < page.index('value="alipay:page"')

    container = app.state.modes.live
    container.settings = container.settings.model_copy(update={"channel_breaker_failures": 1})
    two_channels.fail_next("create", 1, kind="error")
    failed = await client.post(f"/v1/orders/{order['id']}/payments", json={"channel": "auto"})
    assert failed.status_code == 502
    page = (await client.get(url)).text
    assert 'value="wechatpay:native"' not in page  # skipped for its cool-down
    assert 'value="alipay:page"' in page


@pytest.fixture
async def second_process(
    app: FastAPI, settings: Any, db_url: str, clock: FrozenClock, api_key: str, gateway: Simulator
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """Another API process on the same store: its own engine, the same clock and channel."""
    engine = create_engine(db_url)
    other = create_app(
        settings, engine=engine, test_engine=engine, clock=clock, registry=ChannelRegistry()
    )
    other.state.modes.live.registry.add(app.state.modes.live.registry.get("sandbox"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=other),
        base_url="http://tuition.test",
        headers={"Authorization": f"Bearer {api_key}"},
    ) as client:
        yield other, client
    await engine.dispose()


async def test_a_reset_by_a_success_in_another_process_closes_the_breaker_for_every_process(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    app: FastAPI,
    second_process: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    other, other_client = second_process
    for process in (app, other):
        container = process.state.modes.live
        container.settings = container.settings.model_copy(
            update={"channel_breaker_failures": 2, "channel_breaker_cooldown_seconds": 300}
        )
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    path = f"/v1/orders/{order['id']}/payments"
    sandbox = {"channel": "sandbox", "method": "page"}
    # The other process pays once while all is well: its view of the breakers is fresh.
    assert (await other_client.post(path, json=sandbox)).status_code == 201
    # This process sees two failures in a row: the stored breaker opens.
    gateway.fail_next("create", 2, kind="error")
    for _ in range(2):
        assert (await client.post(path, json=sandbox)).status_code == 502
    refused = await client.post(path, json={"channel": "auto"})
    assert refused.json()["error"]["code"] == "no_channel_available"

    # A success in the other process within BREAKER_REFRESH of its last read does not
    # know of the failures yet; once its view is older, the next success resets them.
    clock.advance(BREAKER_REFRESH / 2)
    assert (await other_client.post(path, json=sandbox)).status_code == 201
    [state] = (await anon_client.get("/readyz")).json()["channels"]
    assert (state["state"], state["failures"]) == ("open", 2)
    clock.advance(BREAKER_REFRESH)
    assert (await other_client.post(path, json=sandbox)).status_code == 201
    [state] = (await anon_client.get("/readyz")).json()["channels"]
    assert (state["channel"], state["state"], state["failures"]) == ("sandbox", "closed", 0)
    # This process, which saw the failures, offers the channel again at once.
    paying = await post(client, path, {"channel": "auto"})
    assert paying["channel"] == "sandbox"


async def test_failures_seen_by_two_processes_add_up_to_open_the_breaker(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    app: FastAPI,
    second_process: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    other, other_client = second_process
    for process in (app, other):
        container = process.state.modes.live
        container.settings = container.settings.model_copy(
            update={"channel_breaker_failures": 2, "channel_breaker_cooldown_seconds": 300}
        )
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    path = f"/v1/orders/{order['id']}/payments"
    sandbox = {"channel": "sandbox", "method": "page"}
    gateway.fail_next("create", 2, kind="error")
    assert (await client.post(path, json=sandbox)).status_code == 502
    assert (await other_client.post(path, json=sandbox)).status_code == 502
    [state] = (await anon_client.get("/readyz")).json()["channels"]
    assert (state["state"], state["failures"]) == ("open", 2)
    refused = await client.post(path, json={"channel": "auto"})
    assert refused.json()["error"]["code"] == "no_channel_available"
