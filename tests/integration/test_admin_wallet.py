"""A customer's wallet in the admin console on both engines: balances, open lots and the
history with links to what caused each change, the adjustment form (credits, debits,
refusals that write nothing, CSRF), the customer search and the links to the page."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from tests.integration.shop import order_body, post
from tuition import web
from tuition.clock import FrozenClock
from tuition.services import admin as admin_service
from tuition.services.ledger import verify_ledger
from tuition.services.wallet import wallet_problems
from tuition.simulator.app import Simulator
from tuition.store.tables import journal_entries, wallet_transactions
from tuition.store.uow import UnitOfWork

EMAIL, PASSWORD = "ops@example.com", "a-long-enough-password"


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    web.mount(app)


@pytest.fixture
async def console(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> httpx.AsyncClient:
    """A browser signed in to the console, showing English pages."""
    await admin_service.create_admin_user(uow, EMAIL, PASSWORD, clock)
    anon_client.headers["Accept-Language"] = "en"
    form = await anon_client.get("/admin/login")
    signed_in = await anon_client.post(
        "/admin/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": _token(form.text)}
    )
    assert signed_in.status_code == 303
    return anon_client


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


async def _credit(client: httpx.AsyncClient, amount: int, customer: str = "u_1") -> Any:
    return await post(
        client,
        f"/v1/customers/{customer}/wallet/adjustments",
        {"currency": "CNY", "amount": amount, "reason": "goodwill"},
    )


async def _balances(client: httpx.AsyncClient, customer: str = "u_1") -> dict[str, int]:
    got = (await client.get(f"/v1/customers/{customer}/wallet")).json()
    return {b["currency"]: b["balance"] for b in got["balances"]}


async def _adjust(console: httpx.AsyncClient, customer: str = "u_1", **form: str) -> httpx.Response:
    page = await console.get(f"/admin/customers/{customer}")
    data = {"csrf_token": _token(page.text), "currency": "CNY", **form}
    return await console.post(f"/admin/customers/{customer}/adjustments", data=data)


async def _written(uow: UnitOfWork) -> tuple[int, int]:
    async with uow:
        txs = (
            await uow.conn.execute(select(func.count()).select_from(wallet_transactions))
        ).scalar_one()
        entries = (
            await uow.conn.execute(select(func.count()).select_from(journal_entries))
        ).scalar_one()
    return int(txs), int(entries)


def _section(html: str, testid: str) -> str:
    start = html.index(f'data-testid="{testid}"')
    return html[start : html.index("</table>", start)]


async def test_the_customer_page_shows_balances_lots_and_history_with_their_causes(
    client: httpx.AsyncClient,
    console: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
) -> None:
    await _credit(client, 20000)
    spent = await post(client, "/v1/orders", order_body(shop, "c1"))
    paid = await post(client, f"/v1/orders/{spent['id']}/payments", {"channel": "wallet"})
    refunded = await post(client, "/v1/refunds", {"order_id": spent["id"]})
    assert refunded["status"] == "succeeded"
    topup = await post(client, "/v1/orders", order_body(shop, "coins"))
    attempt = await post(
        client, f"/v1/orders/{topup['id']}/payments", {"channel": "sandbox", "method": "qr"}
    )
    await gateway.pay(attempt["id"])
    await gateway.drain()
    assert await _balances(client) == {"CNY": 20000 + 1000}

    page = await console.get("/admin/customers/u_1")
    assert page.status_code == 200
    html = page.text
    assert 'data-testid="balance-CNY">CN¥210.00<' in html
    lots = _section(html, "lots")
    # The adjustment's lot was spent, the refund came back as a lot, then the top-up's.
    assert [k for k in re.findall(r"<td>(Adjustment|Refund|Top-up)</td>", lots)] == [
        "Adjustment",
        "Refund",
        "Top-up",
    ]
    assert f"order:{topup['id']}:0" in lots
    assert "CN¥101.00" in lots  # what is left of the 200.00 adjustment after 99.00
    history = _section(html, "transactions")
    causes = re.findall(
        r"<td>(Top-up|Refund to balance|Order paid from balance|Adjustment)", history
    )
    assert causes == ["Top-up", "Refund to balance", "Order paid from balance", "Adjustment"]
    assert f'href="/admin/orders/{topup["id"]}"' in history
    assert f'href="/admin/orders/{spent["id"]}#refunds"' in history
    assert f'href="/admin/orders/{spent["id"]}"' in history
    assert paid["id"] in history
    assert refunded["id"] in history
    assert "-CN¥99.00" in history
    assert "+CN¥10.00" in history
    assert "api_key:" in history  # who made the adjustment
    orders = _section(html, "customer-orders")
    assert spent["id"] in orders
    assert topup["id"] in orders
    assert 'href="/admin/orders?customer=u_1"' in html
    assert (await verify_ledger(uow)).ok


async def test_an_operator_credits_and_debits_a_wallet_recorded_with_their_email(
    client: httpx.AsyncClient, console: httpx.AsyncClient, uow: UnitOfWork
) -> None:
    credited = await _adjust(console, amount="12.50", reason="Course outage, week 12")
    assert credited.status_code == 303
    assert credited.headers["location"].startswith("/admin/customers/u_1?adjusted=wtx_")
    shown = await console.get(credited.headers["location"])
    notice = shown.text[shown.text.index('data-testid="adjustment-notice"') :]
    assert "Credited CN¥12.50." in notice[:400]
    assert "The CNY balance is now CN¥12.50." in notice[:400]
    debited = await _adjust(console, amount=" -3.00 ", reason="Typo last time")
    shown = await console.get(debited.headers["location"])
    assert "Debited CN¥3.00." in shown.text
    assert 'data-testid="balance-CNY">CN¥9.50<' in shown.text
    assert await _balances(client) == {"CNY": 950}
    history = (await client.get("/v1/customers/u_1/wallet/transactions")).json()["data"]
    assert [(t["amount"], t["created_by"], t["cause"]) for t in history] == [
        (-300, f"admin:{EMAIL}", "adjustment"),
        (1250, f"admin:{EMAIL}", "adjustment"),
    ]
    assert history[1]["description"] == "adjustment: Course outage, week 12"
    # A first credit in a currency opens that balance; "+" is allowed.
    await _adjust(console, currency="usd", amount="+5", reason="USD goodwill")
    assert await _balances(client) == {"CNY": 950, "USD": 500}
    assert (await verify_ledger(uow)).ok
    assert await wallet_problems(uow) == []


async def test_a_debit_the_balance_does_not_cover_is_refused_and_writes_nothing(
    client: httpx.AsyncClient, console: httpx.AsyncClient, uow: UnitOfWork
) -> None:
    await _credit(client, 500)
    before = await _written(uow)
    refused = await _adjust(console, amount="-100.00", reason="Chargeback")
    assert refused.status_code == 409
    assert 'data-testid="adjustment-problem"' in refused.text
    assert "<code>insufficient_balance</code>" in refused.text
    assert "The balance does not cover that debit." in refused.text
    assert 'value="-100.00"' in refused.text
    assert 'value="Chargeback"' in refused.text
    assert await _written(uow) == before
    assert await _balances(client) == {"CNY": 500}


@pytest.mark.parametrize(
    ("form", "status", "code"),
    [
        ({"amount": "12.5.0", "reason": "x"}, 422, "amount_invalid"),
        ({"amount": "1.234", "reason": "x"}, 422, "amount_invalid"),
        ({"amount": "0.00", "reason": "x"}, 422, "validation_failed"),
        ({"amount": "", "reason": "x"}, 422, "validation_failed"),
        ({"amount": "1.00", "reason": "   "}, 422, "reason_missing"),
        ({"amount": "1.00", "reason": "x" * 301}, 422, "reason_invalid"),
        ({"amount": "1.00", "reason": "x", "currency": "XYZ"}, 400, "currency_unknown"),
        ({"amount": "99999999999999999", "reason": "x"}, 400, "amount_too_large"),
    ],
)
async def test_a_wrong_adjustment_names_what_is_wrong_and_writes_nothing(
    console: httpx.AsyncClient, uow: UnitOfWork, form: dict[str, str], status: int, code: str
) -> None:
    before = await _written(uow)
    refused = await _adjust(console, **form)
    assert refused.status_code == status
    assert f"<code>{code}</code>" in refused.text
    assert await _written(uow) == before


async def test_an_adjustment_without_the_sessions_csrf_token_is_refused(
    client: httpx.AsyncClient, console: httpx.AsyncClient, uow: UnitOfWork
) -> None:
    for token in ("", "forged"):
        refused = await console.post(
            "/admin/customers/u_1/adjustments",
            data={"csrf_token": token, "currency": "CNY", "amount": "50.00", "reason": "x"},
        )
        assert refused.status_code == 403
    assert await _written(uow) == (0, 0)
    console.cookies.clear()
    anonymous = await console.get("/admin/customers/u_1")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/admin/login")


async def test_the_history_pages_back_newest_first(
    client: httpx.AsyncClient, console: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tuition.web.admin_customer.PAGE", 2)
    made = [await _credit(client, amount) for amount in (100, 200, 300)]
    first = await console.get("/admin/customers/u_1")
    shown = re.findall(r"wtx_\w+", _section(first.text, "transactions"))
    assert shown == [made[2]["id"], made[1]["id"]]
    older = re.search(r'href="([^"]*after=wtx_\w+)#transactions"', first.text)
    assert older is not None
    second = await console.get(older.group(1).replace("&amp;", "&"))
    assert re.findall(r"wtx_\w+", _section(second.text, "transactions")) == [made[0]["id"]]
    assert "Newest transactions" in second.text
    assert "after=" not in _section(second.text, "transactions")


async def test_customers_are_found_by_id_and_linked_from_the_other_pages(
    client: httpx.AsyncClient, console: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator
) -> None:
    found = await console.get("/admin/customers", params={"q": " u_1 "})
    assert found.status_code == 303
    assert found.headers["location"] == "/admin/customers/u_1"
    odd = await console.get("/admin/customers", params={"q": "member:42@site"})
    assert odd.headers["location"] == "/admin/customers/member%3A42%40site"
    assert (await console.get(odd.headers["location"])).status_code == 200
    bad = await console.get("/admin/customers", params={"q": "<script>"})
    assert bad.status_code == 404
    assert "<script>" not in bad.text
    assert (await console.get("/admin/customers")).status_code == 200
    assert (await console.get("/admin/customers/not%20an%20id")).status_code == 404
    empty = await console.get("/admin/customers/u_new")
    assert "This customer has no wallet yet." in empty.text

    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    attempt = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "qr"}
    )
    await gateway.pay(attempt["id"])
    await gateway.drain()
    await post(client, "/v1/refunds", {"order_id": order["id"]})
    link = 'href="/admin/customers/u_1"'
    for path in (
        "/admin/orders",
        "/admin/payments",
        "/admin/refunds",
        f"/admin/orders/{order['id']}",
    ):
        page = await console.get(path)
        assert link in page.text, path
    assert 'href="/admin/customers"' in (await console.get("/admin")).text
