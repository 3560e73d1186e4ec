"""The wallet in a real browser: an operator credits a customer's wallet on the customer
page, then the buyer pays an order from that balance on the checkout page."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.e2e.conftest import PHONE, shot
from tests.e2e.server import Servers

CUSTOMER = "reader-wallet"


def test_an_operator_credits_a_wallet_and_the_buyer_pays_from_it(
    servers: Servers, catalog: dict[str, str], browsing: Any
) -> None:
    with servers.api() as api:
        spent = api.post(
            "/v1/orders",
            json={
                "customer_id": CUSTOMER,
                "currency": "CNY",
                "items": [{"product_id": catalog["writing"]}],
            },
        ).json()

    page = browsing(locale="en-US").page()
    page.goto(f"{servers.base_url}/admin/customers")
    page.wait_for_url("**/admin/login?next=**")
    page.get_by_label("Email").fill(servers.admin_email)
    page.get_by_label("Password").fill(servers.admin_password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/customers")
    page.get_by_label("Customer ID").fill(CUSTOMER)
    page.get_by_role("button", name="Open").click()
    page.wait_for_url(f"**/admin/customers/{CUSTOMER}")

    form = page.locator("#adjust")
    form.get_by_label("Amount").fill("150.00")
    form.get_by_label("Reason").fill("Welcome credit for the spring campaign")
    form.get_by_role("button", name="Make the adjustment").click()
    page.wait_for_url(f"**/admin/customers/{CUSTOMER}?adjusted=wtx_*")
    notice = page.get_by_test_id("adjustment-notice").inner_text()
    assert "Credited CN¥150.00." in notice
    assert page.get_by_test_id("balance-CNY").inner_text() == "CN¥150.00"

    form = page.locator("#adjust")
    form.get_by_label("Amount").fill("-500.00")
    form.get_by_label("Reason").fill("Too much")
    form.get_by_role("button", name="Make the adjustment").click()
    assert "insufficient_balance" in page.get_by_test_id("adjustment-problem").inner_text()
    assert page.get_by_test_id("balance-CNY").inner_text() == "CN¥150.00"

    buyer = browsing(locale="zh-CN", viewport=PHONE).page()
    buyer.goto(spent["checkout_url"])
    option = buyer.get_by_test_id("wallet-option")
    assert "可用 ¥150.00" in option.inner_text()
    assert option.locator("input").is_checked()
    shot(buyer, "checkout-zh-wallet-option")
    buyer.get_by_test_id("pay-button").click()
    buyer.wait_for_selector("#state-paid:not([hidden])")
    assert "余额" in buyer.locator("#state-paid").inner_text()
    shot(buyer, "checkout-zh-wallet-paid")

    page.goto(f"{servers.base_url}/admin/customers/{CUSTOMER}")
    assert page.get_by_test_id("balance-CNY").inner_text() == "CN¥51.00"
    history = page.get_by_test_id("transactions").inner_text()
    assert "Order paid from balance" in history
    assert spent["id"] in history
    shot(page, "admin-en-customer-wallet")


def test_a_short_balance_shows_the_shortfall_and_a_paid_top_up_what_it_credited(
    servers: Servers, catalog: dict[str, str], browsing: Any
) -> None:
    customer = "reader-topup"
    with servers.api() as api:
        pack = api.post(
            "/v1/products",
            json={
                "creator_id": catalog["creator"],
                "title": "100 学币",
                "kind": "topup",
                "topup_credit": 1000,
                "prices": {"CNY": 1000},
            },
        ).json()
        topup = api.post(
            "/v1/orders",
            json={
                "customer_id": customer,
                "currency": "CNY",
                "items": [{"product_id": pack["id"]}],
            },
        ).json()
        payment = api.post(
            f"/v1/orders/{topup['id']}/payments", json={"channel": "sandbox", "method": "qr"}
        ).json()
        paid = httpx.post(f"{servers.gateway_url}/_control/payments/{payment['id']}/pay")
        assert paid.status_code == 200, paid.text
        deadline = time.monotonic() + 10
        while api.get(f"/v1/orders/{topup['id']}").json()["status"] != "paid":
            assert time.monotonic() < deadline, "the notification did not arrive"
            time.sleep(0.05)
        course = api.post(
            "/v1/orders",
            json={
                "customer_id": customer,
                "currency": "CNY",
                "items": [{"product_id": catalog["python"]}],
            },
        ).json()

    buyer = browsing(locale="en-US", viewport=PHONE).page()
    buyer.goto(topup["checkout_url"])
    assert (
        "CN¥10.00 has been added to your balance."
        in buyer.get_by_test_id("topup-credited").inner_text()
    )
    shot(buyer, "checkout-en-topup-paid")
    buyer.goto(course["checkout_url"])
    option = buyer.get_by_test_id("wallet-option")
    assert "Pay with balance (CN¥10.00 available)" in option.inner_text()
    assert "CN¥189.00 short" in option.inner_text()
    assert option.locator("input").is_disabled()
    shot(buyer, "checkout-en-wallet-short")
