"""Wallets on both engines: top-ups credit a balance (a liability, no creator share),
orders are paid from it, never below zero, and the books match the balances."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.integration.shop import order_body, post
from tuition.services.ledger import verify_ledger
from tuition.services.wallet import wallet_problems
from tuition.simulator.app import Simulator
from tuition.store.uow import UnitOfWork


async def _pay_by_channel(
    client: httpx.AsyncClient, gateway: Simulator, shop: dict[str, str], *names: str, **extra: Any
) -> dict[str, Any]:
    order = await post(client, "/v1/orders", order_body(shop, *names, **extra))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    return order


async def _wallet(client: httpx.AsyncClient, customer: str = "u_1") -> dict[str, int]:
    got = (await client.get(f"/v1/customers/{customer}/wallet")).json()
    return {b["currency"]: b["balance"] for b in got["balances"]}


async def _credit(client: httpx.AsyncClient, amount: int, customer: str = "u_1") -> dict[str, Any]:
    return await post(
        client,
        f"/v1/customers/{customer}/wallet/adjustments",
        {"currency": "CNY", "amount": amount, "reason": "goodwill"},
    )


async def _books_clean(uow: UnitOfWork) -> None:
    report = await verify_ledger(uow)
    assert report.ok, report.problems
    assert await wallet_problems(uow) == []


async def test_a_top_up_credits_the_wallet_once_and_no_creator(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    gateway.duplicate_notifications(2)  # the gateway says it three times
    order = await _pay_by_channel(client, gateway, shop, "coins")
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
    assert await _wallet(client) == {"CNY": 1000}
    async with uow:
        balances = {k: v for k, v in (await uow.ledger.balances()).items() if v}
    assert balances == {
        "channel_clearing:CNY:sandbox": 1000 - 6,
        "channel_fees:CNY": 6,
        "customer_wallet:CNY:u_1": -1000,  # owed to the buyer, not revenue
    }
    history = (await client.get("/v1/customers/u_1/wallet/transactions")).json()["data"]
    assert [(t["cause"], t["amount"], t["balance_after"]) for t in history] == [
        ("topup", 1000, 1000)
    ]
    await _books_clean(uow)


async def test_an_order_paid_from_the_wallet_books_revenue_and_the_creators_share(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork
) -> None:
    await _credit(client, 20000)
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    paid = await post(client, f"/v1/orders/{order['id']}/payments", {"channel": "wallet"})
    assert paid["status"] == "succeeded"
    assert paid["channel"] == "wallet"
    assert paid["fee"] == 0
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
    access = (await client.get(f"/v1/customers/u_1/entitlements/{shop['c1']}")).json()
    assert access["has_access"] is True
    assert await _wallet(client) == {"CNY": 10100}
    async with uow:
        balances = {k: v for k, v in (await uow.ledger.balances()).items() if v}
    assert balances == {
        "wallet_adjustments:CNY": 20000,
        "customer_wallet:CNY:u_1": -10100,
        f"creator_pending:CNY:{shop['creator']}": -6930,
        "platform_revenue:CNY": -2970,
    }
    debit = (await client.get("/v1/customers/u_1/wallet/transactions")).json()["data"][0]
    assert (debit["cause"], debit["cause_id"], debit["amount"]) == ("order", paid["id"], -9900)
    assert debit["balance_after"] == 10100
    await _books_clean(uow)


async def test_not_enough_balance_is_refused_naming_the_shortfall_and_writes_nothing(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork
) -> None:
    await _credit(client, 500)
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    refused = await client.post(f"/v1/orders/{order['id']}/payments", json={"channel": "wallet"})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "insufficient_balance"
    assert "9400 more" in refused.json()["error"]["message"]
    assert (await client.get(f"/v1/orders/{order['id']}/payments")).json()["data"] == []
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "pending_payment"
    assert await _wallet(client) == {"CNY": 500}
    no_method = await client.post(f"/v1/orders/{order['id']}/payments", json={"channel": "sandbox"})
    assert no_method.status_code == 422
    await _books_clean(uow)


async def test_lots_are_spent_oldest_first(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    first = await _credit(client, 300)
    await _pay_by_channel(client, gateway, shop, "coins")  # +1000, a later lot
    course = await post(
        client,
        "/v1/products",
        {
            "creator_id": shop["creator"],
            "title": "Short",
            "kind": "article",
            "prices": {"CNY": 1100},
        },
    )
    order = await post(client, "/v1/orders", order_body({"a": course["id"]}, "a"))
    await post(client, f"/v1/orders/{order['id']}/payments", {"channel": "wallet"})
    debit = (await client.get("/v1/customers/u_1/wallet/transactions")).json()["data"][0]
    first_lot = first["lots"][0]["lot_id"]
    assert debit["lots"][0] == {"lot_id": first_lot, "amount": 300}
    assert debit["lots"][1]["amount"] == 800
    wallet = (await client.get("/v1/customers/u_1/wallet")).json()
    assert [(lot["kind"], lot["remaining"]) for lot in wallet["lots"]] == [("topup", 200)]
    await _books_clean(uow)


async def test_a_refund_of_a_wallet_payment_goes_back_to_the_wallet(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork
) -> None:
    await _credit(client, 9900)
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    await post(client, f"/v1/orders/{order['id']}/payments", {"channel": "wallet"})
    assert await _wallet(client) == {"CNY": 0}
    refund = await post(client, "/v1/refunds", {"order_id": order["id"]})
    assert refund["status"] == "succeeded"
    assert await _wallet(client) == {"CNY": 9900}
    kinds = [lot["kind"] for lot in (await client.get("/v1/customers/u_1/wallet")).json()["lots"]]
    assert kinds == ["refund"]
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "refunded"
    await _books_clean(uow)


async def test_adjustments_are_recorded_and_never_take_a_balance_below_zero(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork
) -> None:
    credited = await _credit(client, 700)
    assert credited["created_by"].startswith("api_key:key_")
    assert credited["description"] == "adjustment: goodwill"
    too_much = await client.post(
        "/v1/customers/u_1/wallet/adjustments",
        json={"currency": "CNY", "amount": -701, "reason": "chargeback"},
    )
    assert too_much.status_code == 409
    assert too_much.json()["error"]["code"] == "insufficient_balance"
    taken = await post(
        client,
        "/v1/customers/u_1/wallet/adjustments",
        {"currency": "CNY", "amount": -700, "reason": "chargeback"},
    )
    assert taken["balance_after"] == 0
    for bad in ({"currency": "CNY", "amount": 0, "reason": "x"}, {"currency": "CNY", "amount": 1}):
        answer = await client.post("/v1/customers/u_1/wallet/adjustments", json=bad)
        assert answer.status_code == 422
    unknown = await client.post(
        "/v1/customers/u_1/wallet/adjustments",
        json={"currency": "XXQ", "amount": 1, "reason": "x"},
    )
    assert unknown.status_code == 400
    await _books_clean(uow)


async def test_a_top_up_is_not_bought_with_balance(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    await _credit(client, 5000)
    topup = await post(client, "/v1/orders", order_body(shop, "coins"))
    refused = await client.post(f"/v1/orders/{topup['id']}/payments", json={"channel": "wallet"})
    assert refused.json()["error"]["code"] == "wallet_cannot_pay_topup"


async def test_an_unspent_top_up_is_refunded_to_its_channel_and_leaves_the_wallet(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    paid = await _pay_by_channel(client, gateway, shop, "coins")
    refund = await post(client, "/v1/refunds", {"order_id": paid["id"]})
    await gateway.drain()
    assert (await client.get(f"/v1/refunds/{refund['id']}")).json()["status"] == "succeeded"
    assert refund["lines"][0]["revokes_access"] is True
    assert await _wallet(client) == {"CNY": 0}
    async with uow:
        balances = {k: v for k, v in (await uow.ledger.balances()).items() if v}
    assert balances == {}  # every account back to zero (the channel returned its fee)
    await _books_clean(uow)


async def test_a_spent_top_up_cannot_be_refunded_and_a_failed_one_comes_back(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    spent = await _pay_by_channel(client, gateway, shop, "coins")
    cheap = await post(
        client,
        "/v1/products",
        {
            "creator_id": shop["creator"],
            "title": "Tip",
            "kind": "consultation",
            "prices": {"CNY": 1},
        },
    )
    order = await post(client, "/v1/orders", order_body({"t": cheap["id"]}, "t"))
    await post(client, f"/v1/orders/{order['id']}/payments", {"channel": "wallet"})
    refused = await client.post("/v1/refunds", json={"order_id": spent["id"], "override": True})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "topup_spent"

    second = await _pay_by_channel(client, gateway, shop, "coins")
    gateway.fail_next_refunds(1)
    refund = await post(client, "/v1/refunds", {"order_id": second["id"]})
    await gateway.drain()
    assert (await client.get(f"/v1/refunds/{refund['id']}")).json()["status"] == "failed"
    assert await _wallet(client) == {"CNY": 1999}  # taken back, then back when it failed
    moves = (await client.get("/v1/customers/u_1/wallet/transactions")).json()["data"]
    assert [(t["cause"], t["amount"]) for t in moves[:2]] == [("refund", 1000), ("refund", -1000)]
    await _books_clean(uow)


async def test_a_refund_to_the_wallet_credits_the_balance_and_keeps_the_fee(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    paid = await _pay_by_channel(client, gateway, shop, "c1")
    refund = await post(
        client, "/v1/refunds", {"order_id": paid["id"], "amount": 3000, "to": "wallet"}
    )
    assert refund["status"] == "succeeded"
    assert refund["to"] == "wallet"
    assert refund["fee_returned"] == 0
    assert await _wallet(client) == {"CNY": 3000}
    assert (await client.get(f"/v1/orders/{paid['id']}")).json()["status"] == ("partially_refunded")
    async with uow:
        balances = await uow.ledger.balances()
    assert balances["channel_clearing:CNY:sandbox"] == 9900 - 59  # no money left the channel
    assert balances["customer_wallet:CNY:u_1"] == -3000
    await _books_clean(uow)


@pytest.mark.postgres_only
async def test_concurrent_spends_never_overdraw_the_balance(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork
) -> None:
    cheap = await post(
        client,
        "/v1/products",
        {
            "creator_id": shop["creator"],
            "title": "Q&A",
            "kind": "consultation",
            "prices": {"CNY": 100},
        },
    )
    await _credit(client, 10000)  # covers 100 of the 1,000 spends
    orders = await asyncio.gather(
        *(post(client, "/v1/orders", order_body({"q": cheap["id"]}, "q")) for _ in range(1000))
    )
    answers = await asyncio.gather(
        *(client.post(f"/v1/orders/{o['id']}/payments", json={"channel": "wallet"}) for o in orders)
    )
    codes = [a.status_code for a in answers]
    assert codes.count(201) == 100, {a.text for a in answers if a.status_code not in (201, 409)}
    assert codes.count(409) == 900
    assert await _wallet(client) == {"CNY": 0}
    await _books_clean(uow)


async def test_an_adjustment_with_a_key_is_made_once(app: Any, clock: Any, uow: UnitOfWork) -> None:
    from tuition.api.payments import payment_deps
    from tuition.services.wallet import Adjustment, adjust

    deps = payment_deps(app.state.modes.live)
    cmd = Adjustment("u_9", "CNY", 250, "goodwill", "admin:ops@example.com", key="form-1")
    first = await adjust(cmd, uow, deps=deps)
    again = await adjust(cmd, uow, deps=deps)
    assert again.id == first.id
    async with uow:
        assert await uow.wallets.balances("u_9") == {"CNY": 250}
    await _books_clean(uow)


@pytest.mark.postgres_only
async def test_wallet_payments_refunds_into_it_and_adjustments_race_without_errors(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    cheap = await post(
        client,
        "/v1/products",
        {
            "creator_id": shop["creator"],
            "title": "Q&A",
            "kind": "consultation",
            "prices": {"CNY": 100},
        },
    )
    await _credit(client, 3000)
    to_pay = [
        await post(client, "/v1/orders", order_body({"q": cheap["id"]}, "q")) for _ in range(20)
    ]
    paid = [await _pay_by_channel(client, gateway, shop, "c1") for _ in range(1)]
    paid += [await _pay_by_channel(client, gateway, {"q": cheap["id"]}, "q") for _ in range(10)]
    calls = [
        *(
            client.post(f"/v1/orders/{o['id']}/payments", json={"channel": "wallet"})
            for o in to_pay
        ),
        *(client.post("/v1/refunds", json={"order_id": o["id"], "to": "wallet"}) for o in paid),
        *(
            client.post(
                "/v1/customers/u_1/wallet/adjustments",
                json={"currency": "CNY", "amount": amount, "reason": "race"},
            )
            for amount in (50, -50, 70, -70, 90)
        ),
    ]
    answers = await asyncio.gather(*calls)
    assert all(a.status_code < 500 for a in answers), [
        a.text for a in answers if a.status_code >= 500
    ]
    await _books_clean(uow)


async def test_an_order_of_two_top_ups_is_refunded_with_a_wallet_move_for_each(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    other = await post(
        client,
        "/v1/products",
        {
            "creator_id": shop["creator"],
            "title": "Pack 5",
            "kind": "topup",
            "topup_credit": 500,
            "prices": {"CNY": 500},
        },
    )
    paid = await _pay_by_channel(client, gateway, {**shop, "five": other["id"]}, "coins", "five")
    assert await _wallet(client) == {"CNY": 1500}
    await post(client, "/v1/refunds", {"order_id": paid["id"]})
    await gateway.drain()
    moves = (await client.get("/v1/customers/u_1/wallet/transactions")).json()["data"]
    refunds = [(t["amount"], t["balance_after"]) for t in moves if t["cause"] == "refund"]
    assert sorted(refunds) == [(-1000, 500), (-500, 0)] or sorted(refunds) == [
        (-1000, 0),
        (-500, 1000),
    ]
    assert await _wallet(client) == {"CNY": 0}
    await _books_clean(uow)
