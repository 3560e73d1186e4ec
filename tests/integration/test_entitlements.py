"""mark_order_paid and entitlements: granted once with payment, revoked with refunds."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from tests.integration.shop import order_body, post
from tuition.clock import FrozenClock
from tuition.domain.errors import IllegalTransition
from tuition.services.entitlements import revoke_for_refund
from tuition.services.orders import expire_order, mark_order_paid
from tuition.store.tables import entitlements
from tuition.store.uow import UnitOfWork


async def _pay(uow: UnitOfWork, order_id: str, at: datetime) -> bool:
    async with uow:
        moved = await mark_order_paid(uow, order_id, at=at)
        await uow.commit()
    return moved


async def _grant_count(uow: UnitOfWork, order_id: str) -> int:
    async with uow:
        return int(
            (
                await uow.conn.execute(
                    select(func.count()).where(entitlements.c.order_id == order_id)
                )
            ).scalar_one()
        )


async def test_paying_an_order_grants_bundle_components_and_membership_until_period_end(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "bundle", "monthly", "coins"))
    paid_at = datetime(2026, 1, 31, 12, tzinfo=UTC)
    clock.set(paid_at)
    assert await _pay(uow, order["id"], paid_at)

    fetched = (await client.get(f"/v1/orders/{order['id']}")).json()
    assert fetched["status"] == "paid"
    granted = (await client.get("/v1/customers/u_1/entitlements")).json()["data"]
    by_product = {g["product_id"]: g for g in granted}
    assert set(by_product) == {shop["c1"], shop["c2"], shop["c3"], shop["monthly"]}
    assert by_product[shop["c1"]]["source_product_id"] == shop["bundle"]
    assert by_product[shop["c1"]]["expires_at"] is None
    assert by_product[shop["monthly"]]["expires_at"].startswith("2026-02-28T12:00:00")

    access = (await client.get(f"/v1/customers/u_1/entitlements/{shop['c2']}")).json()
    assert access["has_access"] is True
    assert access["expires_at"] is None
    none = (await client.get(f"/v1/customers/u_1/entitlements/{shop['sale']}")).json()
    assert none["has_access"] is False


async def test_marking_paid_twice_grants_once(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "bundle"))
    assert await _pay(uow, order["id"], clock.now()) is True
    assert await _pay(uow, order["id"], clock.now()) is False
    assert await _grant_count(uow, order["id"]) == 3


async def test_racing_payments_move_the_order_once(
    client: httpx.AsyncClient, shop: dict[str, str], engine: object, clock: FrozenClock
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "bundle"))
    results = await asyncio.gather(
        *(_pay(UnitOfWork(engine), order["id"], clock.now()) for _ in range(6))  # type: ignore[arg-type]
    )
    assert sorted(results) == [False] * 5 + [True]
    assert await _grant_count(UnitOfWork(engine), order["id"]) == 3  # type: ignore[arg-type]


async def test_an_expired_or_cancelled_order_cannot_be_marked_paid(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    clock.advance(timedelta(minutes=16))
    expired = await expire_order(uow, order["id"], clock=clock)
    assert expired.status == "expired"
    with pytest.raises(IllegalTransition, match="expired to paid"):
        await _pay(uow, order["id"], clock.now())
    assert await _grant_count(uow, order["id"]) == 0


async def test_an_order_is_not_expired_before_its_time(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    with pytest.raises(Exception, match="does not expire until"):
        await expire_order(uow, order["id"], clock=clock)


async def test_expiry_releases_the_coupon_use(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    await post(
        client,
        "/v1/coupons",
        {"code": "LAST", "kind": "percent", "percent_off": "0.5", "max_redemptions": 1},
    )
    order = await post(client, "/v1/orders", order_body(shop, "c1", coupon_code="LAST"))
    clock.advance(timedelta(minutes=15))
    await expire_order(uow, order["id"], clock=clock)
    assert (await client.get("/v1/coupons/LAST")).json()["times_redeemed"] == 0


async def test_an_owned_course_cannot_be_bought_again_but_a_membership_can(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    first = await post(client, "/v1/orders", order_body(shop, "bundle", "monthly"))
    await _pay(uow, first["id"], clock.now())
    again = await client.post("/v1/orders", json=order_body(shop, "c2"))
    assert again.status_code == 409
    assert again.json()["error"] == {
        "type": "conflict_error",
        "code": "already_entitled",
        "message": f"customer u_1 already has access to {shop['c2']}",
        "param": "items[0].product_id",
    }
    bundle_again = await client.post("/v1/orders", json=order_body(shop, "bundle"))
    assert bundle_again.json()["error"]["code"] == "already_entitled"
    renewal = await client.post("/v1/orders", json=order_body(shop, "monthly"))
    assert renewal.status_code == 201


async def test_a_refund_revokes_access_to_the_refunded_line(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1", "bundle"))
    await _pay(uow, order["id"], clock.now())
    async with uow:
        assert len(await revoke_for_refund(uow, order["id"], line_index=1, at=clock.now())) == 3
        await uow.commit()
    active = (await client.get("/v1/customers/u_1/entitlements")).json()["data"]
    assert [g["product_id"] for g in active] == [shop["c1"]]
    everything = await client.get(
        "/v1/customers/u_1/entitlements", params={"include_inactive": "true"}
    )
    assert len(everything.json()["data"]) == 4
    # Bought alone again after the refund: allowed, the old grant is gone.
    assert (await client.post("/v1/orders", json=order_body(shop, "c2"))).status_code == 201


async def test_membership_access_ends_with_its_period(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "monthly"))
    await _pay(uow, order["id"], clock.now())
    url = f"/v1/customers/u_1/entitlements/{shop['monthly']}"
    assert (await client.get(url)).json()["has_access"] is True
    clock.advance(timedelta(days=31))
    assert (await client.get(url)).json()["has_access"] is False
