"""The admin console on both engines: operators, login with lockout, sessions and CSRF,
and the pages over real orders, payments and ledger entries."""

from __future__ import annotations

import re
from datetime import UTC, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.integration.shop import order_body, post
from tuition import web
from tuition.clock import FrozenClock
from tuition.domain.errors import Conflict, ValidationFailed
from tuition.services import admin as admin_service
from tuition.services.dashboard import dashboard
from tuition.simulator.app import Simulator
from tuition.store.tables import admin_sessions, admin_users
from tuition.store.uow import UnitOfWork

EMAIL, PASSWORD = "ops@example.com", "a-long-enough-password"
REFUSED = "Wrong email or password, or too many attempts"


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    web.mount(app)


@pytest.fixture
async def operator(uow: UnitOfWork, clock: FrozenClock) -> str:
    await admin_service.create_admin_user(uow, EMAIL, PASSWORD, clock)
    return EMAIL


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


async def _login(
    browser: httpx.AsyncClient, password: str = PASSWORD, **extra: str
) -> httpx.Response:
    form = await browser.get("/admin/login")
    return await browser.post(
        "/admin/login",
        data={
            "email": EMAIL.upper(),
            "password": password,
            "csrf_token": _token(form.text),
            **extra,
        },
    )


async def _paid_order(client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator) -> Any:
    order = await post(client, "/v1/orders", order_body(shop, "bundle"))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "qr"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    return order


async def test_an_operator_is_stored_with_an_argon2_hash_and_once(
    uow: UnitOfWork, clock: FrozenClock
) -> None:
    user = await admin_service.create_admin_user(uow, " Ops@Example.com ", PASSWORD, clock)
    assert user.email == EMAIL
    async with uow:
        stored = (await uow.conn.execute(select(admin_users.c.password_hash))).scalar_one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    with pytest.raises(Conflict):
        await admin_service.create_admin_user(uow, EMAIL, PASSWORD, clock)
    with pytest.raises(ValidationFailed):
        await admin_service.create_admin_user(uow, "x@example.com", "short", clock)
    with pytest.raises(ValidationFailed):
        await admin_service.create_admin_user(uow, "not-an-email", PASSWORD, clock)


async def test_the_console_asks_for_a_login_and_opens_after_one(
    anon_client: httpx.AsyncClient, operator: str, uow: UnitOfWork
) -> None:
    first = await anon_client.get("/admin/orders", params={"status": "paid"})
    assert first.status_code == 303
    assert first.headers["location"] == "/admin/login?next=%2Fadmin%2Forders%3Fstatus%3Dpaid"
    signed_in = await _login(anon_client, next="/admin/orders?status=paid")
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/admin/orders?status=paid"
    cookie = signed_in.headers["set-cookie"]
    for flag in ("tuition_admin=", "HttpOnly", "Path=/admin", "SameSite=strict"):
        assert flag in cookie
    async with uow:
        stored = (await uow.conn.execute(select(admin_sessions.c.token_hash))).scalar_one()
    assert stored not in cookie  # only the token's hash is kept
    for page in ("/admin", "/admin/orders", "/admin/payments", "/admin/ledger"):
        response = await anon_client.get(page)
        assert response.status_code == 200, page
        assert EMAIL in response.text


async def test_a_login_never_redirects_off_the_console(
    anon_client: httpx.AsyncClient, operator: str
) -> None:
    for target in ("https://evil.example/", "//evil.example/admin", "/v1/orders"):
        anon_client.cookies.clear()
        response = await _login(anon_client, next=target)
        assert response.headers["location"] == "/admin"


async def test_a_wrong_password_is_refused_and_five_lock_this_ip_out_alike(
    anon_client: httpx.AsyncClient, operator: str, clock: FrozenClock
) -> None:
    wrong = await _login(anon_client, "not-the-password")
    assert wrong.status_code == 401
    assert REFUSED in wrong.text
    unknown = await anon_client.post(
        "/admin/login",
        data={"email": "who@example.com", "password": PASSWORD, "csrf_token": _token(wrong.text)},
    )
    assert unknown.status_code == 401
    assert REFUSED in unknown.text  # the same answer: no account probing
    for _ in range(4):
        locked = await _login(anon_client, "not-the-password")
    still = await _login(anon_client)  # the right password, while throttled
    assert (still.status_code, REFUSED in still.text) == (401, True)
    assert _error(still.text) == _error(wrong.text) == _error(unknown.text)
    clock.advance(admin_service.LOCK_FOR + timedelta(seconds=1))
    assert locked.status_code == 401
    assert (await _login(anon_client)).status_code == 303


def _error(html: str) -> str:
    found = re.search(r'data-testid="login-error">([^<]*)<', html)
    assert found is not None
    return found.group(1)


async def test_forms_without_the_csrf_token_are_refused(
    anon_client: httpx.AsyncClient, operator: str
) -> None:
    form = await anon_client.get("/admin/login")
    no_token = await anon_client.post("/admin/login", data={"email": EMAIL, "password": PASSWORD})
    assert no_token.status_code == 403
    assert "tuition_admin=" not in no_token.headers.get("set-cookie", "")
    other = await anon_client.post(
        "/admin/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": "guess"}
    )
    assert other.status_code == 403
    assert form.status_code == 200
    assert (await _login(anon_client)).status_code == 303
    for path in ("/admin/ledger/verify", "/admin/logout"):
        for data in ({}, {"csrf_token": _token(form.text)}):  # the login token is not the session's
            assert (await anon_client.post(path, data=data)).status_code == 403
    page = await anon_client.get("/admin/ledger")
    verified = await anon_client.post(
        "/admin/ledger/verify", data={"csrf_token": _token(page.text)}
    )
    assert verified.status_code == 200
    assert "Ledger OK" in verified.text
    out = await anon_client.post("/admin/logout", data={"csrf_token": _token(page.text)})
    assert out.headers["location"] == "/admin/login"
    assert (await anon_client.get("/admin")).status_code == 303  # the session is revoked


async def test_a_session_ends_when_it_expires(
    anon_client: httpx.AsyncClient, operator: str, clock: FrozenClock, settings: Any
) -> None:
    await _login(anon_client)
    assert (await anon_client.get("/admin")).status_code == 200
    clock.advance(timedelta(hours=settings.admin_session_hours, seconds=1))
    assert (await anon_client.get("/admin")).status_code == 303


async def test_an_orders_page_is_its_timeline(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    operator: str,
) -> None:
    order = await _paid_order(client, shop, gateway)
    await _login(anon_client)
    page = await anon_client.get(f"/admin/orders/{order['id']}", params={"lang": "en"})
    assert page.status_code == 200
    text = page.text
    for expected in (
        "Order placed",
        "Payment attempt via Sandbox",
        "Notification from Sandbox",
        'data-testid="verdict">applied<',
        "Ledger entry",
        f"creator_pending:CNY:{shop['creator']}",
        "order.paid",
        "payment.succeeded",
        "Order paid; access granted",
    ):
        assert expected in text, expected
    assert text.index("Order placed") < text.index("Payment attempt") < text.index("Ledger entry")
    missing = await anon_client.get("/admin/orders/ord_nope")
    assert missing.status_code == 404


async def test_orders_and_payments_can_be_found_by_status_channel_customer_and_date(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    operator: str,
    clock: FrozenClock,
) -> None:
    paid = await _paid_order(client, shop, gateway)
    waiting = await post(client, "/v1/orders", order_body(shop, "c1", customer_id="u_9"))
    await _login(anon_client)

    async def ids(path: str, **params: str) -> set[str]:
        html = (await anon_client.get(path, params=params)).text
        return set(re.findall(r"(?:ord|pay)_[0-9A-Z]{26}", html))

    assert {paid["id"], waiting["id"]} <= await ids("/admin/orders")
    assert paid["id"] in await ids("/admin/orders", status="paid")
    assert waiting["id"] not in await ids("/admin/orders", status="paid")
    assert waiting["id"] not in await ids("/admin/orders", channel="sandbox")
    assert await ids("/admin/orders", customer="u_9") == {waiting["id"]}
    assert await ids("/admin/orders", q=paid["id"]) == {paid["id"]}
    today = clock.now().date().isoformat()
    assert paid["id"] in await ids("/admin/orders", **{"from": today, "to": today})
    assert await ids("/admin/orders", **{"to": "2020-01-01"}) == set()
    # A malformed filter is an error shown on the page, never silently dropped.
    bad = await anon_client.get("/admin/orders", params={"status": "bogus", "from": "nonsense"})
    assert bad.status_code == 422
    assert "Enter a date as 2026-11-30." in bad.text
    assert "Choose one of the listed values." in bad.text
    assert paid["id"] not in bad.text
    payments = await ids("/admin/payments", status="succeeded", channel="sandbox")
    assert paid["id"] in payments  # the order link in the payment's row


async def test_the_dashboard_counts_gmv_success_rate_fees_and_net_revenue(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    operator: str,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    await _paid_order(client, shop, gateway)
    declined = await post(client, "/v1/orders", order_body(shop, "c1", customer_id="u_2"))
    attempt = await post(
        client, f"/v1/orders/{declined['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.decline(attempt["id"])
    await gateway.drain()
    waiting = await post(client, "/v1/orders", order_body(shop, "c2", customer_id="u_3"))
    await post(  # still open: neither a success nor a failure yet
        client, f"/v1/orders/{waiting['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    board = await dashboard(uow, clock=clock, zone=UTC, days=7)
    (cny,) = board.currencies
    assert cny.gmv[-1].value == 39900
    assert cny.gmv_total == 39900
    assert cny.orders_paid == 1
    (sandbox,) = cny.channels
    assert (sandbox.attempted, sandbox.succeeded, sandbox.fees) == (2, 1, 239)
    assert str(sandbox.success_rate) == "0.5"
    # revenue 399.00 - 279.30 creator share = 119.70, less the 2.39 fee
    assert cny.net_total == 11731
    await _login(anon_client)
    page = await anon_client.get("/admin", params={"lang": "zh-CN"})
    assert '<html lang="zh-CN">' in page.text
    assert "¥399.00" in page.text
    assert "50.0%" in page.text
    assert page.text.count('<svg class="chart"') == 4
