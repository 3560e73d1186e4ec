"""The operator's road in a real browser: log in, find an order, read its timeline, look
at the dashboard and the ledger; wrong passwords and forged forms are refused."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from babel.numbers import format_currency

from tests.e2e.conftest import PHONE, shot
from tests.e2e.server import Servers


def _paid_order(
    servers: Servers, catalog: dict[str, str], customer: str, names: list[str], *, pay: bool = True
) -> dict[str, Any]:
    """An order paid (or declined) through the API and the simulator's control API."""
    with servers.api() as api:
        order = api.post(
            "/v1/orders",
            json={
                "customer_id": customer,
                "currency": "CNY",
                "items": [{"product_id": catalog[n]} for n in names],
            },
        ).json()
        payment = api.post(
            f"/v1/orders/{order['id']}/payments", json={"channel": "sandbox", "method": "qr"}
        ).json()
        action = "pay" if pay else "decline"
        decided = httpx.post(f"{servers.gateway_url}/_control/payments/{payment['id']}/{action}")
        assert decided.status_code == 200, decided.text
        wanted = "succeeded" if pay else "failed"
        deadline = time.monotonic() + 10
        while api.get(f"/v1/payments/{payment['id']}").json()["status"] != wanted:
            assert time.monotonic() < deadline, "the notification did not arrive"
            time.sleep(0.05)
    return order


@pytest.fixture(scope="module")
def history(servers: Servers, catalog: dict[str, str]) -> list[dict[str, Any]]:
    """A week of sales made on past days, through the real flow with a shifted clock."""
    week = [
        (6, ["python"], True),
        (5, ["writing"], True),
        (5, ["design"], False),
        (4, ["python", "writing"], True),
        (3, ["design"], True),
        (2, ["writing"], True),
        (1, ["python", "design"], True),
        (0, ["writing"], True),
    ]
    orders = []
    try:
        for n, (days_ago, names, pay) in enumerate(week):
            servers.clock.offset = -timedelta(days=days_ago)
            orders.append(_paid_order(servers, catalog, f"reader-{n}", names, pay=pay))
    finally:
        servers.clock.offset = timedelta(0)
    deadline = time.monotonic() + 15
    while servers.webhooks.count("order.paid") < sum(pay for _, _, pay in week):
        assert time.monotonic() < deadline, f"webhooks not delivered: {servers.webhooks}"
        time.sleep(0.1)
    return orders


def _log_in(page: Any, servers: Servers, password: str) -> None:
    page.get_by_label("Email").fill(servers.admin_email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_an_admin_logs_in_finds_the_order_and_sees_its_timeline_and_the_dashboard(
    servers: Servers, catalog: dict[str, str], history: list[dict[str, Any]], browsing: Any
) -> None:
    order = history[-1]
    page = browsing(locale="en-US").page()
    page.goto(f"{servers.base_url}/admin/orders")
    page.wait_for_url("**/admin/login?next=**")
    _log_in(page, servers, "not-the-password")
    assert page.get_by_test_id("login-error").inner_text().startswith("Wrong email or password")
    shot(page, "admin-en-login-refused")
    _log_in(page, servers, servers.admin_password)
    page.wait_for_url("**/admin/orders")  # back where the operator wanted to go

    page.get_by_label("Order or customer ID").fill(order["id"])
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("tbody tr")
    assert rows.count() == 1
    shot(page, "admin-en-orders")
    rows.get_by_role("link", name=order["id"]).click()

    timeline = page.get_by_test_id("timeline")
    for text in [
        "Order placed",
        "Payment attempt via Sandbox",
        "Notification from Sandbox",
        "Payment succeeded",
        "Order paid; access granted",
        "Ledger entry",
        "order.paid",
        "payment.succeeded",
    ]:
        assert timeline.get_by_text(text).first.is_visible(), text
    assert timeline.get_by_test_id("verdict").first.inner_text() == "applied"
    assert timeline.get_by_test_id("delivery").first.inner_text() == "succeeded"
    shot(page, "admin-en-order-timeline")

    page.get_by_role("link", name="Dashboard").click()
    with servers.api() as api:
        paid = api.get("/v1/orders", params={"status": "paid", "limit": 100}).json()["data"]
    gmv = format_currency(Decimal(sum(o["total"] for o in paid)) / 100, "CNY", locale="en_US")
    assert page.get_by_test_id("gmv-CNY").inner_text() == gmv
    assert page.locator("svg.chart").count() == 4
    shot(page, "admin-en-dashboard")

    page.get_by_role("link", name="Ledger").click()
    page.get_by_role("button", name="Verify the ledger now").click()
    assert "Ledger OK" in page.get_by_test_id("ledger-status").inner_text()
    shot(page, "admin-en-ledger")

    page.get_by_role("link", name="Payments").click()
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("tbody tr").count() == 1
    shot(page, "admin-en-payments")

    page.get_by_role("link", name="中文").click()
    page.get_by_role("link", name="概览").click()
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.get_by_role("heading", name="概览").is_visible()
    shot(page, "admin-zh-dashboard")


def test_a_wrong_password_and_a_missing_csrf_token_are_refused(
    servers: Servers, browsing: Any
) -> None:
    page = browsing(locale="zh-CN", viewport=PHONE).page()
    page.goto(f"{servers.base_url}/admin/login")
    page.get_by_label("邮箱").fill(servers.admin_email)
    page.get_by_label("密码").fill("wrong-password-1")
    page.get_by_role("button", name="登录").click()
    assert page.get_by_test_id("login-error").inner_text().startswith("邮箱或密码错误")
    shot(page, "admin-zh-login-refused")

    # A login form posted without its CSRF token, with the right password: refused.
    forged = page.request.post(
        f"{servers.base_url}/admin/login",
        form={"email": servers.admin_email, "password": servers.admin_password},
        max_redirects=0,
    )
    assert forged.status == 403

    page.get_by_label("邮箱").fill(servers.admin_email)
    page.get_by_label("密码").fill(servers.admin_password)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(f"{servers.base_url}/admin")
    # Signed in, a POST still needs the session's token: without it, or with another, 403.
    for form in ({}, {"csrf_token": "forged"}):
        response = page.request.post(
            f"{servers.base_url}/admin/ledger/verify", form=form, max_redirects=0
        )
        assert response.status == 403
        assert "Request refused" in response.text()  # (API requests send no language)
    logout = page.request.post(f"{servers.base_url}/admin/logout", form={}, max_redirects=0)
    assert logout.status == 403
    page.goto(f"{servers.base_url}/admin/ledger")  # still signed in: nothing was done
    assert page.get_by_role("heading", name="账本", exact=True).is_visible()
    shot(page, "admin-zh-ledger-phone")
    page.get_by_role("button", name="退出登录").click()
    page.wait_for_url("**/admin/login")
