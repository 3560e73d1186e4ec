"""Risk control over HTTP, on both engines: each rule kind, the seed's score, reviews,
blocks that leave only their audit row, and velocity exact under concurrency."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from tests.integration.shop import order_body, post
from tuition.clock import FrozenClock
from tuition.simulator.app import Simulator
from tuition.store.tables import (
    audit_events,
    entitlements,
    orders,
    outbox_events,
    payments,
    refunds,
    risk_attempts,
    risk_counters,
    risk_decisions,
    risk_reviews,
    risk_rules,
)
from tuition.store.uow import UnitOfWork


async def _rule(
    client: httpx.AsyncClient, kind: str, params: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return await post(
        client, "/v1/risk/rules", {"name": kind, "kind": kind, "params": params, **extra}
    )


async def _count(uow: UnitOfWork, table: Any, *where: Any) -> int:
    async with uow:
        stmt = select(func.count()).select_from(table).where(*where)
        return int((await uow.conn.execute(stmt)).scalar_one())


async def _events(uow: UnitOfWork) -> list[str]:
    async with uow:
        rows = await uow.conn.execute(select(outbox_events.c.type).order_by(outbox_events.c.id))
        return [r[0] for r in rows if r[0].startswith("risk.")]


async def _refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


async def _big(client: httpx.AsyncClient, shop: dict[str, str], amount: int) -> str:
    body = {
        "creator_id": shop["creator"],
        "title": "big",
        "kind": "consultation",
        "prices": {"CNY": amount},
    }
    return str((await post(client, "/v1/products", body))["id"])


def _order(product: str, customer: str = "u_1", **extra: Any) -> dict[str, Any]:
    return {"customer_id": customer, "currency": "CNY", "items": [{"product_id": product}], **extra}


# --- rules as data ------------------------------------------------------------------------


async def test_rules_are_data_with_exact_major_unit_thresholds(
    client: httpx.AsyncClient, uow: UnitOfWork
) -> None:
    made = await _rule(
        client, "amount_threshold", {"amounts": {"CNY": "5000.00", "JPY": "70000"}}, action="review"
    )
    assert made["params"] == {"amounts": {"CNY": "5000.00", "JPY": "70000"}}
    assert made["stages"] == ["order", "payment", "refund"]
    async with uow:
        stored = (await uow.conn.execute(select(risk_rules.c.params))).scalar_one()
    assert stored == {"amounts": {"CNY": 500000, "JPY": 70000}}  # minor units, exact

    replaced = await client.put(
        f"/v1/risk/rules/{made['id']}",
        json={
            "name": "big",
            "kind": "amount_threshold",
            "params": {"amounts": {"CNY": "0.01"}},
            "active": False,
        },
    )
    assert replaced.status_code == 200, replaced.text
    assert (replaced.json()["params"], replaced.json()["active"]) == (
        {"amounts": {"CNY": "0.01"}},
        False,
    )
    listed = (await client.get("/v1/risk/rules")).json()["data"]
    assert [r["id"] for r in listed] == [made["id"]]


@pytest.mark.parametrize(
    ("kind", "params", "extra", "param"),
    [
        ("amount_threshold", {"amounts": {"CNY": "1.234"}}, {}, "params.amounts.CNY"),
        ("amount_threshold", {"amounts": {"CNY": 100}}, {}, "params.amounts.CNY"),
        ("amount_threshold", {"amounts": {"cny": "1"}}, {}, "params.amounts.cny"),
        ("velocity", {"window_seconds": 60, "max": 1}, {}, "params.key"),
        ("velocity", {"key": "ip", "window_seconds": 5, "max": 1}, {}, "params.window_seconds"),
        (
            "velocity",
            {"key": "ip", "window_seconds": 60, "max": 1, "event": "failed_payments"},
            {},
            "params.key",
        ),
        (
            "velocity",
            {"key": "ip", "window_seconds": 60, "max": 1, "event": "refunds"},
            {},
            "params.event",
        ),
        (
            "coupon_guessing",
            {"key": "ip", "window_seconds": 60, "max": 3},
            {"stages": ["refund"]},
            "stages[0]",
        ),
        ("blocklist", {"field": "email", "values": []}, {}, "params.field"),
        ("amount_score", {"coefficient": 0.2, "threshold": "90"}, {}, "params.coefficient"),
        ("amount_score", {"coefficient": "0.2", "threshold": "90", "x": 1}, {}, "params.x"),
        ("amount_score", {"coefficient": "0.2", "threshold": "90"}, {"score": "-1"}, "score"),
    ],
)
async def test_bad_rules_are_refused_naming_the_field(
    client: httpx.AsyncClient,
    uow: UnitOfWork,
    kind: str,
    params: dict[str, Any],
    extra: dict[str, Any],
    param: str,
) -> None:
    response = await client.post(
        "/v1/risk/rules", json={"name": "x", "kind": kind, "params": params, **extra}
    )
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["param"] == param, response.text
    assert await _count(uow, risk_rules) == 0


# --- the seed's score -----------------------------------------------------------------


async def test_the_seeds_score_500_times_0_2_is_100_above_90_and_reviews(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    await _rule(client, "amount_score", {"coefficient": "0.2", "threshold": "90"}, action="review")
    high = await post(client, "/v1/orders", _order(await _big(client, shop, 50000)))
    risk = high["risk"]
    assert risk["decision"] == "review"
    assert Decimal(risk["score"]) == Decimal(100)
    [reason] = risk["reasons"]
    assert reason["kind"] == "amount_score"
    assert "> 90" in reason["detail"]
    assert (await client.get(f"/v1/orders/{high['id']}")).json()["risk"] == risk

    low = await post(client, "/v1/orders", _order(await _big(client, shop, 45000), "u_2"))
    assert low["risk"] == {"score": "0", "decision": "allow", "reasons": []}  # 90 is not > 90


async def test_score_thresholds_decide_when_set(
    client: httpx.AsyncClient, shop: dict[str, str], app: FastAPI
) -> None:
    container = app.state.modes.live
    container.settings = container.settings.model_copy(
        update={"risk_review_score": Decimal(30), "risk_block_score": Decimal(60)}
    )
    await _rule(client, "blocklist", {"field": "device", "values": ["d_1"]}, score="40")
    await _rule(client, "blocklist", {"field": "ip", "values": ["10.0.0.1"]}, score="25")
    one = await post(client, "/v1/orders", order_body(shop, "c1", client={"device_id": "d_1"}))
    assert (one["risk"]["decision"], one["risk"]["score"]) == ("review", "40")
    both = await client.post(
        "/v1/orders", json=order_body(shop, "c2", client={"device_id": "d_1", "ip": "10.0.0.1"})
    )
    await _refused(both, 403, "risk_blocked")  # 65 >= 60


# --- blocks ---------------------------------------------------------------------------


async def test_a_block_writes_its_audit_row_and_nothing_else(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork
) -> None:
    await _rule(client, "amount_threshold", {"amounts": {"CNY": "300.00"}}, action="block")
    allowed = await post(client, "/v1/orders", order_body(shop, "c3"))  # 299.00
    assert allowed["risk"]["decision"] == "allow"
    before = [await _count(uow, t) for t in (orders, risk_decisions, risk_reviews, outbox_events)]

    blocked = await client.post(
        "/v1/orders",
        json=_order(await _big(client, shop, 30000), client={"ip": "10.1.2.3", "device_id": "d9"}),
    )
    await _refused(blocked, 403, "risk_blocked")
    after = [await _count(uow, t) for t in (orders, risk_decisions, risk_reviews, outbox_events)]
    assert after == before
    assert await _count(uow, risk_attempts) == 1
    [attempt] = (await client.get("/v1/risk/attempts")).json()["data"]
    assert (attempt["customer_id"], attempt["amount"], attempt["currency"]) == ("u_1", 30000, "CNY")
    assert attempt["client"]["ip"] == "10.1.2.3"
    assert attempt["risk"]["reasons"][0]["kind"] == "amount_threshold"


@pytest.mark.parametrize(
    ("field", "value", "client_info"),
    [
        ("customer", "u_1", {}),
        ("ip", "203.0.113.7", {"ip": "203.0.113.7"}),
        ("device", "dev_bad", {"device_id": "dev_bad"}),
    ],
)
async def test_blocklists_block_orders(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    uow: UnitOfWork,
    field: str,
    value: str,
    client_info: dict[str, str],
) -> None:
    await _rule(client, "blocklist", {"field": field, "values": [value]}, action="block")
    response = await client.post("/v1/orders", json=order_body(shop, "c1", client=client_info))
    await _refused(response, 403, "risk_blocked")
    other = await post(client, "/v1/orders", order_body(shop, "c1", customer_id="u_2"))
    assert other["risk"]["decision"] == "allow"
    assert await _count(uow, risk_attempts) == 1


async def test_a_blocked_payer_account_cannot_start_a_payment(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    await _rule(
        client, "blocklist", {"field": "payer_account", "values": ["payer_9"]}, action="block"
    )
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    path = f"/v1/orders/{order['id']}/payments"
    blocked = await client.post(
        path, json={"channel": "sandbox", "method": "page", "payer_id": "payer_9"}
    )
    await _refused(blocked, 403, "risk_blocked")
    assert await _count(uow, payments) == 0
    assert await _count(uow, risk_attempts, risk_attempts.c.stage == "payment") == 1
    ok = await post(client, path, {"channel": "sandbox", "method": "page"})
    assert ok["status"] == "pending"
    assert ok["risk"] == {"score": "0", "decision": "allow", "reasons": []}
    assert (await client.get(f"/v1/payments/{ok['id']}")).json()["risk"] == ok["risk"]


async def test_a_new_customers_large_amount_is_reviewed(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator
) -> None:
    # u_1 pays a first order before the rule exists.
    first = await post(client, "/v1/orders", order_body(shop, "c1"))
    paying = await post(
        client, f"/v1/orders/{first['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.pay(paying["id"])
    await gateway.drain()
    await _rule(client, "new_customer_amount", {"amounts": {"CNY": "150.00"}}, action="review")

    known = await post(client, "/v1/orders", order_body(shop, "c2"))  # 199.00, paid before
    assert known["risk"]["decision"] == "allow"
    new = await post(client, "/v1/orders", order_body(shop, "c2", customer_id="u_new"))
    assert new["risk"]["decision"] == "review"
    assert new["risk"]["reasons"][0]["kind"] == "new_customer_amount"
    small = await post(client, "/v1/orders", order_body(shop, "c1", customer_id="u_new2"))
    assert small["risk"]["decision"] == "allow"  # 99.00 < 150.00


# --- velocity -------------------------------------------------------------------------


async def test_velocity_counts_per_key_and_window(
    client: httpx.AsyncClient, shop: dict[str, str], clock: FrozenClock, uow: UnitOfWork
) -> None:
    await _rule(
        client,
        "velocity",
        {"key": "ip", "window_seconds": 3600, "max": 2},
        stages=["order"],
        action="block",
    )
    ip = {"ip": "198.51.100.1"}
    for customer in ("u_1", "u_2"):
        await post(client, "/v1/orders", order_body(shop, "c1", customer_id=customer, client=ip))
    third = await client.post(
        "/v1/orders", json=order_body(shop, "c1", customer_id="u_3", client=ip)
    )
    await _refused(third, 403, "risk_blocked")
    assert (
        "3 orders by ip 198.51.100.1"
        in (await client.get("/v1/risk/attempts")).json()["data"][0]["risk"]["reasons"][0]["detail"]
    )
    elsewhere = await post(
        client,
        "/v1/orders",
        order_body(shop, "c1", customer_id="u_3", client={"ip": "198.51.100.2"}),
    )
    assert elsewhere["risk"]["decision"] == "allow"
    no_ip = await post(client, "/v1/orders", order_body(shop, "c1", customer_id="u_4"))
    assert no_ip["risk"]["decision"] == "allow"

    clock.advance(timedelta(hours=1))  # the next window
    again = await post(client, "/v1/orders", order_body(shop, "c1", customer_id="u_3", client=ip))
    assert again["risk"]["decision"] == "allow"


async def test_velocity_is_exact_under_50_concurrent_orders(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork
) -> None:
    await _rule(
        client,
        "velocity",
        {"key": "customer", "window_seconds": 3600, "max": 10},
        stages=["order"],
        action="block",
    )
    body = order_body(shop, "c1", customer_id="u_rush")
    responses = await asyncio.gather(*(client.post("/v1/orders", json=body) for _ in range(50)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 10 + [403] * 40, [
        r.text for r in responses if r.status_code not in (201, 403)
    ]
    assert await _count(uow, orders, orders.c.customer_id == "u_rush") == 10
    assert await _count(uow, risk_attempts) == 40
    async with uow:
        counted = (await uow.conn.execute(select(risk_counters.c.count))).scalar_one()
    assert counted == 10  # the blocked attempts' counts went with their transactions


async def test_failed_payments_per_customer_block_the_next_attempt(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    await _rule(
        client,
        "velocity",
        {"key": "customer", "window_seconds": 3600, "max": 1, "event": "failed_payments"},
        stages=["payment"],
        action="block",
    )
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    path = f"/v1/orders/{order['id']}/payments"
    for _ in range(2):
        payment = await post(client, path, {"channel": "sandbox", "method": "page"})
        await gateway.decline(payment["id"])
        await gateway.drain()
    blocked = await client.post(path, json={"channel": "sandbox", "method": "page"})
    await _refused(blocked, 403, "risk_blocked")
    [attempt] = (await client.get("/v1/risk/attempts")).json()["data"]
    assert "2 failed payments by customer u_1" in attempt["risk"]["reasons"][0]["detail"]
    other = await post(client, "/v1/orders", order_body(shop, "c1", customer_id="u_2"))
    assert (
        await post(
            client, f"/v1/orders/{other['id']}/payments", {"channel": "sandbox", "method": "page"}
        )
    )["status"] == "pending"
    clock.advance(timedelta(hours=1, seconds=1))  # the failures leave the rolling window
    later = await post(client, "/v1/orders", order_body(shop, "c2"))
    paying = await post(
        client, f"/v1/orders/{later['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    assert paying["status"] == "pending"


# --- coupon guessing --------------------------------------------------------------------


async def test_coupon_guessing_is_blocked_after_max_unknown_codes(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork
) -> None:
    await _rule(
        client,
        "coupon_guessing",
        {"key": "customer", "window_seconds": 3600, "max": 3},
        action="block",
    )
    for code in ("AAAA1", "AAAA2", "AAAA3"):
        guess = await client.post("/v1/orders", json=order_body(shop, "c1", coupon_code=code))
        await _refused(guess, 400, "coupon_unknown")
    fourth = await client.post("/v1/orders", json=order_body(shop, "c1", coupon_code="AAAA4"))
    await _refused(fourth, 403, "risk_blocked")
    plain = await client.post("/v1/orders", json=order_body(shop, "c1"))
    await _refused(plain, 403, "risk_blocked")  # the guesser stays blocked in the window
    other = await post(client, "/v1/orders", order_body(shop, "c1", customer_id="u_2"))
    assert other["risk"]["decision"] == "allow"
    assert await _count(uow, risk_attempts) == 2
    assert await _count(uow, orders) == 1


# --- reviews --------------------------------------------------------------------------


async def _reviewed_order(client: httpx.AsyncClient, shop: dict[str, str]) -> dict[str, Any]:
    await _rule(
        client,
        "amount_threshold",
        {"amounts": {"CNY": "100.00"}},
        stages=["order"],
        action="review",
    )
    order = await post(client, "/v1/orders", order_body(shop, "c2"))
    assert order["risk"]["decision"] == "review"
    return order


async def test_a_reviewed_order_is_paid_only_after_approval(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    order = await _reviewed_order(client, shop)
    path = f"/v1/orders/{order['id']}/payments"
    held = await client.post(path, json={"channel": "sandbox", "method": "page"})
    await _refused(held, 409, "risk_review_pending")
    assert await _count(uow, payments) == 0

    [review] = (await client.get("/v1/risk/reviews", params={"status": "open"})).json()["data"]
    assert (review["order_id"], review["stage"], review["status"]) == (order["id"], "order", "open")
    approved = await post(
        client, f"/v1/risk/reviews/{review['id']}/approve", {"note": "known buyer"}
    )
    assert approved["status"] == "approved"
    assert approved["decided_by"].startswith("api_key:")
    again = await client.post(f"/v1/risk/reviews/{review['id']}/approve", json={})
    await _refused(again, 409, "risk_review_decided")

    payment = await post(client, path, {"channel": "sandbox", "method": "page"})
    await gateway.pay(payment["id"])
    await gateway.drain()
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
    assert await _events(uow) == ["risk.review_opened", "risk.review_approved"]


async def test_rejecting_an_unpaid_order_cancels_it(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork
) -> None:
    order = await _reviewed_order(client, shop)
    [review] = (await client.get("/v1/risk/reviews")).json()["data"]
    rejected = await post(
        client, f"/v1/risk/reviews/{review['id']}/reject", {"note": "stolen card"}
    )
    assert (rejected["status"], rejected["note"], rejected["refund_id"]) == (
        "rejected",
        "stolen card",
        None,
    )
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "cancelled"
    assert await _events(uow) == ["risk.review_opened", "risk.review_rejected"]


async def test_a_review_at_payment_time_refuses_the_payment_and_opens_the_review(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    await _rule(
        client,
        "amount_threshold",
        {"amounts": {"CNY": "100.00"}},
        stages=["payment"],
        action="review",
    )
    order = await post(client, "/v1/orders", order_body(shop, "c2", client={"ip": "10.0.0.5"}))
    assert order["risk"]["decision"] == "allow"  # no order rule; the client is kept
    path = f"/v1/orders/{order['id']}/payments"
    held = await client.post(path, json={"channel": "sandbox", "method": "page"})
    await _refused(held, 409, "risk_review_pending")
    assert await _count(uow, payments) == 0
    [review] = (await client.get("/v1/risk/reviews")).json()["data"]
    assert review["stage"] == "payment"
    await post(client, f"/v1/risk/reviews/{review['id']}/approve", {})
    payment = await post(client, path, {"channel": "sandbox", "method": "page"})
    assert payment["status"] == "pending"
    log = (await client.get("/v1/risk/decisions")).json()["data"]
    assert [(d["stage"], d["risk"]["decision"]) for d in log] == [
        ("payment", "review"),
        ("order", "allow"),
    ]
    assert log[0]["client"]["ip"] == "10.0.0.5"  # the order's client, at payment time


async def test_with_no_rule_at_a_stage_nothing_is_assessed_or_recorded(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    assert order["risk"] is None
    assert await _count(uow, risk_decisions) == 0


async def test_with_entitlements_held_a_rejected_paid_order_is_refunded(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    app: FastAPI,
) -> None:
    container = app.state.modes.live
    container.settings = container.settings.model_copy(update={"risk_review_holds": "entitlements"})
    order = await _reviewed_order(client, shop)
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
    access = (await client.get(f"/v1/customers/u_1/entitlements/{shop['c2']}")).json()
    assert access["has_access"] is False  # held for the review
    assert await _count(uow, entitlements) == 0

    [review] = (await client.get("/v1/risk/reviews")).json()["data"]
    rejected = await post(client, f"/v1/risk/reviews/{review['id']}/reject", {})
    assert rejected["refund_id"] is not None
    refund = (await client.get(f"/v1/refunds/{rejected['refund_id']}")).json()
    assert (refund["order_id"], refund["amount"], refund["reason"]) == (
        order["id"],
        19900,
        "fraudulent",
    )


async def test_with_entitlements_held_approval_grants_them(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, app: FastAPI
) -> None:
    container = app.state.modes.live
    container.settings = container.settings.model_copy(update={"risk_review_holds": "entitlements"})
    order = await _reviewed_order(client, shop)
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    [review] = (await client.get("/v1/risk/reviews")).json()["data"]
    await post(client, f"/v1/risk/reviews/{review['id']}/approve", {})
    access = (await client.get(f"/v1/customers/u_1/entitlements/{shop['c2']}")).json()
    assert access["has_access"] is True


# --- refunds --------------------------------------------------------------------------


async def _paid(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator
) -> dict[str, Any]:
    order = await post(client, "/v1/orders", order_body(shop, "c2"))  # 199.00
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    return order


async def test_a_large_refund_waits_for_review_and_goes_through_once_approved(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    order = await _paid(client, shop, gateway)
    await _rule(
        client,
        "amount_threshold",
        {"amounts": {"CNY": "100.00"}},
        stages=["refund"],
        action="review",
    )
    held = await client.post("/v1/refunds", json={"order_id": order["id"], "amount": 15000})
    await _refused(held, 409, "risk_review_pending")
    assert await _count(uow, refunds) == 0
    [review] = (await client.get("/v1/risk/reviews", params={"status": "open"})).json()["data"]
    assert review["stage"] == "refund"
    again = await client.post("/v1/refunds", json={"order_id": order["id"], "amount": 15000})
    await _refused(again, 409, "risk_review_pending")

    await post(client, f"/v1/risk/reviews/{review['id']}/approve", {})
    made = await post(client, "/v1/refunds", {"order_id": order["id"], "amount": 15000})
    assert made["amount"] == 15000
    small = await post(client, "/v1/refunds", {"order_id": order["id"], "amount": 100})
    assert small["amount"] == 100  # the order's refunds were approved


async def test_rejecting_a_refund_review_refuses_only_that_refund(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    order = await _paid(client, shop, gateway)
    await _rule(
        client,
        "amount_threshold",
        {"amounts": {"CNY": "100.00"}},
        stages=["refund"],
        action="review",
    )
    await _refused(
        await client.post("/v1/refunds", json={"order_id": order["id"]}), 409, "risk_review_pending"
    )
    [review] = (await client.get("/v1/risk/reviews")).json()["data"]
    rejected = await post(client, f"/v1/risk/reviews/{review['id']}/reject", {})
    assert (rejected["status"], rejected["refund_id"]) == ("rejected", None)
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
    assert await _count(uow, refunds) == 0


async def test_too_many_refunds_per_customer_are_blocked_and_audited(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    order = await _paid(client, shop, gateway)
    await _rule(
        client,
        "velocity",
        {"key": "customer", "window_seconds": 86400, "max": 1},
        stages=["refund"],
        action="block",
    )
    await post(client, "/v1/refunds", {"order_id": order["id"], "amount": 100})
    blocked = await client.post("/v1/refunds", json={"order_id": order["id"], "amount": 100})
    await _refused(blocked, 403, "risk_blocked")
    assert await _count(uow, refunds) == 1
    assert await _count(uow, risk_attempts, risk_attempts.c.stage == "refund") == 1


async def test_an_order_under_review_is_not_paid_from_the_wallet_either(
    client: httpx.AsyncClient, shop: dict[str, str], app: FastAPI, uow: UnitOfWork
) -> None:
    from tuition.services.wallet import Adjustment, adjust

    deps = app.state.modes.live.payment_deps()
    await adjust(Adjustment("u_1", "CNY", 50000, "goodwill", "admin:test"), uow, deps=deps)
    order = await _reviewed_order(client, shop)
    path = f"/v1/orders/{order['id']}/payments"
    held = await client.post(path, json={"channel": "wallet"})
    await _refused(held, 409, "risk_review_pending")
    assert await _count(uow, payments) == 0
    [review] = (await client.get("/v1/risk/reviews")).json()["data"]
    await post(client, f"/v1/risk/reviews/{review['id']}/approve", {})
    paid = await post(client, path, {"channel": "wallet"})
    assert paid["status"] == "succeeded"


async def test_list_answers_carry_each_orders_and_payments_risk_as_the_single_ones(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator
) -> None:
    await _rule(
        client,
        "amount_score",
        {"coefficient": "0.2", "threshold": "50"},
        stages=["order", "payment"],
        action="review",
    )
    small = await post(client, "/v1/orders", _order(await _big(client, shop, 10000), "u_1"))
    large = await post(client, "/v1/orders", _order(await _big(client, shop, 30000), "u_2"))
    paid = await post(
        client, f"/v1/orders/{small['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    listed = (await client.get("/v1/orders")).json()["data"]
    assert [o["id"] for o in listed] == [large["id"], small["id"]]  # newest first
    for order in listed:
        assert order["risk"] == (await client.get(f"/v1/orders/{order['id']}")).json()["risk"]
    assert [(o["risk"]["decision"], o["risk"]["score"]) for o in listed] == [
        ("review", "60.000"),  # 300.00 x 0.2 = 60 > 50
        ("allow", "0"),
    ]
    assert listed[0]["risk"]["reasons"][0]["kind"] == "amount_score"
    single = (await client.get(f"/v1/payments/{paid['id']}")).json()["risk"]
    assert single is not None
    assert single["decision"] == "allow"
    assert [p["risk"] for p in (await client.get("/v1/payments")).json()["data"]] == [single]
    of_order = (await client.get(f"/v1/orders/{small['id']}/payments")).json()["data"]
    assert [p["risk"] for p in of_order] == [single]


async def test_list_answers_have_no_risk_while_risk_control_is_off(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    assert [o["risk"] for o in (await client.get("/v1/orders")).json()["data"]] == [None]
    assert [p["risk"] for p in (await client.get("/v1/payments")).json()["data"]] == [None]


async def _audit(uow: UnitOfWork) -> list[tuple[str, str, str, str]]:
    async with uow:
        rows = await uow.conn.execute(
            select(
                audit_events.c.actor_kind,
                audit_events.c.actor,
                audit_events.c.action,
                audit_events.c.subject,
            ).order_by(audit_events.c.seq)
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]


async def test_rule_changes_and_review_decisions_over_the_api_are_audited_with_the_key(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork
) -> None:
    rule = await _rule(client, "amount_threshold", {"amounts": {"CNY": "100.00"}}, action="review")
    body = {"name": "big", "kind": "amount_threshold", "params": {"amounts": {"CNY": "150.00"}}}
    replaced = await client.put(f"/v1/risk/rules/{rule['id']}", json={**body, "action": "review"})
    assert replaced.status_code == 200, replaced.text
    held = [await post(client, "/v1/orders", order_body(shop, "c2", customer_id=c)) for c in "ab"]
    reviews = (await client.get("/v1/risk/reviews")).json()["data"]
    by_order = {r["order_id"]: r["id"] for r in reviews}
    approved = await post(client, f"/v1/risk/reviews/{by_order[held[0]['id']]}/approve", {})
    await post(client, f"/v1/risk/reviews/{by_order[held[1]['id']]}/reject", {"note": "no"})
    kind, _, key_id = approved["decided_by"].partition(":")
    assert (kind, key_id[:4]) == ("api_key", "key_")
    assert [row for row in await _audit(uow) if row[2].startswith("risk")] == [
        ("api_key", key_id, "risk_rule.created", rule["id"]),
        ("api_key", key_id, "risk_rule.replaced", rule["id"]),
        ("api_key", key_id, "risk_review.approved", by_order[held[0]["id"]]),
        ("api_key", key_id, "risk_review.rejected", by_order[held[1]["id"]]),
    ]
    async with uow:
        after = (
            await uow.conn.execute(
                select(audit_events.c.before, audit_events.c.after).where(
                    audit_events.c.action == "risk_rule.replaced"
                )
            )
        ).one()
    assert '"CNY":"100.00"' in after[0]
    assert '"CNY":"150.00"' in after[1]
