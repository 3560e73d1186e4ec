"""Finding orders in the console on both engines: by any id or gateway trade number in
any case and by customer id prefix, sorted, paged both ways with totals, and exported as
filtered to a streamed CSV checked row by row."""

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
from tuition import web
from tuition.clock import FrozenClock
from tuition.domain.operators import Role
from tuition.services import admin as admin_service
from tuition.simulator.app import Simulator
from tuition.store.tables import payments
from tuition.store.uow import UnitOfWork

PASSWORD = "a-long-enough-password"


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    web.mount(app)


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


def _ids(html: str) -> list[str]:
    return re.findall(r'href="/admin/orders/(ord_[0-9A-Z]{26})"', html)


async def test_any_id_or_trade_number_in_any_case_and_a_customer_prefix_find_the_order(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    paid = await _paid(client, gateway, shop, "c1", "Cust-Alpha-1")
    other = await _paid(client, gateway, shop, "c2", "beta-2")
    refund = await post(client, "/v1/refunds", {"order_id": paid["id"], "reason": "duplicate"})
    async with uow:
        trade_no = (
            await uow.conn.execute(
                select(payments.c.channel_trade_no).where(payments.c.id == paid["payment_id"])
            )
        ).scalar_one()
    assert trade_no
    console = await _console(anon_client, uow, clock)
    for q in (
        paid["id"],
        paid["id"].lower(),
        paid["payment_id"].lower(),
        refund["id"],
        trade_no,
        trade_no.lower(),
        "cust-alpha",
        "CUST-ALPHA-1",
    ):
        found = await console.get("/admin/orders", params={"q": q})
        assert found.status_code == 200, q
        assert _ids(found.text) == [paid["id"]], q
    assert _ids((await console.get("/admin/orders", params={"q": "zzz"})).text) == []
    assert set(_ids((await console.get("/admin/orders")).text)) == {paid["id"], other["id"]}


async def test_orders_sort_page_both_ways_and_export_as_filtered(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    made = []
    for n in range(53):
        made.append(
            await post(
                client,
                "/v1/orders",
                order_body(shop, "c1" if n % 2 else "c2", customer_id=f"u_{n:02d}"),
            )
        )
    console = await _console(anon_client, uow, clock)
    first = await console.get("/admin/orders")
    assert "1\u201350 of 53" in first.text
    assert 'rel="next"' in first.text
    assert 'rel="prev"' not in first.text
    assert _ids(first.text) == [o["id"] for o in reversed(made)][:50]
    second = await console.get("/admin/orders", params={"offset": 50})
    assert "51\u201353 of 53" in second.text
    assert 'rel="prev"' in second.text
    assert _ids(second.text) == [o["id"] for o in made[:3]][::-1]
    biggest = await console.get("/admin/orders", params={"sort": "-amount"})
    totals = [o["total"] for o in made]
    assert {o["id"]: o["total"] for o in made}[_ids(biggest.text)[0]] == max(totals)
    bad = await console.get("/admin/orders", params={"sort": "sideways"})
    assert bad.status_code == 422
    # The export is what the filter shows, every row, in major units and Beijing time.
    exported = await console.get("/admin/orders.csv", params={"q": "u_1"})
    assert exported.status_code == 200
    table = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert table[0][:5] == ["order", "customer", "status", "currency", "total"]
    wanted = [o for o in reversed(made) if o["customer_id"].startswith("u_1")]
    assert [row[0] for row in table[1:]] == [o["id"] for o in wanted]
    for row, order in zip(table[1:], wanted, strict=True):
        assert row[1:5] == [
            order["customer_id"],
            "pending_payment",
            "CNY",
            f"{order['total'] / 100:.2f}",
        ]
        assert row[8].endswith("+08:00")
    assert (
        await console.get("/admin/orders.csv", params={"from": "2026-02-30"})
    ).status_code == 422


async def test_only_roles_that_export_may_download(
    anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    console = await _console(anon_client, uow, clock, Role.SUPPORT)
    page = await console.get("/admin/orders")
    assert page.status_code == 200
    assert 'data-testid="orders-csv"' not in page.text
    assert (await console.get("/admin/orders.csv")).status_code == 403


async def test_a_payment_has_its_page_with_trade_number_notifications_and_refunds(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    paid = await _paid(client, gateway, shop, "c1", "u_1")
    refund = await post(client, "/v1/refunds", {"order_id": paid["id"], "reason": "duplicate"})
    console = await _console(anon_client, uow, clock, Role.VIEWER)
    listed = await console.get("/admin/payments")
    assert f'href="/admin/payments/{paid["payment_id"]}"' in listed.text  # ids are links
    page = await console.get(f"/admin/payments/{paid['payment_id']}")
    assert page.status_code == 200
    async with uow:
        trade_no = (
            await uow.conn.execute(
                select(payments.c.channel_trade_no).where(payments.c.id == paid["payment_id"])
            )
        ).scalar_one()
    assert f'data-testid="trade-no">{trade_no}<' in page.text
    assert 'data-testid="verdict">applied<' in page.text
    assert refund["id"] in page.text
    assert f'href="/admin/orders/{paid["id"]}"' in page.text
    assert (await console.get("/admin/payments/pay_nope")).status_code == 404


def test_notification_bodies_are_decoded_with_secrets_masked() -> None:
    from tuition.web.admin_payment import decoded

    form = decoded("trade_status=TRADE_SUCCESS&subject=%E8%AF%BE%E7%A8%8B&sign=abc")
    assert isinstance(form, list)
    assert ("subject", "课程") in form
    assert ("trade_status", "TRADE_SUCCESS") in form
    text = decoded('{"resource": {"ciphertext": "x"}, "event_type": "TRANSACTION.SUCCESS"}')
    assert isinstance(text, str)
    assert '"event_type": "TRANSACTION.SUCCESS"' in text
    assert decoded("not a form") == "not a form"


async def test_payments_are_found_by_trade_number_validated_and_exported_as_filtered(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    first = await _paid(client, gateway, shop, "c1", "Pay-A")
    second = await _paid(client, gateway, shop, "c2", "pay-b")
    async with uow:
        trade_no = (
            await uow.conn.execute(
                select(payments.c.channel_trade_no).where(payments.c.id == first["payment_id"])
            )
        ).scalar_one()
    console = await _console(anon_client, uow, clock)

    def listed(html: str) -> list[str]:
        return re.findall(r'href="/admin/payments/(pay_[0-9A-Z]{26})"', html)

    for q in (trade_no.upper(), first["payment_id"].lower(), first["id"], "PAY-A"):
        page = await console.get("/admin/payments", params={"q": q})
        assert listed(page.text) == [first["payment_id"]], q
    everything = await console.get("/admin/payments", params={"sort": "oldest"})
    assert "1\u20132 of 2" in everything.text
    assert listed(everything.text) == [first["payment_id"], second["payment_id"]]
    bad = await console.get("/admin/payments", params={"status": "paid", "to": "yesterday"})
    assert bad.status_code == 422
    assert "Enter a date as 2026-11-30." in bad.text
    exported = await console.get("/admin/payments.csv", params={"q": "pay-"})
    table = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert table[0][:3] == ["payment", "order", "customer"]
    rows = {row[0]: row for row in table[1:]}
    assert set(rows) == {first["payment_id"], second["payment_id"]}
    assert rows[first["payment_id"]][1:8] == [
        first["id"],
        "Pay-A",
        "sandbox",
        "qr",
        "succeeded",
        "CNY",
        "99.00",
    ]
    assert rows[first["payment_id"]][10] == trade_no
    only = await console.get("/admin/payments.csv", params={"q": trade_no})
    assert len(list(csv.reader(io.StringIO(only.content.decode("utf-8-sig"))))) == 2


async def test_customers_are_found_by_the_start_of_their_id_in_any_case(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    for customer in ("Cust-Alpha-1", "cust-alpha-2", "beta"):
        await post(client, "/v1/orders", order_body(shop, "c1", customer_id=customer))
    console = await _console(anon_client, uow, clock, Role.VIEWER)
    listed = await console.get("/admin/customers", params={"q": "CUST-ALPHA"})
    assert listed.status_code == 200
    assert re.findall(r'href="/admin/customers/([^"]+)"', listed.text) == [
        "Cust-Alpha-1",
        "cust-alpha-2",
    ]
    only = await console.get("/admin/customers", params={"q": "beta"})
    assert only.headers["location"] == "/admin/customers/beta"
    unknown = await console.get("/admin/customers", params={"q": "gamma"})
    assert unknown.headers["location"] == "/admin/customers/gamma"
