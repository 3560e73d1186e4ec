"""Subscriptions over the API: subscribe, first-period price, trial, cancel, resume, change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.integration.shop import post
from tests.integration.subscription_shop import (
    events,
    get_sub,
    has_access,
    mark_paid,
    pay_through_gateway,
    renew,
    subscribe,
)
from tuition.clock import FrozenClock
from tuition.services.ledger import verify_ledger
from tuition.simulator.app import Simulator
from tuition.store.uow import UnitOfWork


async def _premium(client: httpx.AsyncClient, shop: dict[str, str]) -> str:
    body = {
        "creator_id": shop["creator"],
        "title": "Premium",
        "kind": "membership",
        "period": "month",
        "prices": {"CNY": 6999},
    }
    return str((await post(client, "/v1/products", body))["id"])


async def test_subscribing_raises_the_first_order_and_paying_it_makes_the_subscription_active(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    await client.put(f"/v1/products/{shop['monthly']}/access_scope", json={"everything": True})
    sub = await subscribe(client, shop["monthly"])
    assert sub["status"] == "active"
    assert sub["current_period_end"] is None
    order = sub["latest_order"]
    assert order["total"] == 3000
    assert order["checkout_url"].startswith("http")
    assert order["metadata"] == {"subscription_id": sub["id"]}
    assert (await has_access(client, shop["c1"]))["has_access"] is False

    await pay_through_gateway(client, gateway, order["id"])

    fetched = await get_sub(client, sub["id"])
    assert fetched["status"] == "active"
    assert fetched["current_period_start"].startswith("2026-11-01T09:00:00")
    assert fetched["current_period_end"].startswith("2026-12-01T09:00:00")
    assert [(o["kind"], o["status"], o["period_index"]) for o in fetched["orders"]] == [
        ("first", "paid", 1)
    ]
    access = await has_access(client, shop["c1"])
    assert (access["has_access"], access["via_membership"]) == (True, shop["monthly"])
    assert [t for t, _ in await events(uow)] == ["subscription.created"]
    report = await verify_ledger(uow)
    assert report.ok, report.problems


async def test_a_second_live_subscription_to_the_same_membership_is_refused(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork
) -> None:
    first = await subscribe(client, shop["monthly"])
    again = await client.post(
        "/v1/subscriptions",
        json={
            "customer_id": "u_1",
            "product_id": shop["monthly"],
            "channel": "sandbox",
            "method": "page",
            "auto_renew": False,
        },
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "subscription_exists"
    listed = (await client.get("/v1/subscriptions", params={"customer_id": "u_1"})).json()
    assert [s["id"] for s in listed["data"]] == [first["id"]]
    # The refused subscription's order was cancelled: nobody can pay it.
    orders = (await client.get("/v1/orders", params={"customer_id": "u_1"})).json()["data"]
    assert sorted(o["status"] for o in orders) == ["cancelled", "pending_payment"]


async def test_bad_subscription_requests_name_the_field(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    base = {"customer_id": "u_1", "channel": "sandbox", "method": "page", "auto_renew": True}
    course = await client.post("/v1/subscriptions", json={**base, "product_id": shop["c1"]})
    assert course.status_code == 400
    assert course.json()["error"]["code"] == "not_a_membership"
    assert course.json()["error"]["param"] == "product_id"
    channel = await client.post(
        "/v1/subscriptions", json={**base, "product_id": shop["monthly"], "channel": "nope"}
    )
    assert channel.json()["error"]["param"] == "channel"
    trial = await client.post(
        "/v1/subscriptions", json={**base, "product_id": shop["monthly"], "trial_days": -1}
    )
    assert trial.status_code == 422
    missing = await client.get("/v1/subscriptions/sub_nope")
    assert missing.status_code == 404
    status = await client.get("/v1/subscriptions", params={"status": "paused"})
    assert status.status_code == 422


async def test_the_first_period_price_applies_to_the_first_order_only(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    plan = await client.put(
        f"/v1/products/{shop['monthly']}/subscription_plan",
        json={"first_period_prices": {"CNY": 990}},
    )
    assert plan.status_code == 200, plan.text
    too_high = await client.put(
        f"/v1/products/{shop['monthly']}/subscription_plan",
        json={"first_period_prices": {"CNY": 3000}},
    )
    assert too_high.json()["error"]["param"] == "first_period_prices.CNY"

    sub = await subscribe(client, shop["monthly"])
    assert sub["latest_order"]["total"] == 990
    await mark_paid(uow, sub["latest_order"]["id"], clock)
    clock.set(datetime(2026, 11, 28, 9, tzinfo=UTC))  # three days before the end
    run = await renew(uow, clock)
    assert run.prepared == [sub["id"]]
    renewal = [o for o in (await get_sub(client, sub["id"]))["orders"] if o["kind"] == "renewal"]
    assert [o["amount"] for o in renewal] == [3000]


async def test_a_trial_gives_access_then_the_first_charge_starts_at_its_end(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    await client.put(f"/v1/products/{shop['monthly']}/access_scope", json={"everything": True})
    sub = await subscribe(client, shop["monthly"], trial_days=7)
    assert sub["status"] == "trialing"
    assert sub["latest_order"] is None
    assert sub["trial_ends_at"].startswith("2026-11-08T09:00:00")
    access = await has_access(client, shop["c2"])
    assert (access["has_access"], access["via_subscription"]) == (True, sub["id"])

    clock.set(datetime(2026, 11, 5, 9, tzinfo=UTC))  # the trial ends in three days
    run = await renew(uow, clock)
    assert run.prepared == [sub["id"]]
    upcoming = [d for t, d in await events(uow) if t == "subscription.renewal_upcoming"]
    assert len(upcoming) == 1
    assert upcoming[0]["amount"] == 3000
    assert upcoming[0]["checkout_url"] == f"http://tuition.test/pay/{upcoming[0]['order_id']}"

    await mark_paid(uow, upcoming[0]["order_id"], clock)
    paid = await get_sub(client, sub["id"])
    assert paid["status"] == "active"
    # Paid during the trial: the paid month starts when the trial ends.
    assert paid["current_period_start"].startswith("2026-11-08T09:00:00")
    assert paid["current_period_end"].startswith("2026-12-08T09:00:00")
    assert "subscription.renewed" in [t for t, _ in await events(uow)]

    clock.set(datetime(2026, 12, 8, 8, tzinfo=UTC))
    assert (await has_access(client, shop["c2"]))["has_access"] is True


async def test_cancel_at_period_end_keeps_access_renews_nothing_and_ends_with_the_period(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    sub = await subscribe(client, shop["monthly"])
    await mark_paid(uow, sub["latest_order"]["id"], clock)
    cancel = await client.post(
        f"/v1/subscriptions/{sub['id']}/cancel", json={"at_period_end": True}
    )
    assert cancel.json()["status"] == "active"
    assert cancel.json()["cancel_at_period_end"] is True
    resumed = await client.post(f"/v1/subscriptions/{sub['id']}/resume")
    assert resumed.json()["cancel_at_period_end"] is False
    await client.post(f"/v1/subscriptions/{sub['id']}/cancel", json={"at_period_end": True})

    clock.set(datetime(2026, 11, 29, tzinfo=UTC))
    assert (await renew(uow, clock)).prepared == []
    assert (await has_access(client, shop["monthly"]))["has_access"] is True
    clock.set(datetime(2026, 12, 1, 9, 0, 1, tzinfo=UTC))
    run = await renew(uow, clock)
    assert run.canceled == [sub["id"]]
    ended = await get_sub(client, sub["id"])
    assert ended["status"] == "canceled"
    assert (await has_access(client, shop["monthly"]))["has_access"] is False
    assert [t for t, _ in await events(uow)][-1] == "subscription.canceled"
    again = await client.post(f"/v1/subscriptions/{sub['id']}/resume")
    assert again.status_code == 409


async def test_cancelling_now_ends_access_at_once(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    sub = await subscribe(client, shop["monthly"])
    await mark_paid(uow, sub["latest_order"]["id"], clock)
    clock.advance(timedelta(days=2))
    cancel = await client.post(
        f"/v1/subscriptions/{sub['id']}/cancel", json={"at_period_end": False}
    )
    assert cancel.json()["status"] == "canceled"
    assert (await has_access(client, shop["monthly"]))["has_access"] is False
    twice = await client.post(
        f"/v1/subscriptions/{sub['id']}/cancel", json={"at_period_end": False}
    )
    assert twice.status_code == 409
    assert twice.json()["error"]["code"] == "illegal_transition"


async def test_an_upgrade_is_prorated_to_the_second_and_shown_before_it_is_confirmed(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    premium = await _premium(client, shop)
    sub = await subscribe(client, shop["monthly"])
    await mark_paid(uow, sub["latest_order"]["id"], clock)  # 11-01 09:00, 30.00 to 12-01
    clock.set(datetime(2026, 11, 11, 9, 0, 7, tzinfo=UTC))
    preview = await client.post(
        f"/v1/subscriptions/{sub['id']}/change", json={"product_id": premium}
    )
    assert preview.status_code == 200, preview.text
    # Period 30 days = 2,592,000 s; unused 12-01 09:00 - 11-11 09:00:07 = 1,727,993 s.
    # credit 3000 x 1727993 / 2592000 = 1999.9919 -> 2000
    # charge 6999 x 1727993 / 2592000 = 4665.9811 -> 4666; due 4666 - 2000 = 2666.
    assert preview.json()["status"] == "preview"
    assert preview.json()["proration"] == {
        "period_seconds": 2_592_000,
        "unused_seconds": 1_727_993,
        "credit": 2000,
        "charge": 4666,
        "amount_due": 2666,
        "carried_credit": 0,
    }
    assert (await get_sub(client, sub["id"]))["product_id"] == shop["monthly"]

    confirmed = await client.post(
        f"/v1/subscriptions/{sub['id']}/change", json={"product_id": premium, "confirm": True}
    )
    assert confirmed.json()["status"] == "pending_payment"
    order = confirmed.json()["order"]
    assert order["total"] == 2666
    await mark_paid(uow, order["id"], clock)

    changed = await get_sub(client, sub["id"])
    assert changed["product_id"] == premium
    assert changed["current_period_end"].startswith("2026-12-01T09:00:00")
    premium_access = await has_access(client, premium)
    assert premium_access["has_access"] is True
    assert premium_access["expires_at"].startswith("2026-12-01T09:00:00")
    assert (await has_access(client, shop["monthly"]))["has_access"] is False


async def test_a_downgrade_switches_at_once_and_carries_the_credit_to_the_renewal(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    premium = await _premium(client, shop)
    sub = await subscribe(client, premium)
    await mark_paid(uow, sub["latest_order"]["id"], clock)  # 69.99 for 11-01 to 12-01
    clock.set(datetime(2026, 11, 21, 9, tzinfo=UTC))
    confirmed = await client.post(
        f"/v1/subscriptions/{sub['id']}/change",
        json={"product_id": shop["monthly"], "confirm": True},
    )
    # 10 of 30 days unused: credit 6999 / 3 = 2333, charge 3000 / 3 = 1000, carry 1333.
    body = confirmed.json()
    assert body["status"] == "changed"
    assert body["proration"]["credit"] == 2333
    assert body["proration"]["charge"] == 1000
    assert body["proration"]["carried_credit"] == 1333
    assert body["subscription"]["product_id"] == shop["monthly"]
    assert body["subscription"]["credit_balance"] == 1333
    assert (await has_access(client, premium))["has_access"] is False
    lower = await has_access(client, shop["monthly"])
    assert lower["has_access"] is True
    assert lower["expires_at"].startswith("2026-12-01T09:00:00")

    clock.set(datetime(2026, 11, 28, 9, tzinfo=UTC))
    await renew(uow, clock)
    renewed = await get_sub(client, sub["id"])
    assert renewed["credit_balance"] == 0
    assert [o["amount"] for o in renewed["orders"] if o["kind"] == "renewal"] == [3000 - 1333]


async def test_a_plan_change_is_refused_without_a_paid_period(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    premium = await _premium(client, shop)
    sub = await subscribe(client, shop["monthly"])
    refused = await client.post(
        f"/v1/subscriptions/{sub['id']}/change", json={"product_id": premium}
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "not_changeable"


async def test_refunding_the_paid_period_ends_the_access_it_bought(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    from tuition.services.entitlements import revoke_for_refund

    await client.put(f"/v1/products/{shop['monthly']}/access_scope", json={"everything": True})
    sub = await subscribe(client, shop["monthly"])
    await mark_paid(uow, sub["latest_order"]["id"], clock)
    assert (await has_access(client, shop["c1"]))["has_access"] is True
    async with uow:
        await revoke_for_refund(uow, sub["latest_order"]["id"], line_index=None, at=clock.now())
        await uow.commit()
    assert (await has_access(client, shop["c1"]))["has_access"] is False
    assert (await has_access(client, shop["monthly"]))["has_access"] is False


async def test_a_subscribe_request_sent_twice_with_its_key_makes_one_subscription(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    body = {
        "customer_id": "u_1",
        "product_id": shop["monthly"],
        "channel": "sandbox",
        "method": "page",
        "auto_renew": False,
    }
    first = await client.post("/v1/subscriptions", json=body, headers={"Idempotency-Key": "s-1"})
    again = await client.post("/v1/subscriptions", json=body, headers={"Idempotency-Key": "s-1"})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["latest_order"]["id"] == first.json()["latest_order"]["id"]
    orders = (await client.get("/v1/orders", params={"customer_id": "u_1"})).json()["data"]
    assert len(orders) == 1
