"""Memberships: access through a scope, member prices, extension from the current end."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.shop import order_body, post
from tuition.clock import FrozenClock
from tuition.services.orders import mark_order_paid
from tuition.store.uow import UnitOfWork


async def _buy(
    client: httpx.AsyncClient, uow: UnitOfWork, shop: dict[str, str], *names: str, at: datetime
) -> dict[str, Any]:
    order = await post(client, "/v1/orders", order_body(shop, *names))
    async with uow:
        assert await mark_order_paid(uow, order["id"], at=at)
        await uow.commit()
    return order


async def _access(client: httpx.AsyncClient, product_id: str, customer: str = "u_1") -> Any:
    response = await client.get(f"/v1/customers/{customer}/entitlements/{product_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def _membership_end(client: httpx.AsyncClient, membership_id: str) -> str:
    access = await _access(client, membership_id)
    assert access["has_access"] is True
    return str(access["expires_at"])


async def test_a_membership_covering_everything_unlocks_every_course_and_says_through_which(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    scope = await client.put(
        f"/v1/products/{shop['monthly']}/access_scope", json={"everything": True}
    )
    assert scope.status_code == 200, scope.text
    assert (await _access(client, shop["c1"]))["has_access"] is False
    await _buy(client, uow, shop, "monthly", at=clock.now())

    access = await _access(client, shop["c1"])
    assert access["has_access"] is True
    assert access["via_membership"] == shop["monthly"]
    assert access["expires_at"].startswith("2026-12-01T09:00:00")
    assert (await _access(client, shop["bundle"]))["has_access"] is True
    # Money is never in a scope, and nobody else holds the membership.
    assert (await _access(client, shop["coins"]))["has_access"] is False
    assert (await _access(client, shop["c1"], customer="u_2"))["has_access"] is False

    clock.set(datetime(2026, 12, 1, 9, 0, 1, tzinfo=UTC))
    assert (await _access(client, shop["c1"]))["has_access"] is False


async def test_a_scope_by_creator_or_kind_covers_only_those_products(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    other = await post(client, "/v1/creators", {"name": "Bo", "default_revenue_share": "0.5"})
    theirs = await post(
        client,
        "/v1/products",
        {"creator_id": other["id"], "title": "Bo's", "kind": "course", "prices": {"CNY": 500}},
    )
    essay = await post(
        client,
        "/v1/products",
        {"creator_id": other["id"], "title": "Essay", "kind": "article", "prices": {"CNY": 300}},
    )
    put = await client.put(
        f"/v1/products/{shop['monthly']}/access_scope",
        json={"creator_ids": [shop["creator"]], "kinds": ["article"]},
    )
    assert put.json()["creator_ids"] == [shop["creator"]]
    await _buy(client, uow, shop, "monthly", at=clock.now())

    assert (await _access(client, shop["c2"]))["has_access"] is True  # Ada's course
    assert (await _access(client, essay["id"]))["has_access"] is True  # any article
    assert (await _access(client, theirs["id"]))["has_access"] is False  # Bo's course


async def test_a_listed_set_covers_products_added_to_it_later(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    await client.put(
        f"/v1/products/{shop['monthly']}/access_scope", json={"product_ids": [shop["c1"]]}
    )
    await _buy(client, uow, shop, "monthly", at=clock.now())
    assert (await _access(client, shop["c1"]))["has_access"] is True
    assert (await _access(client, shop["c3"]))["has_access"] is False

    added = await client.post(
        f"/v1/products/{shop['monthly']}/access_scope/products", json={"add": [shop["c3"]]}
    )
    assert added.json()["product_ids"] == sorted([shop["c1"], shop["c3"]])
    assert (await _access(client, shop["c3"]))["has_access"] is True

    await client.post(
        f"/v1/products/{shop['monthly']}/access_scope/products", json={"remove": [shop["c1"]]}
    )
    assert (await _access(client, shop["c1"]))["has_access"] is False


async def test_a_scope_is_refused_with_the_field_named(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    not_membership = await client.put(
        f"/v1/products/{shop['c1']}/access_scope", json={"everything": True}
    )
    assert not_membership.status_code == 422
    assert not_membership.json()["error"]["code"] == "not_a_membership"
    topups = await client.put(
        f"/v1/products/{shop['monthly']}/access_scope", json={"kinds": ["topup"]}
    )
    assert topups.json()["error"] == {
        "type": "invalid_request_error",
        "code": "kind_not_scopable",
        "message": "a membership cannot unlock topup products",
        "param": "kinds",
    }
    unknown = await client.put(
        f"/v1/products/{shop['monthly']}/access_scope",
        json={"product_ids": [shop["c1"], "prod_nope"]},
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["param"] == "product_ids[1]"
    missing = await client.put("/v1/products/prod_missing/access_scope", json={})
    assert missing.status_code == 404


async def test_renewing_while_active_extends_from_the_current_end(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    # Bought 11-01 monthly and renewed 11-15: ends 01-01, not 12-15.
    await _buy(client, uow, shop, "monthly", at=clock.now())
    clock.set(datetime(2026, 11, 15, 18, tzinfo=UTC))
    await _buy(client, uow, shop, "monthly", at=clock.now())
    assert (await _membership_end(client, shop["monthly"])).startswith("2027-01-01T09:00:00")


async def test_extension_clamps_to_the_end_of_a_shorter_month(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    clock.set(datetime(2027, 12, 31, 8, tzinfo=UTC))
    await _buy(client, uow, shop, "monthly", at=clock.now())
    assert (await _membership_end(client, shop["monthly"])).startswith("2028-01-31T08:00:00")
    clock.set(datetime(2028, 1, 20, tzinfo=UTC))
    await _buy(client, uow, shop, "monthly", at=clock.now())
    # 2028 is a leap year: Jan 31 + 1 month = Feb 29.
    assert (await _membership_end(client, shop["monthly"])).startswith("2028-02-29T08:00:00")


async def test_buying_after_the_membership_ended_starts_from_now(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    await _buy(client, uow, shop, "monthly", at=clock.now())
    clock.set(datetime(2026, 12, 20, 10, tzinfo=UTC))
    await _buy(client, uow, shop, "monthly", at=clock.now())
    assert (await _membership_end(client, shop["monthly"])).startswith("2027-01-20T10:00:00")


async def test_a_member_price_applies_to_holders_only(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    put = await client.put(
        f"/v1/products/{shop['c1']}/member_prices/{shop['monthly']}", json={"percent_off": "0.2"}
    )
    assert put.status_code == 200, put.text
    fixed = await client.put(
        f"/v1/products/{shop['c2']}/member_prices/{shop['monthly']}",
        json={"amounts": {"CNY": 9900}},
    )
    assert fixed.json()["amounts"] == {"CNY": 9900}

    stranger = await post(client, "/v1/orders", order_body(shop, "c1", customer_id="u_2"))
    assert stranger["total"] == 9900
    await _buy(client, uow, shop, "monthly", at=clock.now())
    member = await post(client, "/v1/orders", order_body(shop, "c1", "c2"))
    assert [line["total"] for line in member["lines"]] == [9900 - 1980, 9900]
    assert member["total"] == 7920 + 9900

    clock.advance(timedelta(days=31))  # the membership has ended
    lapsed = await post(client, "/v1/orders", order_body(shop, "c1"))
    assert lapsed["total"] == 9900


async def test_a_member_price_never_beats_a_lower_running_promotion(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    # "sale" lists at 20000 with 15 % off running: 17000; a 10 % member cut would be 18000.
    await client.put(
        f"/v1/products/{shop['sale']}/member_prices/{shop['monthly']}", json={"percent_off": "0.1"}
    )
    await _buy(client, uow, shop, "monthly", at=clock.now())
    order = await post(client, "/v1/orders", order_body(shop, "sale"))
    assert order["total"] == 17000


async def test_a_member_price_is_refused_with_the_field_named(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    both = await client.put(
        f"/v1/products/{shop['c1']}/member_prices/{shop['monthly']}",
        json={"percent_off": "0.2", "amounts": {"CNY": 100}},
    )
    assert both.status_code == 422
    assert both.json()["error"]["code"] == "member_price_ambiguous"
    not_membership = await client.put(
        f"/v1/products/{shop['c1']}/member_prices/{shop['c2']}", json={"percent_off": "0.2"}
    )
    assert not_membership.json()["error"]["param"] == "membership_id"
    over = await client.put(
        f"/v1/products/{shop['c1']}/member_prices/{shop['monthly']}", json={"percent_off": "1.5"}
    )
    assert over.json()["error"]["param"] == "percent_off"


@pytest.mark.postgres_only
async def test_two_purchases_paid_at_once_both_extend_the_membership(
    client: httpx.AsyncClient, shop: dict[str, str], engine: AsyncEngine, clock: FrozenClock
) -> None:
    orders = [await post(client, "/v1/orders", order_body(shop, "monthly")) for _ in range(3)]

    async def pay(order_id: str) -> None:
        uow = UnitOfWork(engine)
        async with uow:
            assert await mark_order_paid(uow, order_id, at=clock.now())
            await uow.commit()

    await asyncio.gather(*(pay(o["id"]) for o in orders))
    # Three months from 11-01, one after the other: none was lost to the race.
    assert (await _membership_end(client, shop["monthly"])).startswith("2027-02-01T09:00:00")
