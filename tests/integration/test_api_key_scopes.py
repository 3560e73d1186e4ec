"""Restricted API keys on both engines: read-only, orders+payments and refunds keys may
do what their scopes cover and get a 403 naming the scope for anything else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from tests.integration.shop import order_body, post
from tuition.cli import app as cli
from tuition.clock import FrozenClock
from tuition.config import get_settings
from tuition.domain.api_scopes import COVERS, allows, parse_scopes
from tuition.domain.errors import ValidationFailed
from tuition.services.api_keys import create_key, list_keys
from tuition.simulator.app import Simulator
from tuition.store.uow import UnitOfWork

_OPEN: list[httpx.AsyncClient] = []


@pytest.fixture(autouse=True)
async def _close() -> AsyncIterator[None]:
    yield
    while _OPEN:
        await _OPEN.pop().aclose()


async def _client(
    app: FastAPI, engine: AsyncEngine, clock: FrozenClock, *scopes: str
) -> httpx.AsyncClient:
    made = await create_key(
        UnitOfWork(engine), name="restricted", mode="test", clock=clock, scopes=scopes
    )
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://tuition.test",
        headers={"Authorization": f"Bearer {made.secret}"},
    )
    _OPEN.append(client)
    return client


def _refused(response: httpx.Response, scope: str) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("permission_error", "api_key_scope")
    assert f"needs {scope}" in error["message"]


async def test_a_read_only_key_reads_everything_and_changes_nothing(
    app: FastAPI,
    engine: AsyncEngine,
    clock: FrozenClock,
    client: httpx.AsyncClient,
    shop: dict[str, str],
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    reader = await _client(app, engine, clock, "read")
    for path in (
        "/v1/orders",
        f"/v1/orders/{order['id']}",
        "/v1/products",
        "/v1/refunds",
        "/v1/events",
    ):
        assert (await reader.get(path)).status_code == 200, path
    _refused(await reader.post("/v1/orders", json=order_body(shop, "c1")), "orders_payments")
    _refused(await reader.post(f"/v1/orders/{order['id']}/cancel"), "orders_payments")
    _refused(await reader.post("/v1/refunds", json={"order_id": order["id"]}), "refunds")
    _refused(await reader.post("/v1/creators", json={"name": "X"}), "a full key")
    listed = await reader.get("/v1/orders")
    assert [o["id"] for o in listed.json()["data"]] == [order["id"]]  # nothing was added


async def test_an_orders_and_payments_key_sells_but_neither_refunds_nor_reads_the_rest(
    app: FastAPI,
    engine: AsyncEngine,
    clock: FrozenClock,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
) -> None:
    shop_key = await _client(app, engine, clock, "orders_payments")
    order = await post(shop_key, "/v1/orders", order_body(shop, "c1"))
    payment = await post(
        shop_key, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "qr"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    assert (await shop_key.get(f"/v1/payments/{payment['id']}")).json()["status"] == "succeeded"
    assert (await shop_key.get(f"/v1/orders/{order['id']}")).status_code == 200
    _refused(await shop_key.get("/v1/products"), "read")
    _refused(await shop_key.get(f"/v1/orders/{order['id']}/refundable"), "refunds")
    _refused(await shop_key.post("/v1/refunds", json={"order_id": order["id"]}), "refunds")
    # A refunds key refunds it, and may not sell.
    refunder = await _client(app, engine, clock, "refunds")
    assert (await refunder.get(f"/v1/orders/{order['id']}/refundable")).status_code == 200
    refund = await post(refunder, "/v1/refunds", {"order_id": order["id"], "reason": "duplicate"})
    assert (await refunder.get(f"/v1/refunds/{refund['id']}")).status_code == 200
    _refused(await refunder.post("/v1/orders", json=order_body(shop, "c1")), "orders_payments")
    _refused(await refunder.get(f"/v1/payments/{payment['id']}"), "orders_payments")
    # Two scopes together, and the full key as before.
    both = await _client(app, engine, clock, "read", "refunds")
    assert (await both.get("/v1/products")).status_code == 200
    assert (await client.post("/v1/creators", json={"name": "Full"})).status_code in (200, 201)


async def test_scopes_are_validated_and_listed(engine: AsyncEngine, clock: FrozenClock) -> None:
    with pytest.raises(ValidationFailed, match="not a scope"):
        await create_key(UnitOfWork(engine), name="x", mode="test", clock=clock, scopes=["admin"])
    await create_key(
        UnitOfWork(engine), name="r", mode="test", clock=clock, scopes=["refunds,read", "read"]
    )
    await create_key(UnitOfWork(engine), name="all", mode="test", clock=clock, scopes=["all"])
    keys = {k.name: k.scopes for k in await list_keys(UnitOfWork(engine))}
    assert keys["r"] == ("read", "refunds")
    assert keys["all"] is None


def test_every_covered_route_exists_and_a_full_key_may_do_anything() -> None:
    from tuition.app import _feature_routers

    routes = {
        (method, getattr(route, "path", ""))
        for router in _feature_routers()
        for route in router.routes
        for method in getattr(route, "methods", None) or ()
    }
    for covered in COVERS.values():
        assert covered <= routes, covered - routes
    assert allows(None, "POST", "/v1/payouts")
    assert not allows(("read",), "POST", "/v1/payouts")
    assert allows(("read",), "HEAD", "/v1/orders")
    assert parse_scopes([]) is None


def test_keys_are_created_with_scopes_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    monkeypatch.setenv("TUITION_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    get_settings.cache_clear()
    try:
        assert runner.invoke(cli, ["migrate"]).exit_code == 0
        made = runner.invoke(
            cli,
            ["keys", "create", "--name", "shop", "--scope", "orders_payments", "--scope", "read"],
        )
        assert made.exit_code == 0, made.output
        assert "scopes: orders_payments, read" in " ".join(made.output.split())
        bad = runner.invoke(cli, ["keys", "create", "--scope", "everything"])
        assert bad.exit_code == 1
        assert "not a scope" in bad.output
        listed = runner.invoke(cli, ["keys", "list"], env={"COLUMNS": "250"})
        assert listed.exit_code == 0
    finally:
        get_settings.cache_clear()
