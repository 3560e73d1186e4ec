"""The buyer's road in a real browser: open the checkout link, apply a coupon, pick a
channel, pay in the gateway simulator, and watch the page turn to paid by itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e.conftest import PHONE, shot
from tests.e2e.server import Servers


def _order(servers: Servers, catalog: dict[str, str], *names: str, **extra: Any) -> dict[str, Any]:
    with servers.api() as api:
        body = {
            "customer_id": extra.pop("customer_id", "buyer-1"),
            "currency": "CNY",
            "items": [{"product_id": catalog[n]} for n in names],
            "return_url": "https://shop.example/orders/42",
            **extra,
        }
        response = api.post("/v1/orders", json=body)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


def test_a_buyer_applies_a_coupon_pays_by_qr_code_and_sees_paid_without_reloading(
    servers: Servers, catalog: dict[str, str], browsing: Any
) -> None:
    order = _order(servers, catalog, "python", "writing", customer_id="buyer-qr")
    buyer = browsing(locale="zh-CN", viewport=PHONE)
    page = buyer.page()
    page.goto(order["checkout_url"])
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.get_by_test_id("headline").inner_text() == "支付订单"
    assert page.get_by_test_id("total").inner_text() == "¥298.00"
    shot(page, "checkout-zh-open")

    page.get_by_label("优惠码").fill("welcome20")
    page.get_by_role("button", name="使用").click()
    page.get_by_test_id("notice").wait_for()
    assert page.get_by_test_id("coupon-code").inner_text() == "WELCOME20"
    assert page.get_by_test_id("total").inner_text() == "¥238.40"  # 298.00 - 20 %
    assert page.get_by_test_id("coupon-discount").is_visible()

    page.get_by_test_id("qr-switch").click()  # pay on another device: the QR codes
    page.get_by_role("radio", name="沙箱支付 扫码支付").check()
    page.get_by_test_id("pay-button").click()
    qr = page.locator("svg.qr-code")
    qr.wait_for()
    assert page.get_by_text("请使用沙箱支付扫码支付 ¥238.40").is_visible()
    shot(page, "checkout-zh-qr")

    # The buyer "scans" on a phone: the QR code's payload is the gateway's pay page.
    page.evaluate("window.stillTheSamePage = true")
    gateway_url = page.get_by_test_id("qr-link").get_attribute("href")
    assert gateway_url.startswith(servers.gateway_url)
    phone = buyer.page()
    phone.goto(gateway_url)
    assert "238.40" in phone.get_by_test_id("amount").inner_text()
    phone.get_by_role("button", name="Pay").click()

    # The first page polls its status and turns to paid in place.
    page.get_by_test_id("headline").filter(has_text="支付成功").wait_for(timeout=15_000)
    assert page.evaluate("window.stillTheSamePage") is True
    assert page.locator("#payable").is_hidden()
    assert page.get_by_test_id("return").get_attribute("href") == "https://shop.example/orders/42"
    shot(page, "checkout-zh-paid")

    html = page.content()
    for secret in ("buyer-qr", "sandbox_app", "sandbox_secret", "pay_", servers.api_key):
        assert secret not in html, secret
    with servers.api() as api:
        paid = api.get(f"/v1/orders/{order['id']}").json()
    assert paid["status"] == "paid"
    assert paid["total"] == 23840


def test_the_page_flow_goes_to_the_gateway_and_comes_back_paid(
    servers: Servers, catalog: dict[str, str], browsing: Any
) -> None:
    order = _order(servers, catalog, "design", customer_id="buyer-page")
    page = browsing(locale="en-US").page()
    page.goto(order["checkout_url"])
    assert page.get_by_test_id("headline").inner_text() == "Pay for your order"
    page.get_by_label("Coupon code").fill("TENOFF")
    page.get_by_role("button", name="Apply").click()
    page.get_by_test_id("notice").wait_for()
    assert page.get_by_test_id("total").inner_text() == "CN¥289.00"
    shot(page, "checkout-en-coupon")

    page.get_by_role("radio", name="Sandbox Continue on the payment site").check()
    page.get_by_test_id("pay-button").click()
    page.wait_for_url(f"{servers.gateway_url}/pay/**")
    shot(page, "gateway-simulator")
    page.get_by_role("button", name="Pay").click()

    # The gateway sends the buyer back to the checkout page, which shows the outcome.
    page.wait_for_url(f"{servers.base_url}/pay/{order['id']}?**")
    page.get_by_test_id("headline").filter(has_text="Payment received").wait_for(timeout=15_000)
    shot(page, "checkout-en-paid")

    # Reopening a paid order's link says it is paid, and offers no way to pay again.
    page.goto(order["checkout_url"])
    assert page.get_by_test_id("headline").inner_text() == "Payment received"
    assert page.get_by_test_id("pay-button").count() == 0


def test_an_expired_orders_page_says_so(
    servers: Servers, catalog: dict[str, str], browsing: Any
) -> None:
    order = _order(servers, catalog, "writing", customer_id="buyer-late")
    past = datetime.now(UTC) - timedelta(minutes=1)
    servers.run_db(  # SQLite keeps naive UTC text
        "UPDATE orders SET expires_at = :t WHERE id = :id",
        t=past.strftime("%Y-%m-%d %H:%M:%S.%f"),
        id=order["id"],
    )
    for locale, headline in [("zh-CN", "订单已过期"), ("en-US", "This order has expired")]:
        page = browsing(locale=locale, viewport=PHONE).page()
        page.goto(order["checkout_url"])
        assert page.get_by_test_id("headline").inner_text() == headline
        assert page.get_by_test_id("pay-button").count() == 0
        assert page.get_by_role(
            "link", name="返回Tuition" if locale == "zh-CN" else "Back to Tuition"
        ).is_visible()
        shot(page, f"checkout-{locale[:2]}-expired")


def test_a_tampered_link_opens_nothing(
    servers: Servers, catalog: dict[str, str], browsing: Any
) -> None:
    order = _order(servers, catalog, "writing", customer_id="buyer-tamper")
    page = browsing(locale="en-US", viewport=PHONE).page()
    url = order["checkout_url"]
    response = page.goto(url[:-1] + ("1" if url.endswith("0") else "0"))
    assert response.status == 404
    assert page.get_by_role("heading").inner_text() == "This payment link is not valid"
    shot(page, "checkout-en-invalid-link")


def test_a_declined_payment_is_shown_in_place_and_the_buyer_can_try_again(
    servers: Servers, catalog: dict[str, str], browsing: Any
) -> None:
    order = _order(servers, catalog, "writing", customer_id="buyer-declined")
    buyer = browsing(locale="en-US", viewport=PHONE)
    page = buyer.page()
    page.goto(order["checkout_url"])
    page.get_by_test_id("qr-switch").click()  # pay on another device: the QR codes
    page.get_by_role("radio", name="Sandbox Scan a QR code").check()
    page.get_by_test_id("pay-button").click()
    phone = buyer.page()
    phone.goto(page.get_by_test_id("qr-link").get_attribute("href"))
    phone.get_by_role("button", name="Decline").click()

    failure = page.locator("#attempt-failed")
    failure.wait_for(timeout=15_000)
    assert "did not go through" in failure.inner_text()
    failure.get_by_test_id("decline-reason").wait_for()  # the reason, in place
    assert "Reason: The payment was declined." in failure.inner_text()
    assert page.locator("#qr").is_hidden()
    assert page.get_by_test_id("pay-button").is_visible()  # the methods, open again
    shot(page, "checkout-en-declined")
