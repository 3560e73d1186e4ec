"""Coins on both engines: packs credit paid and bonus lots, the same pack costs what its
surface's price list says, coin purchases recognise revenue at the money value of the
lots they spend, and the books match the wallets throughout.

The numbers are docs/wallet.md's worked example: a pack of 100 coins plus 20 bonus
coins at ¥10.00 on the web and ¥12.00 on iOS, and a paid question of 50 coins with a 70 %
creator share.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import pytest

from tests.integration.shop import post
from tuition.domain.coins import SpendOrder
from tuition.services.earnings import payee_problems
from tuition.services.ledger import verify_ledger
from tuition.services.wallet import wallet_problems
from tuition.simulator.app import Simulator
from tuition.store.uow import UnitOfWork

FEE = 6  # the sandbox's 0.6 % of 10.00


@pytest.fixture
async def coins(client: httpx.AsyncClient) -> dict[str, str]:
    creator = await post(client, "/v1/creators", {"name": "Lin", "default_revenue_share": "0.7"})
    pack = await post(
        client,
        "/v1/products",
        {
            "creator_id": creator["id"],
            "kind": "topup",
            "title": "100 学币",
            "prices": {"CNY": 1000},
            "surface_prices": {"ios": {"CNY": 1200}},
            "topup_coins": 100,
            "topup_bonus_coins": 20,
        },
    )
    column = await post(
        client,
        "/v1/products",
        {
            "creator_id": creator["id"],
            "kind": "consultation",
            "title": "A paid question",
            "prices": {"XCN": 50},
        },
    )
    return {"creator": creator["id"], "pack": pack["id"], "column": column["id"]}


async def _buy_pack(
    client: httpx.AsyncClient, gateway: Simulator, ids: dict[str, str], surface: str = "web"
) -> dict[str, Any]:
    order = await post(
        client,
        "/v1/orders",
        {
            "customer_id": "u_1",
            "currency": "CNY",
            "surface": surface,
            "items": [{"product_id": ids["pack"]}],
        },
    )
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    return order


async def _buy_column(client: httpx.AsyncClient, ids: dict[str, str]) -> dict[str, Any]:
    order = await post(
        client,
        "/v1/orders",
        {"customer_id": "u_1", "currency": "XCN", "items": [{"product_id": ids["column"]}]},
    )
    return await post(client, f"/v1/orders/{order['id']}/payments", {"channel": "wallet"})


async def _books(uow: UnitOfWork) -> dict[str, int]:
    report = await verify_ledger(uow)
    assert report.ok, report.problems
    assert await wallet_problems(uow) == []
    assert await payee_problems(uow) == []
    async with uow:
        return {k: v for k, v in (await uow.ledger.balances()).items() if v}


async def test_a_coin_pack_credits_paid_and_bonus_lots_and_no_revenue(
    client: httpx.AsyncClient, coins: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    gateway.duplicate_notifications(2)  # a retried top-up credits once
    order = await _buy_pack(client, gateway, coins)
    assert (order["surface"], order["total"]) == ("web", 1000)
    wallet = (await client.get("/v1/customers/u_1/wallet")).json()
    assert wallet["coins"] == {
        "code": "XCN",
        "name": "coins",
        "symbol": "",
        "decimals": 0,
        "balance": 120,
        "paid": 100,
        "bonus": 20,
        "value": 1000,
        "value_currency": "CNY",
    }
    assert [(b["currency"], b["kind"], b["paid"], b["bonus"]) for b in wallet["balances"]] == [
        ("XCN", "coins", 100, 20)
    ]
    lots = [(lot["kind"], lot["amount"], lot["value"]) for lot in wallet["lots"]]
    assert lots == [("topup", 100, 1000), ("bonus", 20, 0)]
    assert await _books(uow) == {
        "channel_clearing:CNY:sandbox": 1000 - FEE,
        "channel_fees:CNY": FEE,
        "customer_wallet:CNY:u_1": -1000,  # a liability: no creator share, no revenue
    }


async def test_the_same_pack_costs_what_the_surfaces_price_list_says(
    client: httpx.AsyncClient, coins: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    ios = await _buy_pack(client, gateway, coins, surface="ios")
    assert (ios["surface"], ios["total"], ios["lines"][0]["unit_price"]) == ("ios", 1200, 1200)
    android = await post(
        client,
        "/v1/orders",
        {
            "customer_id": "u_2",
            "currency": "CNY",
            "surface": "android",
            "items": [{"product_id": coins["pack"]}],
        },
    )
    assert android["total"] == 1000  # no android list: the product's own price
    wallet = (await client.get("/v1/customers/u_1/wallet")).json()
    assert wallet["coins"]["value"] == 1200  # the coins are worth what was paid
    balances = await _books(uow)
    assert balances["customer_wallet:CNY:u_1"] == -1200
    bad = await client.post(
        "/v1/orders",
        json={"customer_id": "u_1", "currency": "CNY", "surface": "iOS!", "items": []},
    )
    assert bad.status_code == 422


async def test_coins_spent_first_in_first_out_earn_what_their_lots_are_worth(
    client: httpx.AsyncClient, coins: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    await _buy_pack(client, gateway, coins)  # 100 paid coins worth 10.00, 20 bonus
    await _buy_pack(client, gateway, coins, surface="ios")  # 100 worth 12.00, 20 bonus
    creator = f"creator_pending:CNY:{coins['creator']}"

    first = await _buy_column(client, coins)  # 50 of the web lot: worth 5.00
    assert (first["status"], first["currency"], first["amount"]) == ("succeeded", "XCN", 50)
    books = await _books(uow)
    assert (books[creator], books["platform_revenue:CNY"]) == (-350, -150)

    await _buy_column(client, coins)  # the web lot's other 50: 5.00 more
    books = await _books(uow)
    assert (books[creator], books["platform_revenue:CNY"]) == (-700, -300)

    third = await _buy_column(client, coins)  # 20 web bonus (0) + 30 of the iOS lot (3.60)
    books = await _books(uow)
    assert (books[creator], books["platform_revenue:CNY"]) == (-700 - 252, -300 - 108)
    spent = (await client.get("/v1/customers/u_1/wallet/transactions")).json()["data"][0]
    assert spent["cause_id"] == third["id"]
    assert [(p["amount"], p["value"]) for p in spent["lots"]] == [(20, 0), (30, 360)]
    # What is left: 70 iOS coins worth 8.40 (12.00 - 3.60) and its 20 bonus coins.
    wallet = (await client.get("/v1/customers/u_1/wallet")).json()["coins"]
    assert (wallet["balance"], wallet["paid"], wallet["bonus"], wallet["value"]) == (
        90,
        70,
        20,
        840,
    )
    assert books["customer_wallet:CNY:u_1"] == -840


@pytest.mark.parametrize(
    ("order", "value"),
    [(SpendOrder.BONUS_LAST, 600), (SpendOrder.BONUS_FIRST, 120), (SpendOrder.FIFO, 360)],
)
async def test_the_spend_order_setting_decides_which_lots_a_purchase_takes(
    client: httpx.AsyncClient,
    coins: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    app: Any,
    order: SpendOrder,
    value: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _buy_pack(client, gateway, coins)
    await _buy_pack(client, gateway, coins, surface="ios")
    await _buy_column(client, coins)
    await _buy_column(client, coins)  # the web pack's paid coins are gone
    settings = app.state.modes.live.settings
    unit = settings.coin_unit()
    assert unit is not None
    monkeypatch.setattr(type(settings), "coin_unit", lambda _self: replace(unit, spend_order=order))
    await _buy_column(client, coins)
    spent = (await client.get("/v1/customers/u_1/wallet/transactions")).json()["data"][0]
    # bonus_last: 50 iOS paid coins = 6.00; bonus_first: 20 + 20 bonus, 10 paid = 1.20;
    # fifo: the web bonus 20, then 30 iOS paid = 3.60.
    assert sum(p["value"] for p in spent["lots"]) == value
    await _books(uow)


async def test_a_coin_priced_order_is_paid_in_coins_only_and_money_not_in_coins(
    client: httpx.AsyncClient, coins: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    order = await post(
        client,
        "/v1/orders",
        {"customer_id": "u_1", "currency": "XCN", "items": [{"product_id": coins["column"]}]},
    )
    by_channel = await client.post(
        f"/v1/orders/{order['id']}/payments", json={"channel": "sandbox", "method": "page"}
    )
    assert by_channel.status_code == 409
    assert by_channel.json()["error"]["code"] == "coin_order_needs_wallet"
    short = await client.post(f"/v1/orders/{order['id']}/payments", json={"channel": "wallet"})
    assert short.status_code == 409
    assert short.json()["error"]["code"] == "insufficient_balance"
    assert "50 more" in short.json()["error"]["message"]
    await _buy_pack(client, gateway, coins)
    creator = await post(client, "/v1/creators", {"name": "Mo"})
    course = await post(
        client,
        "/v1/products",
        {"creator_id": creator["id"], "kind": "course", "title": "c", "prices": {"CNY": 100}},
    )
    money = await post(
        client,
        "/v1/orders",
        {"customer_id": "u_1", "currency": "CNY", "items": [{"product_id": course["id"]}]},
    )
    with_coins = await client.post(f"/v1/orders/{money['id']}/payments", json={"channel": "wallet"})
    assert with_coins.status_code == 409  # 120 coins are no CNY balance
    assert with_coins.json()["error"]["code"] == "insufficient_balance"
    await _books(uow)


async def test_an_unspent_pack_is_refunded_whole_and_a_spent_one_is_refused(
    client: httpx.AsyncClient, coins: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    kept = await _buy_pack(client, gateway, coins)
    refunded = await _buy_pack(client, gateway, coins)
    refund = await post(client, "/v1/refunds", {"order_id": refunded["id"]})
    await gateway.settle_refunds()
    await gateway.drain()
    done = (await client.get(f"/v1/refunds/{refund['id']}")).json()
    assert (done["status"], done["amount"]) == ("succeeded", 1000)
    wallet = (await client.get("/v1/customers/u_1/wallet")).json()["coins"]
    assert (wallet["balance"], wallet["bonus"], wallet["value"]) == (120, 20, 1000)
    await _buy_column(client, coins)  # spends 50 of the first pack
    refused = await client.post("/v1/refunds", json={"order_id": kept["id"]})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "topup_spent"
    books = await _books(uow)
    assert books["customer_wallet:CNY:u_1"] == -500


async def test_a_pack_whose_bonus_coins_were_spent_is_not_refunded(
    client: httpx.AsyncClient, coins: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    pack = await _buy_pack(client, gateway, coins)
    await post(
        client,
        "/v1/customers/u_1/wallet/adjustments",
        {"currency": "XCN", "amount": -20, "reason": "bonus coins used by hand"},
    )
    refused = await client.post("/v1/refunds", json={"order_id": pack["id"]})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "topup_spent"
    await _books(uow)


async def test_coin_purchases_are_not_refunded_through_refunds(
    client: httpx.AsyncClient, coins: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    await _buy_pack(client, gateway, coins)
    paid = await _buy_column(client, coins)
    refused = await client.post("/v1/refunds", json={"order_id": paid["order_id"]})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "coin_order_not_refundable"
    await _books(uow)


async def test_coins_given_by_hand_are_worth_nothing_and_taking_them_moves_their_value(
    client: httpx.AsyncClient, coins: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    gift = await post(
        client,
        "/v1/customers/u_1/wallet/adjustments",
        {"currency": "XCN", "amount": 30, "reason": "apology"},
    )
    assert (gift["amount"], gift["lots"][0]["value"]) == (30, 0)
    assert await _books(uow) == {}  # no money moved
    await _buy_pack(client, gateway, coins)  # 100 worth 10.00 + 20 bonus
    taken = await post(
        client,
        "/v1/customers/u_1/wallet/adjustments",
        {"currency": "XCN", "amount": -80, "reason": "abuse"},
    )
    # FIFO: the 30 gifted (worth 0), then 50 paid coins worth 5.00.
    assert [(p["amount"], p["value"]) for p in taken["lots"]] == [(30, 0), (50, 500)]
    books = await _books(uow)
    assert books["wallet_adjustments:CNY"] == -500
    assert books["customer_wallet:CNY:u_1"] == -500
    too_much = await client.post(
        "/v1/customers/u_1/wallet/adjustments",
        json={"currency": "XCN", "amount": -71, "reason": "more"},
    )
    assert too_much.status_code == 409


async def test_a_coin_pack_is_priced_for_money_in_one_currency(
    client: httpx.AsyncClient, coins: dict[str, str]
) -> None:
    base = {"creator_id": coins["creator"], "kind": "topup", "title": "p", "topup_coins": 10}
    for body, code in [
        ({**base, "prices": {"XCN": 10}}, "topup_priced_in_coins"),
        ({**base, "prices": {"CNY": 100, "USD": 20}}, "coin_pack_currency"),
        ({**base, "prices": {"CNY": 100}, "topup_credit": 100}, "topup_credit_required"),
        ({**base, "prices": {"CNY": 100}, "surface_prices": {"ios": {"USD": 1}}}, None),
        ({**base, "prices": {"CNY": 100}, "surface_prices": {"web": {"CNY": 1}}}, None),
    ]:
        response = await client.post("/v1/products", json=body)
        assert response.status_code in (400, 422), (body, response.text)
        if code is not None:
            assert response.json()["error"]["code"] == code, body
