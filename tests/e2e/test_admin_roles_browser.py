"""Roles, two-factor and the business time zone in a real browser: a support operator
cannot see the operators page or approve a payout (and the server refuses the action
posted directly), an operator enrols TOTP from the QR page and signs in with a code,
times are shown in Asia/Shanghai with the zone named."""

from __future__ import annotations

import csv
import io
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pyotp
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from tests.e2e.conftest import PHONE, shot
from tests.e2e.server import Servers, run_sync
from tuition.cli import app as cli
from tuition.config import get_settings
from tuition.domain.operators import Role
from tuition.services.admin import create_admin_user
from tuition.store.db import create_engine
from tuition.store.uow import UnitOfWork

PASSWORD = "a-long-enough-password"
PAYEE = "crt_" + "0" * 26


def _operator(servers: Servers, email: str, role: Role) -> None:
    async def go() -> None:
        engine: AsyncEngine = create_engine(servers.database_url)
        try:
            await create_admin_user(UnitOfWork(engine), email, PASSWORD, servers.clock, role=role)
        finally:
            await engine.dispose()

    run_sync(go())


def _log_in(page: Any, servers: Servers, email: str, *, zh: bool = False) -> None:
    page.goto(f"{servers.base_url}/admin/login")
    page.get_by_label("邮箱" if zh else "Email").fill(email)
    page.get_by_label("密码" if zh else "Password").fill(PASSWORD)
    page.get_by_role("button", name="登录" if zh else "Log in").click()


def test_a_support_operator_cannot_see_operators_nor_approve_a_payout(
    servers: Servers, browsing: Any
) -> None:
    _operator(servers, "support@example.com", Role.SUPPORT)
    for locale, zh in (("en-US", False), ("zh-CN", True)):
        page = browsing(locale=locale).page()
        _log_in(page, servers, "support@example.com", zh=zh)
        page.wait_for_url(f"{servers.base_url}/admin")
        assert page.get_by_test_id("role").inner_text() == ("客服" if zh else "Support")
        assert page.locator('nav a[href="/admin/operators"]').count() == 0
        zone = page.get_by_test_id("time-zone").inner_text()
        assert "Asia/Shanghai (UTC+8)" in zone
        shot(page, f"admin-{'zh' if zh else 'en'}-support-dashboard")
        page.goto(f"{servers.base_url}/admin/operators")
        refused = page.get_by_test_id("role-refused")
        assert ("无权" if zh else "does not allow") in refused.inner_text()
        shot(page, f"admin-{'zh' if zh else 'en'}-support-operators-refused")
        page.goto(f"{servers.base_url}/admin/payees")
        token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
        # The payout action posted straight to the server, with a valid session and token.
        response = page.request.post(
            f"{servers.base_url}/admin/payees/{PAYEE}/payouts/po_x/retry",
            form={"csrf_token": token},
            max_redirects=0,
        )
        assert response.status == 403
        assert "role" in response.text().lower()


def test_an_operator_enrols_totp_and_signs_in_with_a_code(servers: Servers, browsing: Any) -> None:
    _operator(servers, "totp@example.com", Role.FINANCE)
    page = browsing(locale="en-US", viewport=PHONE).page()
    _log_in(page, servers, "totp@example.com")
    page.wait_for_url(f"{servers.base_url}/admin")
    page.get_by_test_id("two-factor-link").click()
    page.wait_for_url("**/admin/two-factor")
    assert page.get_by_test_id("totp-qr").is_visible()
    secret = page.get_by_test_id("totp-secret").inner_text()
    shot(page, "admin-en-two-factor-enrol")
    totp = pyotp.TOTP(secret)
    page.get_by_label("Code").fill(totp.at(servers.clock.now()))
    page.get_by_role("button", name="Turn on two-factor sign-in").click()
    codes = page.get_by_test_id("recovery-codes").locator("li").all_inner_texts()
    assert len(codes) == 10
    assert all(re.fullmatch(r"[0-9a-f]{5}-[0-9a-f]{5}", c) for c in codes)
    shot(page, "admin-en-two-factor-recovery-codes")
    page.get_by_role("link", name="Continue to the console").click()
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/admin/login")

    _log_in(page, servers, "totp@example.com")
    page.wait_for_url("**/admin/login/two-factor**")
    assert page.get_by_role("heading", name="Two-factor sign-in").is_visible()
    page.goto(f"{servers.base_url}/admin/orders")  # nothing opens before the code
    page.wait_for_url("**/admin/login/two-factor**")
    page.get_by_label("The 6-digit code").fill("000000")
    page.get_by_role("button", name="Continue").click()
    assert "wrong or was already used" in page.get_by_test_id("code-error").inner_text()
    shot(page, "admin-en-two-factor-refused")
    servers.clock.offset = timedelta(seconds=30)  # the next step's code: a code works once
    try:
        page.get_by_label("The 6-digit code").fill(totp.at(servers.clock.now()))
        page.get_by_role("button", name="Continue").click()
        page.wait_for_url("**/admin/orders")
    finally:
        servers.clock.offset = timedelta(0)
    assert page.get_by_role("heading", name="Orders").is_visible()
    page.get_by_role("link", name="中文").click()
    page.goto(f"{servers.base_url}/admin/two-factor")
    on = page.get_by_test_id("two-factor-on").inner_text()
    assert on.startswith("两步验证自")
    assert "UTC+8" in on  # in Asia/Shanghai, with its offset
    shot(page, "admin-zh-two-factor-on")


def _paid_order(servers: Servers, customer: str) -> tuple[str, str]:
    """An order paid through the API and the simulator: its id and the payment's id."""
    with servers.api() as api:
        product = api.post(
            "/v1/products",
            json={
                "creator_id": api.post("/v1/creators", json={"name": "王老师"}).json()["id"],
                "title": "搜索课",
                "kind": "course",
                "prices": {"CNY": 12300},
            },
        ).json()
        order = api.post(
            "/v1/orders",
            json={
                "customer_id": customer,
                "currency": "CNY",
                "items": [{"product_id": product["id"]}],
            },
        ).json()
        payment = api.post(
            f"/v1/orders/{order['id']}/payments", json={"channel": "sandbox", "method": "qr"}
        ).json()
        paid = httpx.post(f"{servers.gateway_url}/_control/payments/{payment['id']}/pay")
        assert paid.status_code == 200, paid.text
        deadline = time.monotonic() + 10
        while api.get(f"/v1/payments/{payment['id']}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline, "the notification did not arrive"
            time.sleep(0.05)
    return order["id"], payment["id"]


def test_an_owner_finds_an_order_by_trade_number_exports_it_and_audits_a_change(
    servers: Servers, browsing: Any
) -> None:
    order_id, payment_id = _paid_order(servers, "Search-Customer-7")
    page = browsing(locale="en-US").page()
    page.goto(f"{servers.base_url}/admin/login")
    page.get_by_label("Email").fill(servers.admin_email)
    page.get_by_label("Password").fill(servers.admin_password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{servers.base_url}/admin")
    page.goto(f"{servers.base_url}/admin/payments/{payment_id}")
    trade_no = page.get_by_test_id("trade-no").inner_text()
    assert trade_no
    assert trade_no != "—"
    shot(page, "admin-en-payment")
    page.get_by_role("link", name="Orders").click()
    page.get_by_label("Order or customer ID").fill(trade_no.lower())
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("tbody tr")
    assert rows.count() == 1
    assert rows.get_by_role("link", name=order_id).is_visible()
    assert "+8" in rows.locator("td").last.inner_text()  # created, in Asia/Shanghai
    shot(page, "admin-en-orders-by-trade-number")
    # The export of this filtered list, row by row.
    page.get_by_label("Order or customer ID").fill("search-customer")
    page.get_by_role("button", name="Filter").click()
    with page.expect_download() as download:
        page.get_by_test_id("orders-csv").click()
    table = list(csv.reader(io.StringIO(Path(download.value.path()).read_text("utf-8-sig"))))
    assert table[0][:5] == ["order", "customer", "status", "currency", "total"]
    assert [r[:5] for r in table[1:]] == [[order_id, "Search-Customer-7", "paid", "CNY", "123.00"]]
    # A change is audited; an edit in the database then fails `tuition audit verify`.
    _operator(servers, "audited@example.com", Role.VIEWER)
    page.goto(f"{servers.base_url}/admin/operators")
    row = page.locator('tr[data-email="audited@example.com"]')
    row.get_by_label("Role").select_option("support")
    row.get_by_role("button", name="Change role").click()
    page.goto(f"{servers.base_url}/admin/audit?action=operator.role_changed")
    audited = page.get_by_test_id("audit").locator("tbody tr")
    assert audited.count() == 1
    assert '{"role":"support"}' in audited.first.inner_text()
    shot(page, "admin-en-audit")
    page.get_by_role("link", name="中文").click()
    shot(page, "admin-zh-audit")
    runner = CliRunner()
    env = {"TUITION_DATABASE_URL": servers.database_url}

    def verify() -> Any:  # in a thread: Playwright runs an event loop on this one
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(runner.invoke, cli, ["audit", "verify"], env=env).result()

    get_settings.cache_clear()
    try:
        assert verify().exit_code == 0
        servers.run_db(
            'UPDATE audit_events SET after = \'{"role":"owner"}\''
            " WHERE action = 'operator.role_changed'"
        )
        get_settings.cache_clear()
        broken = verify()
        assert broken.exit_code == 1
        assert "changed after sealing" in broken.output
    finally:
        get_settings.cache_clear()


def test_a_support_operator_resends_a_webhook_from_the_events_page(
    servers: Servers, browsing: Any
) -> None:
    with servers.api() as api:
        made = api.post(
            "/v1/webhook_endpoints",
            json={"url": f"{servers.base_url}/e2e/platform-webhooks", "events": ["order.paid"]},
        )
        assert made.status_code in (200, 201), made.text
    order_id, _payment_id = _paid_order(servers, "webhook-customer")
    deadline = time.monotonic() + 15
    while servers.webhooks.count("order.paid") < 1:
        assert time.monotonic() < deadline, "the webhook was not delivered"
        time.sleep(0.1)
    before = servers.webhooks.count("order.paid")
    _operator(servers, "resender@example.com", Role.SUPPORT)
    page = browsing(locale="zh-CN").page()
    _log_in(page, servers, "resender@example.com", zh=True)
    page.wait_for_url(f"{servers.base_url}/admin")
    page.goto(f"{servers.base_url}/admin/developers/events?type=order.paid")
    event = page.get_by_test_id("event").filter(has_text=order_id)
    assert event.get_by_test_id("delivery-status").first.inner_text() == "succeeded"
    shot(page, "admin-zh-events")
    event.get_by_role("button", name="重新发送").click()
    assert "已重新排队" in page.get_by_test_id("resent").inner_text()
    deadline = time.monotonic() + 15
    while servers.webhooks.count("order.paid") <= before:
        assert time.monotonic() < deadline, "the resent webhook did not arrive"
        time.sleep(0.1)
    page.goto(f"{servers.base_url}/admin/developers/events?type=order.paid&lang=en")
    shot(page, "admin-en-events")


def test_every_new_page_in_both_languages_and_on_a_phone(servers: Servers, browsing: Any) -> None:
    order_id, payment_id = _paid_order(servers, "screenshot-customer")
    pages = {
        "orders": "/admin/orders",
        "payments": "/admin/payments",
        "payment": f"/admin/payments/{payment_id}",
        "customers": "/admin/customers?q=screenshot",
        "operators": "/admin/operators",
        "audit": "/admin/audit",
        "api-keys": "/admin/developers/keys",
        "events": "/admin/developers/events",
        "two-factor": "/admin/two-factor",
        "dashboard": "/admin",
        "order": f"/admin/orders/{order_id}",
        "refunds": "/admin/refunds",
        "subscriptions": "/admin/subscriptions",
        "invoices": "/admin/invoices",
        "payees": "/admin/payees",
        "promoters": "/admin/promoters",
        "payout-runs": "/admin/payout_runs",
        "reconciliations": "/admin/reconciliations",
        "risk": "/admin/risk",
        "risk-reviews": "/admin/risk/reviews",
        "risk-decisions": "/admin/risk/decisions",
        "ledger": "/admin/ledger",
    }
    for locale, lang, viewport in (("en-US", "en", None), ("zh-CN", "zh", PHONE)):
        b = browsing(locale=locale, viewport=viewport) if viewport else browsing(locale=locale)
        page = b.page()
        page.goto(f"{servers.base_url}/admin/login")
        page.locator("#email").fill(servers.admin_email)
        page.locator("#password").fill(servers.admin_password)
        page.locator("form button[type=submit]").click()
        page.wait_for_url(f"{servers.base_url}/admin")
        for name, path in pages.items():
            response = page.goto(f"{servers.base_url}{path}")
            assert response is not None
            assert response.status == 200, path
            assert page.locator("html").get_attribute("lang") == ("zh-CN" if lang == "zh" else "en")
            if name != "two-factor":  # a page of its own, without the console's header
                assert "UTC+8" in page.get_by_test_id("time-zone").inner_text()
            shot(page, f"admin-{lang}-page-{name}{'-phone' if viewport else ''}")
        # On a phone the lists keep amount and status visible.
        if viewport:
            for path in (f"/admin/orders?q={order_id}", f"/admin/payments?q={payment_id}"):
                page.goto(f"{servers.base_url}{path}")
                row = page.locator("tbody tr").first
                for cell in (row.locator("td.num").first, row.locator(".status").first):
                    box = cell.bounding_box()
                    assert box is not None
                    assert box["x"] + box["width"] <= PHONE["width"], path  # on the screen
                shot(page, f"admin-zh-list-phone-{path.split('?')[0].rsplit('/', 1)[-1]}")
