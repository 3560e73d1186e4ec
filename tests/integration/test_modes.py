"""Test and live modes kept apart (docs/api.md, "Test and live modes").

Each mode has its own store, built here the way a deployment builds it from
``TUITION_DATABASE_URL``: test mode in a sibling SQLite file, or in the ``tuition_test``
schema of the same PostgreSQL database. A key sees and writes only its own mode's store;
the sandbox channel exists only in test mode; gateways notify each mode at its own path;
checkout links open in the mode of their order; the console shows one mode at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tuition.app import create_app
from tuition.channels.registry import ChannelRegistry
from tuition.channels.sandbox.client import SandboxChannel, SandboxConfig
from tuition.clock import FrozenClock
from tuition.config import TEST_MODE_SCHEMA, load_settings
from tuition.services import admin as admin_service
from tuition.services.api_keys import create_key
from tuition.simulator.app import Simulator, create_simulator
from tuition.simulator.config import DEFAULT_APP_ID, DEFAULT_SECRET, SimulatorConfig
from tuition.store import schema
from tuition.store.db import create_engine
from tuition.store.tables import orders, payments
from tuition.store.uow import UnitOfWork


@dataclass
class Deployment:
    app: FastAPI
    live: httpx.AsyncClient
    test: httpx.AsyncClient
    anon: httpx.AsyncClient
    live_engine: AsyncEngine
    test_engine: AsyncEngine
    gateway: Simulator


async def _no_wait(_seconds: float) -> None:
    await asyncio.sleep(0)


@pytest.fixture
async def deployment(db_url: str, clock: FrozenClock) -> AsyncIterator[Deployment]:
    settings = load_settings(database_url=db_url, public_url="http://tuition.test")
    url, test_schema = settings.store_url("test")
    assert (url, test_schema) != (db_url, None)
    live_engine = create_engine(db_url)
    test_engine = create_engine(url, schema=test_schema)
    await schema.upgrade(test_engine)  # what `tuition migrate` does for test mode
    test_registry = ChannelRegistry()
    app = create_app(
        settings,
        engine=live_engine,
        test_engine=test_engine,
        clock=clock,
        registry=ChannelRegistry(),  # live: no sandbox, as a deployment builds it
        test_registry=test_registry,
        run_worker=False,
    )
    transport = httpx.ASGITransport(app=app)
    sim = create_simulator(SimulatorConfig(clock=clock, sleep=_no_wait, notify_transport=transport))
    test_registry.add(
        SandboxChannel(
            SandboxConfig(
                base_url=sim.config.public_base_url,
                app_id=DEFAULT_APP_ID,
                secret=DEFAULT_SECRET,
                gateway_public_key_pem=sim.public_key_pem,
                gateway_serial=sim.serial,
            ),
            transport=sim.transport,
            clock=clock,
        )
    )
    live_key = await create_key(UnitOfWork(live_engine), name="l", mode="live", clock=clock)
    test_key = await create_key(UnitOfWork(test_engine), name="t", mode="test", clock=clock)

    def client(secret: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return httpx.AsyncClient(
            transport=transport, base_url="http://tuition.test", headers=headers
        )

    async with (
        client(live_key.secret) as live,
        client(test_key.secret) as test,
        client(None) as anon,
    ):
        yield Deployment(app, live, test, anon, live_engine, test_engine, sim)
    await sim.aclose()
    await live_engine.dispose()
    await test_engine.dispose()


async def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


async def _order(client: httpx.AsyncClient, customer: str = "u_1") -> dict[str, Any]:
    creator = await _ok(await client.post("/v1/creators", json={"name": "Ada"}))
    product = await _ok(
        await client.post(
            "/v1/products",
            json={
                "creator_id": creator["id"],
                "title": "Course",
                "kind": "course",
                "prices": {"CNY": 9900},
            },
        )
    )
    body = {"customer_id": customer, "currency": "CNY", "items": [{"product_id": product["id"]}]}
    return await _ok(await client.post("/v1/orders", json=body))


async def _count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_a_key_sees_and_writes_only_its_own_modes_objects(deployment: Deployment) -> None:
    test_order = await _order(deployment.test)
    live_order = await _order(deployment.live)

    for client, own, other in (
        (deployment.test, test_order, live_order),
        (deployment.live, live_order, test_order),
    ):
        assert (await client.get(f"/v1/orders/{own['id']}")).status_code == 200
        assert (await client.get(f"/v1/orders/{other['id']}")).status_code == 404
        listed = (await client.get("/v1/orders")).json()["data"]
        assert [o["id"] for o in listed] == [own["id"]]
        products = (await client.get("/v1/products")).json()["data"]
        assert len(products) == 1
        refused = await client.post(f"/v1/orders/{other['id']}/cancel")
        assert refused.status_code == 404, refused.text

    # Each store holds its own mode's order only.
    assert await _count(deployment.live_engine, orders) == 1
    assert await _count(deployment.test_engine, orders) == 1
    # The same customer id is two customers, one per mode.
    live_wallet = await deployment.live.get("/v1/customers/u_1/wallet")
    test_wallet = await deployment.test.get("/v1/customers/u_1/wallet")
    assert live_wallet.status_code == test_wallet.status_code == 200


async def test_a_key_is_looked_up_only_in_the_store_of_its_mode(
    deployment: Deployment, clock: FrozenClock
) -> None:
    # A live key written into test mode's store (as a pre-separation database had them)
    # opens nothing: live keys are read from the live store.
    stray = await create_key(UnitOfWork(deployment.test_engine), name="x", mode="live", clock=clock)
    answer = await deployment.anon.get(
        "/v1/orders", headers={"Authorization": f"Bearer {stray.secret}"}
    )
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_api_key"


async def test_the_sandbox_is_test_mode_only_and_each_mode_is_notified_apart(
    deployment: Deployment,
) -> None:
    live_order = await _order(deployment.live)
    refused = await deployment.live.post(
        f"/v1/orders/{live_order['id']}/payments", json={"channel": "sandbox", "method": "page"}
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "channel_unknown"
    assert "test mode" in refused.json()["error"]["message"]
    assert await _count(deployment.live_engine, payments) == 0

    test_order = await _order(deployment.test)
    payment = await _ok(
        await deployment.test.post(
            f"/v1/orders/{test_order['id']}/payments", json={"channel": "sandbox", "method": "page"}
        )
    )
    await deployment.gateway.pay(payment["id"])
    await deployment.gateway.drain()

    paid = await _ok(await deployment.test.get(f"/v1/orders/{test_order['id']}"))
    assert paid["status"] == "paid"
    async with deployment.test_engine.connect() as conn:
        notified = (await conn.execute(text("SELECT count(*) FROM notifications"))).scalar_one()
    assert notified >= 1
    async with deployment.live_engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM notifications"))).scalar_one() == 0
        assert (await conn.execute(text("SELECT count(*) FROM journal_entries"))).scalar_one() == 0
    # Live mode's notification path has no sandbox: a sandbox notification sent there is
    # refused, whatever it says.
    stray = await deployment.anon.post("/v1/notify/sandbox", content=b"{}")
    assert stray.status_code == 400


async def test_a_checkout_link_opens_in_the_mode_of_its_order(deployment: Deployment) -> None:
    test_order = await _order(deployment.test)
    live_order = await _order(deployment.live)
    for order in (test_order, live_order):
        url = httpx.URL(order["checkout_url"])
        page = await deployment.anon.get(url.raw_path.decode())
        assert page.status_code == 200, page.text
        assert "Course" in page.text
    # A test-mode page offers the sandbox; a live one does not.
    test_page = await deployment.anon.get(httpx.URL(test_order["checkout_url"]).raw_path.decode())
    live_page = await deployment.anon.get(httpx.URL(live_order["checkout_url"]).raw_path.decode())
    assert 'value="sandbox' in test_page.text
    assert 'value="sandbox' not in live_page.text


async def test_the_console_shows_one_mode_at_a_time(
    deployment: Deployment, clock: FrozenClock
) -> None:
    test_order = await _order(deployment.test, customer="tester")
    live_order = await _order(deployment.live, customer="buyer")
    email, password = "ops@example.com", "correct-horse-battery"
    await admin_service.create_admin_user(
        UnitOfWork(deployment.live_engine), email, password, clock
    )
    console = deployment.anon
    form = await console.get("/admin/login")
    csrf = form.text.split('name="csrf_token" value="')[1].split('"')[0]
    signed = await console.post(
        "/admin/login", data={"email": email, "password": password, "csrf_token": csrf}
    )
    assert signed.status_code == 303, signed.text

    live_view = (await console.get("/admin/orders")).text
    assert live_order["id"] in live_view
    assert test_order["id"] not in live_view
    assert 'data-testid="test-mode-banner"' not in live_view

    token = live_view.split('name="csrf_token" value="')[1].split('"')[0]
    # Switching is a form with the session's token: a link from elsewhere cannot do it.
    forged = await console.post("/admin/mode", data={"to": "test", "csrf_token": "x"})
    assert forged.status_code == 403
    assert test_order["id"] not in (await console.get("/admin/orders")).text
    assert (await console.get("/admin/mode", params={"to": "test"})).status_code == 405

    switched = await console.post("/admin/mode", data={"to": "test", "csrf_token": token})
    assert switched.status_code == 303
    test_view = (await console.get("/admin/orders")).text
    assert test_order["id"] in test_view
    assert live_order["id"] not in test_view
    assert 'data-testid="test-mode-banner"' in test_view

    await console.post("/admin/mode", data={"to": "live", "csrf_token": token})
    assert test_order["id"] not in (await console.get("/admin/orders")).text


def test_test_modes_store_is_derived_from_the_database_url() -> None:
    sqlite = load_settings(database_url="sqlite+aiosqlite:///./data/shop.db")
    assert sqlite.store_url("test") == ("sqlite+aiosqlite:///data/shop.test.db", None)
    assert sqlite.store_url("live") == ("sqlite+aiosqlite:///./data/shop.db", None)
    pg = load_settings(database_url="postgresql+asyncpg://u:p@db:5432/tuition")
    assert pg.store_url("test") == ("postgresql+asyncpg://u:p@db:5432/tuition", TEST_MODE_SCHEMA)
    own = load_settings(
        database_url="postgresql+asyncpg://u:p@db/tuition",
        test_mode_database_url="postgresql+asyncpg://u:p@db/tuition_sandbox",
    )
    assert own.store_url("test") == ("postgresql+asyncpg://u:p@db/tuition_sandbox", None)


def test_test_mode_has_its_own_channels_and_channel_settings() -> None:
    settings = load_settings(
        channels=["sandbox", "alipay"],
        test_channels=["sandbox", "alipay"],
        test_channel_settings={
            "alipay_gateway_url": "https://openapi-sandbox.dl.alipaydev.com/gateway.do",
            "alipay_app_id": "9021000000000000",
        },
        alipay_app_id="2021000000000000",
    )
    assert settings.mode_channels("live") == ["alipay"]
    assert settings.mode_channels("test") == ["sandbox", "alipay"]
    test = settings.for_mode("test")
    assert test.alipay_gateway_url == "https://openapi-sandbox.dl.alipaydev.com/gateway.do"
    assert test.alipay_app_id == "9021000000000000"
    assert settings.for_mode("live").alipay_app_id == "2021000000000000"
    assert load_settings().mode_channels("test") == ["sandbox"]
    assert load_settings().mode_channels("live") == []


def test_test_channel_settings_may_set_channel_settings_only() -> None:
    from tuition.config import ConfigError

    with pytest.raises(ConfigError, match="database_url"):
        load_settings(test_channel_settings={"database_url": "sqlite+aiosqlite:///x.db"})


async def test_readiness_asks_both_modes_stores(
    deployment: Deployment, db_url: str, tmp_path: Path
) -> None:
    ready = await deployment.anon.get("/readyz")
    assert ready.status_code == 200
    report = ready.json()
    assert (report["status"], report["database"], report["test_mode_database"]) == (
        "ok",
        "ok",
        "ok",
    )
    # Each mode's channel breakers, apart.
    assert report["channels"] == report["test_mode_channels"] == []

    # Test mode's store gone (a directory that does not exist): not ready, and it says which.
    dead = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'test.db'}")
    live = create_engine(db_url)
    app = create_app(
        load_settings(database_url=db_url), engine=live, test_engine=dead, run_worker=False
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://tuition.test"
        ) as client:
            down = await client.get("/readyz")
    finally:
        await live.dispose()
        await dead.dispose()
    assert down.status_code == 503
    assert down.json()["status"] == "unavailable"
    assert down.json()["database"] == "ok"
    assert down.json()["test_mode_database"].startswith("OperationalError")


async def test_a_subscription_link_opens_in_the_mode_of_its_subscription(
    deployment: Deployment,
) -> None:
    from tuition.web.modes import _subscription_exists, object_mode

    creator = await _ok(await deployment.test.post("/v1/creators", json={"name": "Ada"}))
    body = {
        "creator_id": creator["id"],
        "title": "Club",
        "kind": "membership",
        "period": "month",
        "prices": {"CNY": 3000},
    }
    membership = await _ok(await deployment.test.post("/v1/products", json=body))
    subscription = await _ok(
        await deployment.test.post(
            "/v1/subscriptions",
            json={
                "customer_id": "u_1",
                "product_id": membership["id"],
                "channel": "sandbox",
                "method": "page",
                "auto_renew": False,
            },
        )
    )
    modes = deployment.app.state.modes
    assert await object_mode(modes, subscription["id"], _subscription_exists) == "test"
    assert await object_mode(modes, "sub_unknown", _subscription_exists) == "live"


async def test_app_store_family_sharing_in_test_mode_stays_in_test_mode(
    deployment: Deployment, clock: FrozenClock, tmp_path: Path
) -> None:
    from tests.integration.app_store import APP_APPLE_ID, BUNDLE_ID, TestAppStore, later
    from tuition.channels.apple.client import AppleChannel
    from tuition.channels.apple.config import load_apple_config

    creator = await _ok(await deployment.test.post("/v1/creators", json={"name": "Ada"}))
    monthly = await _ok(
        await deployment.test.post(
            "/v1/products",
            json={
                "creator_id": creator["id"],
                "kind": "membership",
                "period": "month",
                "title": "Monthly",
                "prices": {"CNY": 3000},
            },
        )
    )
    store = TestAppStore()
    root = tmp_path / "AppleRootCA-G3.cer"
    root.write_bytes(store.root_der())
    config = load_apple_config(
        bundle_id=BUNDLE_ID,
        environment="Sandbox",  # Apple's sandbox notifies test mode
        root_certificate_files=[str(root)],
        app_apple_id=APP_APPLE_ID,
        products={"com.example.tuition.monthly": {"product_id": monthly["id"]}},
        online_checks=False,
    )
    deployment.app.state.modes.test.registry.add(AppleChannel(config))
    shared = store.transaction(
        "9000000000000101",
        "com.example.tuition.monthly",
        at=clock.now(),
        price=30000,
        type="Auto-Renewable Subscription",
        inAppOwnershipType="FAMILY_SHARED",
        expiresDate=int(later(clock.now(), days=30).timestamp() * 1000),
    )
    granted = await deployment.test.post(
        "/v1/channels/apple/transactions",
        json={"signed_transaction": shared, "customer_id": "u_2"},
    )
    assert granted.status_code == 201, granted.text
    assert granted.json()["family_shared"] is True
    path = f"/v1/customers/u_2/entitlements/{monthly['id']}"
    assert (await deployment.test.get(path)).json()["has_access"] is True
    assert (await deployment.live.get("/v1/customers/u_2/entitlements")).json()["data"] == []
    revoke = store.notification(
        "REVOKE", shared, at=clock.now(), notification_uuid="0b7c3d5e-0000-4000-8000-000000000001"
    )
    answer = await deployment.anon.post("/v1/notify/test/apple", content=revoke)
    assert answer.status_code == 200, answer.text
    assert (await deployment.test.get(path)).json()["has_access"] is False


def test_a_real_channel_in_test_mode_never_runs_on_live_credentials() -> None:
    from tuition.config import ConfigError

    live = {"alipay_app_id": "2021000000000000", "channels": ["alipay"]}
    same = load_settings(**live, test_channels=["sandbox", "alipay"])
    with pytest.raises(ConfigError, match="test mode's alipay would use live mode's credentials"):
        same.mode_channels("test")
    restated = load_settings(
        **live,
        test_channels=["alipay"],
        test_channel_settings={"alipay_app_id": "2021000000000000"},
    )
    with pytest.raises(ConfigError, match="TUITION_TEST_CHANNEL_SETTINGS"):
        restated.mode_channels("test")
    own = load_settings(
        **live,
        test_channels=["alipay"],
        test_channel_settings={"alipay_app_id": "9021000000000000"},
    )
    assert own.mode_channels("test") == ["alipay"]
    assert own.mode_channels("live") == ["alipay"]
    # Bank transfers in test mode show an account of their own, never the company's.
    bank = load_settings(
        channels=["bank_transfer"],
        test_channels=["bank_transfer"],
        bank_transfer_account_number="6214 0000",
    )
    with pytest.raises(ConfigError, match="bank_transfer_account_number"):
        bank.mode_channels("test")
    # The App Store: live mode takes Production transactions, test mode Sandbox ones.
    apple = load_settings(channels=["apple"], apple_environment="Sandbox")
    with pytest.raises(ConfigError, match="TUITION_APPLE_ENVIRONMENT"):
        apple.mode_channels("live")
    sandboxed = load_settings(
        test_channels=["apple"], test_channel_settings={"apple_environment": "Sandbox"}
    )
    assert sandboxed.mode_channels("test") == ["apple"]
    with pytest.raises(ConfigError, match="Sandbox"):
        load_settings(test_channels=["apple"]).mode_channels("test")
    # In simulator mode every gateway is the simulator's.
    simulated = load_settings(simulator=True, test_channels=["sandbox", "alipay"])
    assert simulated.mode_channels("test") == ["sandbox", "alipay"]
