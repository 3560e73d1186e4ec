"""Paying from balance on the hosted checkout page, on both engines: offered when the
buyer's balance covers the order, shown with the shortfall when it does not, never for
a top-up; paying is at once and the page shows it paid; a paid top-up says what it
credited."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.shop import order_body, post
from tuition import web
from tuition.services.ledger import verify_ledger
from tuition.services.wallet import wallet_problems
from tuition.simulator.app import Simulator
from tuition.store.uow import UnitOfWork

EN = {"accept-language": "en"}


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    web.mount(app)


def _link(order: dict[str, Any]) -> tuple[str, str]:
    url = urlsplit(order["checkout_url"])
    return url.path, parse_qs(url.query)["sig"][0]


async def _credit(client: httpx.AsyncClient, amount: int, currency: str = "CNY") -> None:
    await post(
        client,
        "/v1/customers/u_1/wallet/adjustments",
        {"currency": currency, "amount": amount, "reason": "goodwill"},
    )


async def _balance(client: httpx.AsyncClient) -> dict[str, int]:
    got = (await client.get("/v1/customers/u_1/wallet")).json()
    return {b["currency"]: b["balance"] for b in got["balances"]}


def _wallet_option(html: str) -> str:
    start = html.index('data-testid="wallet-option"')
    return html[start : html.index("</label>", start)]


async def test_a_balance_that_covers_the_order_is_offered_and_pays_at_once(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
) -> None:
    await _credit(client, 20000)
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    path, sig = _link(order)
    page = await anon_client.get(path, params={"sig": sig}, headers=EN)
    option = _wallet_option(page.text)
    assert "Pay with balance (CN¥200.00 available)" in option
    assert 'value="wallet:balance" checked' in option  # the buyer's own money comes first
    assert 'value="sandbox:page"' in page.text  # the channels are still there
    paid = await anon_client.post(f"{path}/attempts", data={"sig": sig, "option": "wallet:balance"})
    assert paid.status_code == 303
    assert "error=" not in paid.headers["location"]
    shown = await anon_client.get(paid.headers["location"], headers=EN)
    assert 'data-status="paid"' in shown.text
    assert "The order was paid from your balance" in shown.text
    assert 'data-testid="wallet-option"' not in shown.text
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
    payments = (await client.get(f"/v1/orders/{order['id']}/payments")).json()["data"]
    assert [(p["channel"], p["status"], p["amount"]) for p in payments] == [
        ("wallet", "succeeded", 9900)
    ]
    assert await _balance(client) == {"CNY": 10100}
    again = await anon_client.post(
        f"{path}/attempts", data={"sig": sig, "option": "wallet:balance"}
    )
    assert again.headers["location"].endswith("error=order_not_payable")
    assert await _balance(client) == {"CNY": 10100}
    assert (await verify_ledger(uow)).ok
    assert await wallet_problems(uow) == []


async def test_a_balance_short_of_the_total_is_shown_with_the_shortfall_and_cannot_pay(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
) -> None:
    await _credit(client, 500)
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    path, sig = _link(order)
    page = await anon_client.get(path, params={"sig": sig}, headers=EN)
    option = _wallet_option(page.text)
    assert "Pay with balance (CN¥5.00 available)" in option
    assert "CN¥94.00 short" in option
    assert " disabled" in option
    # The channel is offered, but the sandbox is never chosen for the buyer.
    assert 'value="sandbox:page" required>' in page.text
    # A form posted anyway (an old tab, a hand-made request) pays nothing.
    refused = await anon_client.post(
        f"{path}/attempts", data={"sig": sig, "option": "wallet:balance"}
    )
    assert refused.headers["location"].endswith("error=insufficient_balance")
    shown = await anon_client.get(refused.headers["location"], headers=EN)
    assert "Your balance does not cover this order." in shown.text
    assert (await client.get(f"/v1/orders/{order['id']}/payments")).json()["data"] == []
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "pending_payment"
    assert await _balance(client) == {"CNY": 500}


async def test_no_balance_in_the_orders_currency_offers_nothing(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    path, sig = _link(order)
    page = await anon_client.get(path, params={"sig": sig}, headers=EN)
    assert 'data-testid="wallet-option"' not in page.text
    # The channel is offered, but the sandbox is never chosen for the buyer.
    assert 'value="sandbox:page" required>' in page.text
    await _credit(client, 100000, currency="CNY")
    usd = await post(client, "/v1/orders", order_body(shop, "c1", currency="USD"))
    usd_path, usd_sig = _link(usd)
    page = await anon_client.get(usd_path, params={"sig": usd_sig}, headers=EN)
    assert 'data-testid="wallet-option"' not in page.text


async def test_a_top_up_is_never_paid_from_balance_and_says_what_it_credited(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
) -> None:
    await _credit(client, 20000)
    order = await post(client, "/v1/orders", order_body(shop, "coins"))
    path, sig = _link(order)
    page = await anon_client.get(path, params={"sig": sig}, headers=EN)
    assert 'data-testid="wallet-option"' not in page.text
    # The paid panel is ready for the page's poll before the payment comes in.
    assert "CN¥10.00 has been added to your balance" in page.text
    refused = await anon_client.post(
        f"{path}/attempts", data={"sig": sig, "option": "wallet:balance"}
    )
    assert refused.headers["location"].endswith("error=wallet_cannot_pay_topup")
    assert await _balance(client) == {"CNY": 20000}

    started = await anon_client.post(f"{path}/attempts", data={"sig": sig, "option": "sandbox:qr"})
    assert started.status_code == 303
    payments = (await client.get(f"/v1/orders/{order['id']}/payments")).json()["data"]
    await gateway.pay(payments[0]["id"])
    await gateway.drain()
    paid = await anon_client.get(path, params={"sig": sig}, headers=EN)
    assert 'data-status="paid"' in paid.text
    credited = paid.text[paid.text.index('data-testid="topup-credited"') :][:300]
    assert "CN¥10.00 has been added to your balance." in credited
    assert "your purchase is ready" not in paid.text
    zh = await anon_client.get(path, params={"sig": sig, "lang": "zh-CN"})
    assert "¥10.00 已充入你的余额" in zh.text
    assert await _balance(client) == {"CNY": 21000}


async def test_paying_from_balance_needs_the_links_signature(
    client: httpx.AsyncClient, anon_client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    await _credit(client, 20000)
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    path, sig = _link(order)
    tampered = sig[:-1] + ("1" if sig.endswith("0") else "0")
    refused = await anon_client.post(
        f"{path}/attempts", data={"sig": tampered, "option": "wallet:balance"}
    )
    assert refused.status_code == 404
    assert await _balance(client) == {"CNY": 20000}
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "pending_payment"


async def test_a_balance_short_of_the_total_pays_part_and_the_channel_the_rest(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
) -> None:
    await _credit(client, 2000)
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    path, sig = _link(order)
    page = await anon_client.get(path, params={"sig": sig}, headers=EN)
    start = page.text.index('data-testid="split-option"')
    split = page.text[start : page.text.index("</label>", start)]
    assert "Use my balance: CN¥20.00 from it, CN¥79.00 with the method above" in split
    started = await anon_client.post(
        f"{path}/attempts", data={"sig": sig, "option": "sandbox:page", "use_balance": "1"}
    )
    assert started.status_code == 303
    assert "error=" not in started.headers["location"]
    payments = (await client.get(f"/v1/orders/{order['id']}/payments")).json()["data"]
    assert sorted((p["channel"], p["status"], p["amount"]) for p in payments) == [
        ("sandbox", "pending", 7900),
        ("wallet", "pending", 2000),
    ]
    channel = next(p for p in payments if p["channel"] == "sandbox")
    await gateway.pay(channel["id"])
    await gateway.drain()
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
    assert await _balance(client) == {"CNY": 0}
    report = await verify_ledger(uow)
    assert report.ok, report.problems
    assert await wallet_problems(uow) == []


async def test_a_coin_order_is_paid_from_coins_and_a_coin_pack_says_what_it_credited(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
) -> None:
    pack = await post(
        client,
        "/v1/products",
        {
            "creator_id": shop["creator"],
            "kind": "topup",
            "title": "100 coins",
            "prices": {"CNY": 1000},
            "topup_coins": 100,
            "topup_bonus_coins": 20,
        },
    )
    bought = await post(
        client,
        "/v1/orders",
        {"customer_id": "u_1", "currency": "CNY", "items": [{"product_id": pack["id"]}]},
    )
    payment = await post(
        client, f"/v1/orders/{bought['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    path, sig = _link(bought)
    done = await anon_client.get(path, params={"sig": sig}, headers=EN)
    assert "120 coins has been added to your balance, 20 coins of it as a bonus" in done.text
    question = await post(
        client,
        "/v1/products",
        {
            "creator_id": shop["creator"],
            "kind": "consultation",
            "title": "Ask",
            "prices": {"XCN": 50},
        },
    )
    order = await post(
        client,
        "/v1/orders",
        {"customer_id": "u_1", "currency": "XCN", "items": [{"product_id": question["id"]}]},
    )
    path, sig = _link(order)
    page = await anon_client.get(path, params={"sig": sig}, headers=EN)
    assert "Pay with balance (120 coins available)" in _wallet_option(page.text)
    assert 'value="sandbox:' not in page.text  # coins are not sold for money here
    paid = await anon_client.post(f"{path}/attempts", data={"sig": sig, "option": "wallet:balance"})
    assert "error=" not in paid.headers["location"]
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
    assert await _balance(client) == {"XCN": 70}
