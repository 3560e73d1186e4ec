"""The catalog and developers pages in a real browser, in English and Chinese: an owner
creates a product and a coupon, rotates a webhook endpoint's secret (shown once) and
opens the channel notifications log and a notification decoded; a phone still shows a
product's price and status. Screenshots of every new page in both languages."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.conftest import PHONE, shot
from tests.e2e.server import Servers, run_sync
from tuition.domain.operators import Role
from tuition.services.admin import create_admin_user
from tuition.store.db import create_engine
from tuition.store.uow import UnitOfWork

PASSWORD = "a-long-enough-password"
EMAIL = "catalog-owner@example.com"


@pytest.fixture(scope="module")
def owner(servers: Servers) -> str:
    async def go() -> None:
        engine: AsyncEngine = create_engine(servers.database_url)
        try:
            await create_admin_user(
                UnitOfWork(engine), EMAIL, PASSWORD, servers.clock, role=Role.OWNER
            )
        finally:
            await engine.dispose()

    run_sync(go())
    return EMAIL


@pytest.fixture(scope="module")
def paid(servers: Servers, catalog: dict[str, str]) -> str:
    """A payment made through the simulator, so the log holds its notification."""
    with servers.api() as api:
        order = api.post(
            "/v1/orders",
            json={
                "customer_id": "u_catalog",
                "currency": "CNY",
                "items": [{"product_id": catalog["python"]}],
            },
        ).json()
        payment = api.post(
            f"/v1/orders/{order['id']}/payments", json={"channel": "sandbox", "method": "qr"}
        ).json()
        decided = httpx.post(f"{servers.gateway_url}/_control/payments/{payment['id']}/pay")
        assert decided.status_code == 200, decided.text
        deadline = time.monotonic() + 10
        while api.get(f"/v1/payments/{payment['id']}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline, "the notification did not arrive"
            time.sleep(0.05)
    return str(payment["id"])


def _log_in(page: Any, servers: Servers, *, zh: bool) -> None:
    page.goto(f"{servers.base_url}/admin/login")
    page.get_by_label("邮箱" if zh else "Email").fill(EMAIL)
    page.get_by_label("密码" if zh else "Password").fill(PASSWORD)
    page.get_by_role("button", name="登录" if zh else "Log in").click()
    page.wait_for_url(f"{servers.base_url}/admin")


@pytest.mark.parametrize("zh", [False, True], ids=["en", "zh"])
def test_an_owner_creates_a_product_and_a_coupon_rotates_a_secret_and_reads_the_log(
    zh: bool, servers: Servers, catalog: dict[str, str], owner: str, paid: str, browsing: Any
) -> None:
    lang = "zh" if zh else "en"
    page = browsing(locale="zh-CN" if zh else "en-US").page()
    _log_in(page, servers, zh=zh)
    base = servers.base_url

    # Products: the list names the creator; a new product is created from the form.
    page.locator('nav a[href="/admin/catalog/products"]').click()
    page.wait_for_url(f"{base}/admin/catalog/products")
    assert "李老师" in page.get_by_test_id("products").inner_text()
    shot(page, f"admin-{lang}-products")
    page.get_by_test_id("new-product").click()
    title = f"浏览器里建的课 {lang}"
    page.fill("#p-title", title)
    page.fill("#p-prices", "CNY 88.80")
    page.select_option("#p-creator", label="李老师")
    shot(page, f"admin-{lang}-product-new")
    page.locator('[data-testid="product-form"] button[type="submit"]').click()
    page.wait_for_url(f"{base}/admin/catalog/products/prod_*")
    assert page.get_by_test_id("creator-name").inner_text() == "李老师"
    assert "88.80" in page.get_by_test_id("product-facts").inner_text()
    page.fill("#e-prices", "CNY 1.999")  # refused, shown, nothing written
    page.locator('[data-testid="product-edit"] button[type="submit"]').click()
    assert "amount_invalid" in page.get_by_test_id("problem").inner_text()
    assert "88.80" in page.get_by_test_id("product-facts").inner_text()
    shot(page, f"admin-{lang}-product")

    # Coupons: create one, land on its page.
    page.goto(f"{base}/admin/catalog/coupons")
    code = f"BROWSER{lang.upper()}"
    page.fill("#c-code", code.lower())
    page.fill("#c-percent", "15")
    page.locator('[data-testid="coupon-form"] button[type="submit"]').click()
    page.wait_for_url(f"{base}/admin/catalog/coupons/{code}?done=created")
    assert "15.0%" in page.get_by_test_id("coupon-facts").inner_text()
    shot(page, f"admin-{lang}-coupon")
    page.goto(f"{base}/admin/catalog/coupons")
    assert code in page.get_by_test_id("coupons").inner_text()
    shot(page, f"admin-{lang}-coupons")
    page.goto(f"{base}/admin/catalog/tax_rates")
    shot(page, f"admin-{lang}-tax-rates")
    page.goto(f"{base}/admin/catalog/creators")
    assert "李老师" in page.get_by_test_id("creators").inner_text()
    shot(page, f"admin-{lang}-creators")
    page.locator("[data-testid=creators] a").first.click()
    assert page.get_by_test_id("creator-name").inner_text() == "李老师"
    shot(page, f"admin-{lang}-creator")

    # Webhooks: rotate the platform endpoint's secret; it is shown once.
    page.locator('nav a[href="/admin/developers/webhooks"]').click()
    shot(page, f"admin-{lang}-webhooks")
    page.locator("[data-testid=endpoints] a").first.click()
    page.get_by_test_id("rotate").click()
    secret = page.get_by_test_id("secret").inner_text()
    assert secret.startswith("whsec_")
    shot(page, f"admin-{lang}-webhook-rotated")
    page.reload()
    assert secret not in page.content()

    # The notifications log, then one notification decoded, linked to its payment.
    page.locator('nav a[href="/admin/developers/notifications"]').click()
    log = page.get_by_test_id("notifications-log").inner_text()
    assert paid in log
    assert ("已应用" if zh else "Applied") in log
    shot(page, f"admin-{lang}-notifications")
    page.locator("[data-testid=notifications-log] tbody a").first.click()
    assert ("已应用" if zh else "Applied") in page.get_by_test_id("verdict").inner_text()
    shot(page, f"admin-{lang}-notification")
    page.goto(f"{base}/admin/payments/{paid}")
    page.get_by_test_id("notification-link").first.click()
    page.wait_for_url(f"{base}/admin/developers/notifications/ntf_*")


def test_on_a_phone_products_keep_their_price_and_status_visible(
    servers: Servers, catalog: dict[str, str], owner: str, browsing: Any
) -> None:
    page = browsing(locale="zh-CN", viewport=PHONE).page()
    _log_in(page, servers, zh=True)
    page.goto(f"{servers.base_url}/admin/catalog/products")
    row = page.locator(f'[data-product="{catalog["python"]}"]')
    assert row.locator("td.num").is_visible()
    assert row.locator(".status").is_visible()
    assert "199.00" in row.locator("td.num").inner_text()
    shot(page, "admin-zh-phone-products")
    page.goto(f"{servers.base_url}/admin/developers/notifications")
    shot(page, "admin-zh-phone-notifications")
