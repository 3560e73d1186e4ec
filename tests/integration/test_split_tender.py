"""Split tender on both engines: part of an order from the balance, the rest through a
channel. The balance part is held while the channel payment is open, committed when it
succeeds and given back, to the very lots it came from, when it fails, closes, expires
or its money comes for an order that no longer wants it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.integration.shop import order_body, post
from tuition.clock import FrozenClock
from tuition.services.earnings import payee_problems
from tuition.services.ledger import verify_ledger
from tuition.services.wallet import wallet_problems
from tuition.simulator.app import Simulator
from tuition.store.uow import UnitOfWork

FEE = 56  # the sandbox's 0.6 % of the 94.00 the channel takes (9400 * 0.006 = 56.4)


async def _balance(client: httpx.AsyncClient, customer: str = "u_1") -> int:
    got = (await client.get(f"/v1/customers/{customer}/wallet")).json()
    return {b["currency"]: b["balance"] for b in got["balances"]}.get("CNY", 0)


async def _credit(client: httpx.AsyncClient, amount: int, customer: str = "u_1") -> None:
    await post(
        client,
        f"/v1/customers/{customer}/wallet/adjustments",
        {"currency": "CNY", "amount": amount, "reason": "goodwill"},
    )


async def _split(
    client: httpx.AsyncClient, shop: dict[str, str], wallet_amount: int = 500, **extra: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    order = await post(client, "/v1/orders", order_body(shop, "c1", **extra))
    payment = await post(
        client,
        f"/v1/orders/{order['id']}/payments",
        {"channel": "sandbox", "method": "page", "wallet_amount": wallet_amount},
    )
    return order, payment


async def _part(client: httpx.AsyncClient, payment: dict[str, Any]) -> dict[str, Any]:
    got = (await client.get(f"/v1/payments/{payment['wallet_part_id']}")).json()
    return got  # type: ignore[no-any-return]


async def _clean(uow: UnitOfWork) -> dict[str, int]:
    report = await verify_ledger(uow)
    assert report.ok, report.problems
    assert await wallet_problems(uow) == []
    assert await payee_problems(uow) == []
    async with uow:
        return {k: v for k, v in (await uow.ledger.balances()).items() if v}


async def test_a_split_payment_holds_the_balance_part_and_commits_it_with_the_channel(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    await _credit(client, 2000)
    order, payment = await _split(client, shop, 500)
    assert (payment["channel"], payment["amount"], payment["status"]) == (
        "sandbox",
        9400,
        "pending",
    )
    part = await _part(client, payment)
    assert (part["channel"], part["method"], part["amount"], part["status"]) == (
        "wallet",
        "split",
        500,
        "pending",
    )
    assert await _balance(client) == 1500  # held: not spendable, still owed in the books
    held = await _clean(uow)
    assert held["customer_wallet:CNY:u_1"] == -2000
    gateway.duplicate_notifications(2)
    await gateway.pay(payment["id"])
    await gateway.drain()
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
    assert (await _part(client, payment))["status"] == "succeeded"
    books = await _clean(uow)
    # 99.00 at 70 %: 69.30 to the creator and 29.70 to the platform, split over the two
    # payments by largest remainder (500: 350 + 150; 9400: 6580 + 2820).
    assert books == {
        "wallet_adjustments:CNY": 2000,
        "customer_wallet:CNY:u_1": -1500,
        "channel_clearing:CNY:sandbox": 9400 - FEE,
        "channel_fees:CNY": FEE,
        f"creator_pending:CNY:{shop['creator']}": -6930,
        "platform_revenue:CNY": -2970,
    }
    history = (await client.get("/v1/customers/u_1/wallet/transactions")).json()["data"]
    assert [(t["cause"], t["amount"]) for t in history] == [("order", -500), ("adjustment", 2000)]


async def test_a_failed_channel_payment_gives_the_held_part_back_to_its_lots(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    await _credit(client, 300)
    await _credit(client, 400)  # two lots: the hold takes 300 + 200
    _, payment = await _split(client, shop, 500)
    assert await _balance(client) == 200
    await gateway.decline(payment["id"])
    await gateway.drain()
    assert (await client.get(f"/v1/payments/{payment['id']}")).json()["status"] == "failed"
    part = await _part(client, payment)
    assert (part["status"], part["failure_code"]) == ("closed", "channel_payment_failed")
    assert await _balance(client) == 700
    wallet = (await client.get("/v1/customers/u_1/wallet")).json()
    assert sorted(lot["remaining"] for lot in wallet["lots"]) == [300, 400]
    history = (await client.get("/v1/customers/u_1/wallet/transactions")).json()["data"]
    assert (history[0]["cause"], history[0]["amount"]) == ("release", 500)
    await _clean(uow)


async def test_a_cancelled_order_releases_the_held_part(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    await _credit(client, 1000)
    order, payment = await _split(client, shop, 1000)
    cancelled = await client.post(f"/v1/orders/{order['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert (await client.get(f"/v1/payments/{payment['id']}")).json()["status"] == "closed"
    assert (await _part(client, payment))["status"] == "closed"
    assert await _balance(client) == 1000
    await _clean(uow)


async def test_an_expired_order_releases_the_held_part(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
    app: Any,
) -> None:
    from tuition.worker.runner import Worker, WorkerConfig

    await _credit(client, 1000)
    order, payment = await _split(client, shop, 800)
    clock.advance(timedelta(minutes=16))
    worker = Worker(app.state.modes.live, WorkerConfig(sweep_interval=timedelta(seconds=0)))
    try:
        for _ in range(3):
            await worker.run_once()
    finally:
        await worker.close()
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "expired"
    assert (await _part(client, payment))["status"] == "closed"
    assert await _balance(client) == 1000
    await _clean(uow)


async def test_money_for_an_order_no_longer_payable_is_refunded_and_the_part_released(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    await _credit(client, 10000)
    order, split = await _split(client, shop, 500)
    other = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.pay(other["id"])  # paid whole through another attempt
    await gateway.drain()
    await gateway.pay(split["id"])  # then the split attempt's money comes too
    await gateway.drain()
    assert (await client.get(f"/v1/payments/{split['id']}")).json()["duplicate_of"] == order["id"]
    assert (await _part(client, split))["status"] == "closed"
    assert await _balance(client) == 10000
    await gateway.settle_refunds()
    await gateway.drain()
    await _clean(uow)


async def test_a_held_part_must_be_covered_and_leave_something_for_the_channel(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    await _credit(client, 400)
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    path = f"/v1/orders/{order['id']}/payments"
    short = await client.post(
        path, json={"channel": "sandbox", "method": "page", "wallet_amount": 500}
    )
    assert short.status_code == 409, short.text
    assert short.json()["error"]["code"] == "insufficient_balance"
    assert "100 more" in short.json()["error"]["message"]
    whole = await client.post(
        path, json={"channel": "sandbox", "method": "page", "wallet_amount": 9900}
    )
    assert whole.status_code == 422
    assert whole.json()["error"]["code"] == "wallet_amount_too_large"
    for bad in (0, -1, "5", 1.5):
        got = await client.post(
            path, json={"channel": "sandbox", "method": "page", "wallet_amount": bad}
        )
        assert got.status_code == 422, bad
    wallet_too = await client.post(path, json={"channel": "wallet", "wallet_amount": 100})
    assert wallet_too.status_code == 422
    topup = await post(client, "/v1/orders", order_body(shop, "coins"))
    refused = await client.post(
        f"/v1/orders/{topup['id']}/payments",
        json={"channel": "sandbox", "method": "page", "wallet_amount": 100},
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "wallet_cannot_pay_topup"
    assert (await client.get(path)).json()["data"] == []  # nothing was written
    assert await _balance(client) == 400
    await _clean(uow)


async def test_racing_split_payments_never_hold_more_than_the_balance(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    backend: str,
) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL-only test (real row-level concurrency)")
    await _credit(client, 1000)
    orders = [
        await post(client, "/v1/orders", order_body(shop, "c1", customer_id="u_1"))
        for _ in range(8)
    ]
    answers = await asyncio.gather(
        *(
            client.post(
                f"/v1/orders/{o['id']}/payments",
                json={"channel": "sandbox", "method": "page", "wallet_amount": 300},
            )
            for o in orders
        )
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * 3 + [409] * 5
    assert await _balance(client) == 100
    await _clean(uow)


async def test_a_split_order_is_refunded_part_by_part_where_each_came_from(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    await _credit(client, 2000)
    order, payment = await _split(client, shop, 2000)
    await gateway.pay(payment["id"])
    await gateway.drain()
    assert await _balance(client) == 0
    by_order = await post(client, "/v1/refunds", {"order_id": order["id"], "amount": 7900})
    assert (by_order["payment_id"], by_order["amount"]) == (payment["id"], 7900)
    await gateway.settle_refunds()
    await gateway.drain()
    assert (await client.get(f"/v1/refunds/{by_order['id']}")).json()["status"] == "succeeded"
    by_part = await post(
        client, "/v1/refunds", {"payment_id": payment["wallet_part_id"], "amount": 2000}
    )
    assert by_part["status"] == "succeeded"  # back to the balance at once
    assert await _balance(client) == 2000
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "refunded"
    books = await _clean(uow)
    assert books.get(f"creator_pending:CNY:{shop['creator']}", 0) == 0
    assert books["customer_wallet:CNY:u_1"] == -2000


async def test_a_split_order_refunded_balance_part_first_takes_back_each_share_once(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    await _credit(client, 333)
    order, payment = await _split(client, shop, 333)
    await gateway.pay(payment["id"])
    await gateway.drain()
    await post(client, "/v1/refunds", {"payment_id": payment["wallet_part_id"]})
    rest = await post(client, "/v1/refunds", {"order_id": order["id"]})
    assert (rest["payment_id"], rest["amount"]) == (payment["id"], 9900 - 333)
    await gateway.settle_refunds()
    await gateway.drain()
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "refunded"
    books = await _clean(uow)
    assert books.get(f"creator_pending:CNY:{shop['creator']}", 0) == 0
    assert books.get("platform_revenue:CNY", 0) + books.get("refunds:CNY", 0) == 0


async def test_a_balance_part_refunded_in_pieces_never_takes_more_than_the_creator_earned(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    await _credit(client, 333)
    order, payment = await _split(client, shop, 333)
    await gateway.pay(payment["id"])
    await gateway.drain()
    for _ in range(3):  # 111 each: 77.7 of the creator's share, rounded up every time
        await post(client, "/v1/refunds", {"payment_id": payment["wallet_part_id"], "amount": 111})
    await post(client, "/v1/refunds", {"order_id": order["id"], "amount": 4000})
    await post(client, "/v1/refunds", {"order_id": order["id"]})
    await gateway.settle_refunds()
    await gateway.drain()
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "refunded"
    books = await _clean(uow)
    assert books.get(f"creator_pending:CNY:{shop['creator']}", 0) == 0
    assert await _balance(client) == 333
