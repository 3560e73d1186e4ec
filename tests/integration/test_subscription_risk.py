"""Subscription orders are assessed by risk control when raised, on both engines: the
first order and each renewal, as any order (a review holds it, a block refuses it)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import func, select

from tests.integration.subscription_shop import events, get_sub, mark_paid, renewal_deps, subscribe
from tuition.clock import FrozenClock
from tuition.domain.risk import RiskPolicy
from tuition.services.renewals import run_renewals
from tuition.simulator.app import Simulator
from tuition.store.tables import orders, risk_attempts, subscription_orders, subscriptions
from tuition.store.uow import UnitOfWork

RENEWAL_DUE = datetime(2026, 11, 28, 9, tzinfo=UTC)
PERIOD_END = datetime(2026, 12, 1, 9, tzinfo=UTC)


async def _rule(client: httpx.AsyncClient, kind: str, params: dict[str, Any], action: str) -> None:
    body = {"name": kind, "kind": kind, "params": params, "action": action, "stages": ["order"]}
    made = await client.post("/v1/risk/rules", json=body)
    assert made.status_code == 201, made.text


async def _count(uow: UnitOfWork, table: Any) -> int:
    async with uow:
        return int((await uow.conn.execute(select(func.count()).select_from(table))).scalar_one())


async def _renew(uow: UnitOfWork, clock: FrozenClock) -> Any:
    deps = renewal_deps(clock)
    return await run_renewals(
        uow, deps=replace(deps, orders=replace(deps.orders, risk=RiskPolicy()))
    )


async def _paid_subscription(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> dict[str, Any]:
    sub = await subscribe(client, shop["monthly"])
    await mark_paid(uow, sub["latest_order"]["id"], clock)
    return sub


async def test_a_first_order_under_review_is_held_until_approved(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator
) -> None:
    await _rule(client, "amount_threshold", {"amounts": {"CNY": "10.00"}}, "review")
    sub = await subscribe(client, shop["monthly"])  # 30.00 CNY a month
    order_id = sub["latest_order"]["id"]
    risk = (await client.get(f"/v1/orders/{order_id}")).json()["risk"]
    assert risk["decision"] == "review"
    [review] = (await client.get("/v1/risk/reviews")).json()["data"]
    assert review["order_id"] == order_id
    held = await client.post(
        f"/v1/orders/{order_id}/payments", json={"channel": "sandbox", "method": "page"}
    )
    assert held.status_code == 409, held.text
    assert held.json()["error"]["code"] == "risk_review_pending"
    approved = await client.post(f"/v1/risk/reviews/{review['id']}/approve", json={})
    assert approved.status_code == 200, approved.text
    paid = await client.post(
        f"/v1/orders/{order_id}/payments", json={"channel": "sandbox", "method": "page"}
    )
    assert paid.status_code == 201, paid.text


async def test_a_blocked_first_order_refuses_the_subscription_and_is_audited(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork
) -> None:
    await _rule(client, "blocklist", {"field": "customer", "values": ["u_1"]}, "block")
    refused = await client.post(
        "/v1/subscriptions",
        json={
            "customer_id": "u_1",
            "product_id": shop["monthly"],
            "channel": "sandbox",
            "method": "page",
            "auto_renew": False,
        },
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "risk_blocked"
    assert (await _count(uow, subscriptions), await _count(uow, orders)) == (0, 0)
    assert await _count(uow, risk_attempts) == 1


async def test_a_renewal_order_is_assessed_when_raised_and_a_review_holds_it(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    sub = await _paid_subscription(client, shop, uow, clock)
    await _rule(client, "amount_threshold", {"amounts": {"CNY": "10.00"}}, "review")
    clock.set(RENEWAL_DUE)
    assert (await _renew(uow, clock)).prepared == [sub["id"]]
    [(_, upcoming)] = [e for e in await events(uow) if e[0] == "subscription.renewal_upcoming"]
    renewal = (await client.get(f"/v1/orders/{upcoming['order_id']}")).json()
    assert renewal["risk"]["decision"] == "review"
    [review] = (await client.get("/v1/risk/reviews", params={"status": "open"})).json()["data"]
    assert review["order_id"] == renewal["id"]
    held = await client.post(
        f"/v1/orders/{renewal['id']}/payments", json={"channel": "sandbox", "method": "page"}
    )
    assert held.json()["error"]["code"] == "risk_review_pending"


async def test_a_blocked_renewal_raises_no_order_and_ends_the_subscription_with_its_period(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    sub = await _paid_subscription(client, shop, uow, clock)
    await _rule(client, "blocklist", {"field": "customer", "values": ["u_1"]}, "block")
    clock.set(RENEWAL_DUE)
    assert (await _renew(uow, clock)).prepared == []
    assert await _count(uow, subscription_orders) == 1  # the first order's only
    assert await _count(uow, risk_attempts) == 1
    [(_, blocked)] = [e for e in await events(uow) if e[0] == "subscription.renewal_blocked"]
    assert blocked["risk"]["decision"] == "block"
    assert blocked["risk"]["reasons"][0]["kind"] == "blocklist"
    assert (await get_sub(client, sub["id"]))["cancel_at_period_end"] is True
    # The next pass does not try again (no second attempt, no order).
    assert (await _renew(uow, clock)).prepared == []
    assert await _count(uow, risk_attempts) == 1
    clock.set(PERIOD_END)
    assert (await _renew(uow, clock)).canceled == [sub["id"]]
    assert (await get_sub(client, sub["id"]))["status"] == "canceled"
    assert await _count(uow, subscription_orders) == 1
