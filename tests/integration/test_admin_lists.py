"""The console's refunds, subscriptions, invoice requests and payees lists on both
engines, as the orders list: found by any id or gateway number in any case and by the
start of a customer id (a payee: of its name), a bad filter shown as an error, sorted,
paged both ways with totals, and exported as filtered to a streamed CSV checked row by
row (amounts in major units with the currency, times in the platform's time zone)."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.integration.shop import order_body, post
from tests.integration.subscription_shop import subscribe
from tuition import web
from tuition.clock import FrozenClock
from tuition.domain.operators import Role
from tuition.services import admin as admin_service
from tuition.simulator.app import Simulator
from tuition.store.admin_lists import (
    AdminLists,
    InvoiceSearch,
    PayeeSearch,
    RefundSearch,
    SubscriptionSearch,
)
from tuition.store.tables import payments, refunds
from tuition.store.uow import UnitOfWork
from tuition.web import (
    admin_filters,
    admin_invoices,
    admin_payouts,
    admin_refunds,
    admin_subscriptions,
)

PASSWORD = "a-long-enough-password"
SMALL_PAGE = 2


@pytest.fixture(autouse=True)
def _pages(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    web.mount(app)
    # Two rows a page: paging both ways is seen with a handful of rows.
    for module in (
        admin_filters,
        admin_refunds,
        admin_subscriptions,
        admin_invoices,
        admin_payouts,
    ):
        monkeypatch.setattr(module, "PAGE", SMALL_PAGE)


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def _console(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock, role: Role = Role.FINANCE
) -> httpx.AsyncClient:
    email = f"{role.value}@example.com"
    await admin_service.create_admin_user(uow, email, PASSWORD, clock, role=role)
    anon_client.headers["Accept-Language"] = "en"
    form = await anon_client.get("/admin/login")
    signed = await anon_client.post(
        "/admin/login", data={"email": email, "password": PASSWORD, "csrf_token": _token(form.text)}
    )
    assert signed.status_code == 303
    return anon_client


async def _paid(
    client: httpx.AsyncClient, gateway: Simulator, shop: dict[str, str], name: str, customer: str
) -> dict[str, Any]:
    order = await post(client, "/v1/orders", order_body(shop, name, customer_id=customer))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "qr"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    order["payment_id"] = payment["id"]
    return order


def _table(response: httpx.Response) -> list[list[str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))


def _count(html: str) -> str:
    found = re.search(r'data-testid="list-count">([^<]*)<', html)
    assert found is not None, "no count on the page"
    return found.group(1)


async def _pages_both_ways(
    console: httpx.AsyncClient, path: str, ids: Any, expected: list[str], **params: str
) -> None:
    """Every page of ``path`` in turn, forwards by the Next link and back by Previous,
    shows ``expected`` in order with the total."""
    total = len(expected)
    seen: list[str] = []
    url: str | None = path
    pages: list[str] = []
    query: dict[str, str] | None = params
    while url is not None:
        page = await console.get(url, params=query)
        query = None  # the links carry the filters
        assert page.status_code == 200, page.text
        first = len(seen) + 1
        shown = ids(page.text)
        assert _count(page.text) == f"{first}\u2013{first + len(shown) - 1} of {total}"
        assert ('rel="prev"' in page.text) == bool(seen)
        seen += shown
        pages.append(page.text)
        found = re.search(r'href="([^"]+)" rel="next"', page.text)
        url = found.group(1).replace("&amp;", "&") if found else None
    assert seen == expected
    back = re.search(r'href="([^"]+)" rel="prev"', pages[-1])
    if len(pages) > 1:
        assert back is not None
        previous = await console.get(back.group(1).replace("&amp;", "&"))
        assert ids(previous.text) == ids(pages[-2])


# --- refunds ------------------------------------------------------------------------------


async def _streamed_in_chunks(uow: UnitOfWork, listing: Any, expected: list[str]) -> None:
    """The export's reading, a chunk of two rows at a time: every row once, newest first
    (the keyset carries on where the last chunk ended)."""
    async with uow:
        rows = [row["id"] async for row in listing(uow.conn).stream(uow.conn, batch=2)]
    assert rows == expected


def _refund_ids(html: str) -> list[str]:
    return re.findall(r'data-testid="refund-id">(re_[0-9A-Z]{26})<', html)


async def test_refunds_are_found_sorted_paged_and_exported_as_filtered(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    orders = [
        await _paid(client, gateway, shop, "c1", "Ref-Alpha"),
        await _paid(client, gateway, shop, "c2", "ref-beta"),
        await _paid(client, gateway, shop, "c1", "gamma"),
    ]
    made = []
    for n, order in enumerate(orders):
        made.append(
            await post(
                client,
                "/v1/refunds",
                {"order_id": order["id"], "amount": 100 * (n + 1), "reason": "duplicate"},
            )
        )
    await gateway.drain()
    async with uow:
        trade_no = (
            await uow.conn.execute(
                select(payments.c.channel_trade_no).where(payments.c.id == orders[0]["payment_id"])
            )
        ).scalar_one()
        refund_no = (
            await uow.conn.execute(
                select(refunds.c.channel_refund_no).where(refunds.c.id == made[0]["id"])
            )
        ).scalar_one()
    assert trade_no
    assert refund_no
    console = await _console(anon_client, uow, clock)
    for q in (
        made[0]["id"].lower(),
        orders[0]["id"],
        orders[0]["payment_id"].lower(),
        trade_no.lower(),
        refund_no.upper(),
        "REF-ALPHA",
        "ref-al",
    ):
        found = await console.get("/admin/refunds", params={"q": q})
        assert found.status_code == 200, q
        assert _refund_ids(found.text) == [made[0]["id"]], q
    starting = await console.get("/admin/refunds", params={"q": "REF-"})
    assert _refund_ids(starting.text) == [made[1]["id"], made[0]["id"]]
    assert _refund_ids((await console.get("/admin/refunds", params={"q": "zzz"})).text) == []

    newest = [r["id"] for r in reversed(made)]
    await _pages_both_ways(console, "/admin/refunds", _refund_ids, newest)
    await _pages_both_ways(console, "/admin/refunds", _refund_ids, newest[::-1], sort="oldest")
    await _pages_both_ways(console, "/admin/refunds", _refund_ids, newest, sort="-amount")
    await _pages_both_ways(console, "/admin/refunds", _refund_ids, newest[::-1], sort="amount")
    await _streamed_in_chunks(uow, lambda c: AdminLists(c).refunds(RefundSearch()), newest)

    bad = await console.get("/admin/refunds", params={"from": "2026-02-30"})
    assert bad.status_code == 422
    assert 'data-testid="from-error"' in bad.text
    assert (await console.get("/admin/refunds", params={"sort": "sideways"})).status_code == 422
    assert (await console.get("/admin/refunds.csv", params={"to": "soon"})).status_code == 422

    table = _table(await console.get("/admin/refunds.csv", params={"q": "ref-"}))
    assert table[0] == admin_refunds.REFUNDS_CSV
    wanted = [made[1], made[0]]
    assert [row[0] for row in table[1:]] == [r["id"] for r in wanted]
    for row, refund in zip(table[1:], wanted, strict=True):
        record = dict(zip(table[0], row, strict=True))
        assert record["order"] == refund["order_id"]
        assert record["customer"] in ("Ref-Alpha", "ref-beta")
        assert record["status"] == "succeeded"
        assert (record["currency"], record["amount"]) == ("CNY", f"{refund['amount'] / 100:.2f}")
        assert record["created"].endswith("+08:00")
        assert record["succeeded"].endswith("+08:00")
    everything = _table(await console.get("/admin/refunds.csv"))
    assert [row[0] for row in everything[1:]] == newest


# --- subscriptions ------------------------------------------------------------------------


def _subscription_ids(html: str) -> list[str]:
    return re.findall(r'href="/admin/subscriptions/(sub_[0-9A-Z]{26})"', html)


async def test_subscriptions_are_found_sorted_paged_and_exported_as_filtered(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    made = [
        await subscribe(client, shop["monthly"], customer=customer)
        for customer in ("Sub-Alpha", "sub-beta", "gamma")
    ]
    console = await _console(anon_client, uow, clock)
    first_order = made[0]["latest_order"]["id"]
    for q in (made[0]["id"].lower(), first_order.lower(), "SUB-ALPHA", "sub-al"):
        found = await console.get("/admin/subscriptions", params={"q": q})
        assert found.status_code == 200, q
        assert _subscription_ids(found.text) == [made[0]["id"]], q
    starting = await console.get("/admin/subscriptions", params={"q": "Sub-"})
    assert _subscription_ids(starting.text) == [made[1]["id"], made[0]["id"]]
    newest = [s["id"] for s in reversed(made)]
    await _pages_both_ways(console, "/admin/subscriptions", _subscription_ids, newest)
    await _pages_both_ways(
        console, "/admin/subscriptions", _subscription_ids, newest[::-1], sort="oldest"
    )
    await _streamed_in_chunks(
        uow, lambda c: AdminLists(c).subscriptions(SubscriptionSearch()), newest
    )
    by_status = await console.get("/admin/subscriptions", params={"status": made[0]["status"]})
    assert set(_subscription_ids(by_status.text)) <= set(newest)

    bad = await console.get("/admin/subscriptions", params={"to": "2026-13-01"})
    assert bad.status_code == 422
    assert 'data-testid="to-error"' in bad.text
    assert (await console.get("/admin/subscriptions", params={"status": "nope"})).status_code == 422
    assert (
        await console.get("/admin/subscriptions", params={"channel": "nope"})
    ).status_code == 422

    table = _table(await console.get("/admin/subscriptions.csv", params={"q": "sub-"}))
    assert table[0] == admin_subscriptions.SUBSCRIPTIONS_CSV
    wanted = [made[1], made[0]]
    assert [row[0] for row in table[1:]] == [s["id"] for s in wanted]
    for row, sub in zip(table[1:], wanted, strict=True):
        record = dict(zip(table[0], row, strict=True))
        assert record["customer"] == sub["customer_id"]
        assert record["membership"] == shop["monthly"]
        assert record["status"] == sub["status"]
        assert (record["channel"], record["currency"]) == ("sandbox", "CNY")
        assert record["credit"] == "0.00"
        assert record["created"].endswith("+08:00")


# --- invoice requests ---------------------------------------------------------------------


def _invoice_ids(html: str) -> list[str]:
    return re.findall(r'<td><a class="mono" href="/admin/invoices/(inv_[0-9A-Z]{26})"', html)


async def test_invoice_requests_are_found_sorted_paged_and_exported_as_filtered(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    made = []
    for name, customer in (("c1", "Inv-Alpha"), ("c2", "inv-beta"), ("c1", "gamma")):
        order = await _paid(client, gateway, shop, name, customer)
        request = await post(
            client,
            f"/v1/orders/{order['id']}/invoice_requests",
            {"type": "personal", "title": f"Title {customer}", "email": "li@example.com"},
        )
        request["total"] = order["total"]
        made.append(request)
    console = await _console(anon_client, uow, clock)
    for q in (made[0]["id"].lower(), made[0]["order_id"].lower(), "INV-ALPHA", "inv-al"):
        found = await console.get("/admin/invoices", params={"q": q})
        assert found.status_code == 200, q
        assert _invoice_ids(found.text) == [made[0]["id"]], q
    newest = [r["id"] for r in reversed(made)]
    await _pages_both_ways(console, "/admin/invoices", _invoice_ids, newest)
    await _pages_both_ways(console, "/admin/invoices", _invoice_ids, newest[::-1], sort="oldest")
    await _streamed_in_chunks(uow, lambda c: AdminLists(c).invoices(InvoiceSearch()), newest)
    biggest = await console.get("/admin/invoices", params={"sort": "-amount"})
    amounts = {r["id"]: r["amount"] for r in made}
    shown = [amounts[i] for i in _invoice_ids(biggest.text)]
    assert shown == sorted(shown, reverse=True)

    bad = await console.get("/admin/invoices", params={"from": "yesterday"})
    assert bad.status_code == 422
    assert 'data-testid="from-error"' in bad.text
    assert (await console.get("/admin/invoices", params={"status": "nope"})).status_code == 422

    table = _table(await console.get("/admin/invoices.csv", params={"q": "INV-"}))
    assert table[0] == admin_invoices.INVOICES_CSV
    wanted = [made[1], made[0]]
    assert [row[0] for row in table[1:]] == [r["id"] for r in wanted]
    for row, request in zip(table[1:], wanted, strict=True):
        record = dict(zip(table[0], row, strict=True))
        assert record["order"] == request["order_id"]
        assert record["title"] == request["title"]
        assert (record["status"], record["currency"]) == ("requested", "CNY")
        assert record["amount"] == f"{request['amount'] / 100:.2f}"
        assert record["to_reverse"] == "no"
        assert record["created"].endswith("+08:00")


# --- payees -------------------------------------------------------------------------------


def _payee_ids(html: str) -> list[str]:
    return re.findall(r'<a href="/admin/payees/([a-z]+_[0-9A-Z]{26})">', html)


async def test_payees_are_found_sorted_paged_and_exported_as_filtered(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    made = [
        await post(client, "/v1/promoters", {"name": name, "code": code})
        for name, code in (("Wang Fang", "WANG"), ("wang lei", "LEI"), ("Zhao", "ZHAO"))
    ]
    console = await _console(anon_client, uow, clock)
    for q in (made[2]["id"].lower(), "zhao", "ZH"):
        found = await console.get("/admin/payees", params={"q": q})
        assert found.status_code == 200, q
        assert _payee_ids(found.text) == [made[2]["id"]], q
    by_name = await console.get("/admin/payees", params={"q": "WANG"})
    assert _payee_ids(by_name.text) == [made[0]["id"], made[1]["id"]]
    await _pages_both_ways(
        console,
        "/admin/payees",
        _payee_ids,
        [p["id"] for p in reversed(made)],
        kind="promoter",
        sort="newest",
    )
    await _pages_both_ways(
        console, "/admin/payees", _payee_ids, [p["id"] for p in made], kind="promoter", sort="name"
    )
    await _streamed_in_chunks(
        uow,
        lambda c: AdminLists(c).payees(PayeeSearch(kind="promoter")),
        [p["id"] for p in reversed(made)],
    )
    elodie = await post(client, "/v1/promoters", {"name": "Élodie", "code": "ELO"})
    for q in ("ÉLO", "Élodie"):  # a capital beyond ASCII, on either engine
        found = await console.get("/admin/payees", params={"q": q})
        assert _payee_ids(found.text) == [elodie["id"]], q
    assert (await console.get("/admin/payees", params={"kind": "robot"})).status_code == 422
    assert (await console.get("/admin/payees", params={"sort": "richest"})).status_code == 422
    assert (await console.get("/admin/payees.csv", params={"kind": "robot"})).status_code == 422

    table = _table(await console.get("/admin/payees.csv", params={"q": "wang"}))
    assert table[0] == admin_payouts.PAYEES_CSV
    wanted = [made[1], made[0]]  # newest first, as every export
    assert [row[0] for row in table[1:]] == [p["id"] for p in wanted]
    for row, payee in zip(table[1:], wanted, strict=True):
        record = dict(zip(table[0], row, strict=True))
        assert (record["name"], record["kind"]) == (payee["name"], "promoter")
        assert record["currency"] == ""  # no earnings yet
        assert record["created"].endswith("+08:00")


async def test_only_roles_that_export_may_download_the_lists(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    console = await _console(anon_client, uow, clock, Role.SUPPORT)
    for path in ("refunds", "subscriptions", "invoices", "payees"):
        page = await console.get(f"/admin/{path}")
        assert page.status_code == 200, path
        assert 'data-testid="list-csv"' not in page.text
        assert (await console.get(f"/admin/{path}.csv")).status_code == 403, path


# --- the customer page --------------------------------------------------------------------


async def test_the_customer_page_shows_the_wallet_and_the_subscriptions(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    customer = "Cust-Wallet-1"
    await post(
        client,
        f"/v1/customers/{customer}/wallet/adjustments",
        {"currency": "CNY", "amount": 1250, "reason": "goodwill"},
    )
    sub = await subscribe(client, shop["monthly"], customer=customer)
    other = await subscribe(client, shop["monthly"], customer="someone-else")
    console = await _console(anon_client, uow, clock)
    page = await console.get(f"/admin/customers/{customer}")
    assert page.status_code == 200
    balance = re.search(r'data-testid="balance-CNY">([^<]*)<', page.text)
    assert balance is not None
    assert "12.50" in balance.group(1)
    assert "goodwill" in page.text  # the movement, with its reason
    assert f'data-testid="subscription-{sub["id"]}"' in page.text
    assert f'href="/admin/subscriptions/{sub["id"]}"' in page.text
    assert other["id"] not in page.text
    section = page.text[page.text.index('data-testid="customer-subscriptions"') :]
    assert shop["monthly"] in section
    empty = await console.get("/admin/customers/nobody-here")
    assert empty.status_code == 200
    assert "No subscriptions." in empty.text
