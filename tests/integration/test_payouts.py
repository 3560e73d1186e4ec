"""Payouts through the bank route on both engines: tax withheld by hand-computed
examples, the batch file, paid and failed outcomes, a negative balance netted, and
concurrent payouts that never overdraw or withhold the month's tax twice."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.shop import post
from tuition.clock import FrozenClock
from tuition.services.earnings import payee_problems
from tuition.services.ledger import verify_ledger
from tuition.services.payout_runs import approve_run, propose_run
from tuition.services.payouts import (
    TAX_ZONE,
    TEST_BATCH_MARK,
    PayoutDeps,
    bank_batch_filename,
    export_bank_batch,
)
from tuition.simulator.app import Simulator
from tuition.store.uow import UnitOfWork
from tuition.worker.runner import Worker, WorkerConfig

HOLD = timedelta(days=7)
ACCOUNT = "6222020000001234"


@pytest.fixture
async def seller(client: httpx.AsyncClient) -> dict[str, str]:
    """A creator at 50 % whose ¥10,000 course earns ¥5,000, paid by bank transfer."""
    creator = await post(client, "/v1/creators", {"name": "Bo", "default_revenue_share": "0.5"})
    course = await post(
        client,
        "/v1/products",
        {"creator_id": creator["id"], "title": "Big", "kind": "course", "prices": {"CNY": 1000000}},
    )
    return {"creator": creator["id"], "course": course["id"]}


async def _sell(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],
    customer: str,
) -> dict[str, Any]:
    """Sell the course to ``customer`` and let its hold end: ¥5,000 available."""
    order = await post(
        client,
        "/v1/orders",
        {"customer_id": customer, "currency": "CNY", "items": [{"product_id": seller["course"]}]},
    )
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    clock.advance(HOLD)
    await Worker(app.state.modes.live, WorkerConfig(sweep_interval=timedelta(0))).run_once()
    return order


async def _bank(client: httpx.AsyncClient, payee: str) -> None:
    got = await client.post(
        f"/v1/payees/{payee}", json={"payout_method": "bank", "payout_account": ACCOUNT}
    )
    assert got.status_code == 200, got.text
    assert got.json()["payout_account"] == "************1234"


async def _balance(client: httpx.AsyncClient, payee: str) -> dict[str, int]:
    [cny] = (await client.get(f"/v1/payees/{payee}/balance")).json()["balances"]
    return {k: v for k, v in cny.items() if k != "currency"}


async def _books_clean(uow: UnitOfWork) -> None:
    report = await verify_ledger(uow)
    assert report.ok, report.problems
    assert await payee_problems(uow) == []


async def test_a_monthly_payout_of_5000_withholds_800_and_the_bank_route_pays_4200(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],
    uow: UnitOfWork,
) -> None:
    await _sell(app, client, gateway, clock, seller, "u_1")
    payee = seller["creator"]
    await _bank(client, payee)
    made = await client.post("/v1/payouts", json={"payee_id": payee, "currency": "CNY"})
    assert made.status_code == 201, made.text
    payout = made.json()
    # 5,000 > 4,000: taxable 5,000 x 80 % = 4,000; tax 4,000 x 20 % = 800; net 4,200.
    assert (payout["amount"], payout["tax_withheld"], payout["net"]) == (500000, 80000, 420000)
    assert (payout["status"], payout["method"]) == ("pending", "bank")
    assert payout["destination"] == "************1234"
    assert await _balance(client, payee) == {
        "pending": 0,
        "available": 0,
        "in_payout": 420000,
        "paid_out": 0,
        "tax_withheld": 80000,
    }
    await _books_clean(uow)

    batch = await client.post("/v1/payouts/bank_batch")
    assert batch.status_code == 201, batch.text
    assert batch.json()["payouts"] == 1
    lines = batch.json()["csv"].splitlines()
    assert lines == [
        "payout_id,payee_name,account,currency,amount",
        f"{payout['id']},Bo,{ACCOUNT},CNY,4200.00",
    ]
    again = await client.post("/v1/payouts/bank_batch")
    assert again.json()["payouts"] == 0  # a payout is in one batch only
    got = (await client.get(f"/v1/payouts/{payout['id']}")).json()
    assert got["status"] == "processing"

    paid = await client.post(f"/v1/payouts/{payout['id']}/mark_paid", json={"reference": "BK-1"})
    assert paid.status_code == 200, paid.text
    assert (paid.json()["status"], paid.json()["reference"]) == ("paid", "BK-1")
    assert await _balance(client, payee) == {
        "pending": 0,
        "available": 0,
        "in_payout": 0,
        "paid_out": 420000,
        "tax_withheld": 80000,
    }
    twice = await client.post(f"/v1/payouts/{payout['id']}/mark_paid", json={"reference": "BK-1"})
    assert twice.status_code == 409
    listed = (await client.get("/v1/payouts", params={"payee_id": payee, "status": "paid"})).json()
    assert [p["id"] for p in listed["data"]] == [payout["id"]]
    none = (await client.get("/v1/payouts", params={"payee_id": payee, "status": "failed"})).json()
    assert none["data"] == []
    await _books_clean(uow)


async def test_a_second_payout_in_the_month_withholds_the_months_tax_less_the_first(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],
    uow: UnitOfWork,
) -> None:
    await _sell(app, client, gateway, clock, seller, "u_1")
    payee = seller["creator"]
    await _bank(client, payee)
    first = await post(
        client, "/v1/payouts", {"payee_id": payee, "currency": "CNY", "amount": 300000}
    )
    # 3,000 <= 4,000: taxable 3,000 - 800 = 2,200; tax 440.
    assert first["tax_withheld"] == 44000
    second = await post(client, "/v1/payouts", {"payee_id": payee, "currency": "CNY"})
    # The month is 5,000: tax 800, of which 440 was withheld: 360 now.
    assert (second["amount"], second["tax_withheld"]) == (200000, 36000)
    assert (await _balance(client, payee))["tax_withheld"] == 80000
    await _books_clean(uow)


async def test_a_failed_payout_gives_the_money_back_with_the_reason_and_withholds_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],
    uow: UnitOfWork,
) -> None:
    await _sell(app, client, gateway, clock, seller, "u_1")
    payee = seller["creator"]
    await _bank(client, payee)
    payout = await post(client, "/v1/payouts", {"payee_id": payee, "currency": "CNY"})
    await client.post("/v1/payouts/bank_batch")
    failed = await client.post(
        f"/v1/payouts/{payout['id']}/mark_failed",
        json={"code": "account_closed", "message": "the account was closed"},
    )
    assert failed.status_code == 200, failed.text
    assert (failed.json()["status"], failed.json()["failure_code"]) == ("failed", "account_closed")
    assert await _balance(client, payee) == {
        "pending": 0,
        "available": 500000,
        "in_payout": 0,
        "paid_out": 0,
        "tax_withheld": 0,
    }
    await _books_clean(uow)
    # The failed payout counts for nothing in the month: the retry withholds the full 800.
    retry = await post(client, "/v1/payouts", {"payee_id": payee, "currency": "CNY"})
    assert retry["tax_withheld"] == 80000
    await _books_clean(uow)


async def test_a_paid_payout_the_bank_returns_is_available_again(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],
    uow: UnitOfWork,
) -> None:
    await _sell(app, client, gateway, clock, seller, "u_1")
    payee = seller["creator"]
    await _bank(client, payee)
    payout = await post(client, "/v1/payouts", {"payee_id": payee, "currency": "CNY"})
    await client.post("/v1/payouts/bank_batch")
    await post(client, f"/v1/payouts/{payout['id']}/mark_paid", {"reference": "BK-2"})
    returned = await post(
        client,
        f"/v1/payouts/{payout['id']}/mark_failed",
        {"code": "returned", "message": "name does not match the account"},
    )
    assert returned["status"] == "returned"
    assert (await _balance(client, payee))["available"] == 500000
    assert (await _balance(client, payee))["paid_out"] == 0
    await _books_clean(uow)


async def test_a_clawback_after_a_payout_leaves_available_negative_until_the_next_release(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],
    uow: UnitOfWork,
) -> None:
    order = await _sell(app, client, gateway, clock, seller, "u_1")
    payee = seller["creator"]
    await _bank(client, payee)
    await post(client, "/v1/payouts", {"payee_id": payee, "currency": "CNY"})
    # An operator's refund after the window (override): half of it, 250,000 of the share.
    made = await client.post(
        "/v1/refunds",
        json={"order_id": order["id"], "amount": 500000, "override": True, "reason": "other"},
    )
    assert made.status_code == 201, made.text
    await gateway.drain()
    balance = await _balance(client, payee)
    assert balance["available"] == -250000
    await _books_clean(uow)
    short = await client.post("/v1/payouts", json={"payee_id": payee, "currency": "CNY"})
    assert short.status_code == 422
    assert short.json()["error"]["code"] == "payout_below_minimum"
    await _sell(app, client, gateway, clock, seller, "u_2")  # another 500,000 released
    assert (await _balance(client, payee))["available"] == 250000  # netted
    await _books_clean(uow)


async def test_a_payout_is_refused_without_details_above_available_or_below_the_minimum(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],
    uow: UnitOfWork,
) -> None:
    await _sell(app, client, gateway, clock, seller, "u_1")
    payee = seller["creator"]
    body = {"payee_id": payee, "currency": "CNY"}
    bare = await client.post("/v1/payouts", json=body)
    assert (bare.status_code, bare.json()["error"]["code"]) == (409, "payout_method_missing")
    await _bank(client, payee)
    over = await client.post("/v1/payouts", json={**body, "amount": 500001})
    assert (over.status_code, over.json()["error"]["code"]) == (409, "insufficient_available")
    tiny = await client.post("/v1/payouts", json={**body, "amount": 99})
    assert (tiny.status_code, tiny.json()["error"]["code"]) == (422, "payout_below_minimum")
    bad = await client.post("/v1/payouts", json={**body, "amount": "100"})
    assert bad.status_code == 422
    assert bad.json()["error"]["param"] == "amount"
    assert (await _balance(client, payee))["available"] == 500000
    await _books_clean(uow)


async def test_a_payout_retried_with_its_idempotency_key_is_made_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],
) -> None:
    await _sell(app, client, gateway, clock, seller, "u_1")
    payee = seller["creator"]
    await _bank(client, payee)
    body = {"payee_id": payee, "currency": "CNY", "amount": 100000}
    headers = {"Idempotency-Key": "payout-run-2026-01"}
    first = await client.post("/v1/payouts", json=body, headers=headers)
    again = await client.post("/v1/payouts", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert (await _balance(client, payee))["available"] == 400000


@pytest.mark.postgres_only
async def test_concurrent_payouts_never_overdraw_and_withhold_the_months_tax_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],
    uow: UnitOfWork,
) -> None:
    await _sell(app, client, gateway, clock, seller, "u_1")
    payee = seller["creator"]
    await _bank(client, payee)
    body = {"payee_id": payee, "currency": "CNY", "amount": 100000}
    answers = await asyncio.gather(*(client.post("/v1/payouts", json=body) for _ in range(12)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * 5 + [409] * 7, {a.text for a in answers}
    made = [a.json() for a in answers if a.status_code == 201]
    # Five payouts of 1,000 in one month: the month's 5,000 owes 800 in all.
    assert sum(p["tax_withheld"] for p in made) == 80000
    assert await _balance(client, payee) == {
        "pending": 0,
        "available": 0,
        "in_payout": 420000,
        "paid_out": 0,
        "tax_withheld": 80000,
    }
    await _books_clean(uow)


async def test_a_payout_run_repeated_in_its_period_pays_each_payee_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],
    uow: UnitOfWork,
) -> None:
    """A period has one run: proposing it again finds the same run, approving it again
    pays nothing more; the next period's run pays what came in since."""
    clock.set(datetime(2026, 11, 2, tzinfo=TAX_ZONE))
    await _sell(app, client, gateway, clock, seller, "u_1")
    await _bank(client, seller["creator"])
    deps = PayoutDeps(clock=clock)
    run, new = await propose_run(uow, schedule="monthly", proposed_by="worker", deps=deps)
    assert (new, run.period) == (True, "2026-11")
    first = await approve_run(uow, run.id, operator="admin:fin@example.com", deps=deps)
    assert [(p.payee_id, p.amount, p.tax_withheld) for p in first.payouts.values()] == [
        (seller["creator"], 500000, 80000)
    ]
    await _sell(app, client, gateway, clock, seller, "u_2")  # 500,000 more, still November
    again, new = await propose_run(uow, schedule="monthly", proposed_by="worker", deps=deps)
    assert (again.id, new) == (run.id, False)
    assert (await _balance(client, seller["creator"]))["available"] == 500000
    clock.set(datetime(2026, 12, 1, tzinfo=TAX_ZONE))
    december, new = await propose_run(uow, schedule="monthly", proposed_by="worker", deps=deps)
    assert new
    paid = await approve_run(uow, december.id, operator="admin:fin@example.com", deps=deps)
    assert [(p.amount, p.tax_withheld, p.tax_month) for p in paid.payouts.values()] == [
        (500000, 80000, "2026-12")
    ]
    await _books_clean(uow)


async def test_a_test_mode_bank_batch_is_marked_as_test_in_its_name_and_every_row(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],
    uow: UnitOfWork,
) -> None:
    await _sell(app, client, gateway, clock, seller, "u_1")
    await _bank(client, seller["creator"])
    payout = await post(client, "/v1/payouts", {"payee_id": seller["creator"], "currency": "CNY"})
    text = await export_bank_batch(uow, deps=PayoutDeps(clock=clock, mode="test"))
    assert text.splitlines() == [
        "test_mode,payout_id,payee_name,account,currency,amount",
        f"{TEST_BATCH_MARK},{payout['id']},Bo,{ACCOUNT},CNY,4200.00",
    ]
    assert "DO NOT SEND" in TEST_BATCH_MARK
    name = bank_batch_filename("test", clock.now())
    assert name.startswith("TEST-MODE-DO-NOT-SEND-bank-batch-")
    assert name.endswith(".csv")
    assert bank_batch_filename("live", clock.now()).startswith("bank-batch-")
    # Over the API (this test's store is live mode's): a live file, named and flagged so.
    live = (await client.post("/v1/payouts/bank_batch")).json()
    assert (live["livemode"], live["payouts"]) == (True, 0)
    assert live["filename"].startswith("bank-batch-")
    await _books_clean(uow)
