"""The worked example of docs/payouts.md, on both engines, number by number."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
from fastapi import FastAPI

from tests.integration.shop import post
from tests.integration.test_payouts import _balance, _bank, _books_clean
from tuition.clock import FrozenClock
from tuition.services.payouts import TAX_ZONE
from tuition.simulator.app import Simulator
from tuition.store.uow import UnitOfWork
from tuition.worker.runner import Worker, WorkerConfig


async def test_the_documented_month_of_a_199_course_ends_at_36305_after_a_5000_payout(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    clock.set(datetime(2026, 11, 2, 9, tzinfo=TAX_ZONE))
    ada = await post(client, "/v1/creators", {"name": "Ada", "default_revenue_share": "0.7"})
    course = await post(
        client,
        "/v1/products",
        {"creator_id": ada["id"], "title": "Course", "kind": "course", "prices": {"CNY": 19900}},
    )
    orders = []
    for n in range(40):
        order = await post(
            client,
            "/v1/orders",
            {"customer_id": f"b_{n}", "currency": "CNY", "items": [{"product_id": course["id"]}]},
        )
        payment = await post(
            client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
        )
        await gateway.pay(payment["id"])
        orders.append(order)
    await gateway.drain()
    payee = ada["id"]
    assert (await _balance(client, payee))["pending"] == 40 * 13930 == 557200

    clock.advance(timedelta(days=3))
    full = await client.post("/v1/refunds", json={"order_id": orders[0]["id"]})
    assert full.status_code == 201, full.text
    await gateway.drain()
    assert (await _balance(client, payee))["pending"] == 557200 - 13930

    clock.advance(timedelta(days=4))  # day 7: the holds end
    await Worker(app.state.modes.live, WorkerConfig(sweep_interval=timedelta(0))).run_once()
    assert await _balance(client, payee) == {
        "pending": 0,
        "available": 543270,
        "in_payout": 0,
        "paid_out": 0,
        "tax_withheld": 0,
    }

    clock.advance(timedelta(days=3))  # day 10: past the window, an operator's override
    half = await client.post(
        "/v1/refunds",
        json={"order_id": orders[1]["id"], "amount": 9950, "override": True, "reason": "other"},
    )
    assert half.status_code == 201, half.text
    await gateway.drain()
    refund = (await client.get(f"/v1/refunds/{half.json()['id']}")).json()
    assert (refund["lines"][0]["creator_amount"], refund["lines"][0]["platform_amount"]) == (
        6965,
        2985,
    )
    assert (await _balance(client, payee))["available"] == 536305

    await _bank(client, payee)
    payout = await post(
        client, "/v1/payouts", {"payee_id": payee, "currency": "CNY", "amount": 500000}
    )
    assert (payout["tax_withheld"], payout["net"]) == (80000, 420000)
    await client.post("/v1/payouts/bank_batch")
    await post(client, f"/v1/payouts/{payout['id']}/mark_paid", {"reference": "BK-11"})
    assert await _balance(client, payee) == {
        "pending": 0,
        "available": 36305,
        "in_payout": 0,
        "paid_out": 420000,
        "tax_withheld": 80000,
    }
    november = (await client.get(f"/v1/payees/{payee}/statements/2026-11")).json()
    assert (
        november["opening_balance"],
        november["earnings"],
        november["clawbacks"],
        november["tax"],
        november["payouts"],
        november["closing_balance"],
    ) == (0, 557200, -20895, -80000, -420000, 36305)
    await _books_clean(uow)
