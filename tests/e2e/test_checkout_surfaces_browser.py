"""The checkout page on every surface in a real browser: a desktop, a phone and WeChat's
in-app browser (by their user agents), with the simulator playing Alipay, WeChat Pay and
WeChat itself (web OAuth, the JSAPI bridge and payment sheet)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from tests.e2e.conftest import DESKTOP, PHONE, shot
from tests.e2e.server import Servers
from tests.unit.test_checkout_methods import ANDROID, WECHAT


def _order(servers: Servers, catalog: dict[str, str], *names: str, **extra: Any) -> dict[str, Any]:
    with servers.api() as api:
        body = {
            "customer_id": extra.pop("customer_id", "buyer-surface"),
            "currency": "CNY",
            "items": [{"product_id": catalog[n]} for n in names],
            "return_url": "https://shop.example/courses/1",
            **extra,
        }
        response = api.post("/v1/orders", json=body)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


def _offered(page: Any) -> list[str]:
    radios = page.locator("input[name=option]")
    return [radios.nth(i).get_attribute("value") for i in range(radios.count())]


def test_each_device_is_offered_its_own_method_per_channel(
    servers: Servers, catalog: dict[str, str], browsing: Any
) -> None:
    order = _order(servers, catalog, "python", "writing", customer_id="buyer-devices")

    desktop = browsing(locale="en-US", viewport=DESKTOP).page()
    desktop.goto(order["checkout_url"])
    # In channel choice's order: with no history yet, the cheaper fee first (the e2e
    # server's WeChat Pay 0.55 % before Alipay's 0.6 %), and the sandbox always last.
    assert _offered(desktop) == ["wechatpay:native", "alipay:page", "sandbox:page"]
    checked = desktop.locator("input[name=option]:checked")
    assert checked.get_attribute("value") == "wechatpay:native"
    shot(desktop, "surface-desktop-methods")

    phone = browsing(locale="zh-CN", viewport=PHONE, user_agent=ANDROID).page()
    phone.goto(order["checkout_url"])
    assert _offered(phone) == ["wechatpay:h5", "alipay:wap", "sandbox:page"]
    # The Pay button and what is bought are in the first screen of a 390 x 844 phone.
    for locator in (phone.get_by_test_id("pay-button"), phone.locator(".item-title").first):
        box = locator.bounding_box()
        assert box is not None
        assert box["y"] >= 0, box
        assert box["y"] + box["height"] <= PHONE["height"], box
    phone.screenshot(path=str(_artifact("surface-phone-first-screen")))  # the viewport only
    phone.get_by_test_id("qr-switch").click()
    assert _offered(phone) == ["wechatpay:native", "alipay:qr", "sandbox:qr"]
    shot(phone, "surface-phone-other-device")

    wechat = browsing(locale="zh-CN", viewport=PHONE, user_agent=WECHAT).page()
    wechat.goto(order["checkout_url"])
    assert _offered(wechat) == ["wechatpay:jsapi"]
    shot(wechat, "surface-wechat-methods")


def test_inside_wechat_jsapi_pays_after_the_oauth_redirect(
    servers: Servers, catalog: dict[str, str], browsing: Any
) -> None:
    order = _order(servers, catalog, "writing", customer_id="buyer-wechat")
    page = browsing(locale="zh-CN", viewport=PHONE, user_agent=WECHAT).page()
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    page.goto(order["checkout_url"])
    assert page.get_by_role("radio", name="微信支付 在微信内支付").is_checked()
    page.get_by_test_id("pay-button").click()
    # WeChat's OAuth (snsapi_base) sends the buyer back with a code; the page starts the
    # JSAPI payment with the openid and hands its parameters to WeChat's bridge, whose
    # payment sheet (the simulator's) the buyer confirms.
    page.wait_for_url(f"{servers.gateway_url}/pay/**")
    assert any("/simulator/wechat/connect/oauth2/authorize?" in url for url in seen)
    assert any("/wechat-oauth?" in url for url in seen)
    assert any("/simulator/wechatpay/jsapi?" in url for url in seen)
    shot(page, "surface-wechat-sheet")
    page.get_by_role("button", name="Pay").click()
    page.wait_for_url(f"{servers.base_url}/pay/{order['id']}?**")
    page.get_by_test_id("headline").filter(has_text="支付成功").wait_for(timeout=15_000)
    page.get_by_test_id("receipt").wait_for()
    assert "微信支付" in page.get_by_test_id("receipt-channel").inner_text()
    shot(page, "surface-wechat-paid")
    with servers.api() as api:
        payments = api.get(f"/v1/orders/{order['id']}/payments").json()["data"]
    assert [(p["method"], p["status"]) for p in payments] == [("jsapi", "succeeded")]


def test_switching_channel_shows_its_surcharge_before_paying(
    servers: Servers, catalog: dict[str, str], browsing: Any
) -> None:
    order = _order(
        servers, catalog, "writing", customer_id="buyer-surcharge", surcharge_channel="alipay"
    )
    page = browsing(locale="en-US", viewport=DESKTOP).page()
    page.goto(order["checkout_url"])
    button = page.get_by_test_id("pay-button")
    # WeChat Pay comes first (channel choice: the cheaper fee), so its total shows first.
    assert button.inner_text() == "Pay CN¥99.54"  # 99.00 + WeChat Pay's 0.55 %
    page.get_by_role("radio", name="Alipay Continue on the payment site").check()
    assert button.inner_text() == "Pay CN¥99.59"  # + Alipay's 0.6 %, before paying
    page.get_by_role("radio", name="WeChat Pay Scan a QR code").check()
    assert button.inner_text() == "Pay CN¥99.54"
    shot(page, "surface-surcharge-switched")
    button.click()
    page.locator("svg.qr-code").wait_for()
    assert page.get_by_test_id("total").inner_text() == "CN¥99.54"
    with servers.api() as api:
        payments = api.get(f"/v1/orders/{order['id']}/payments").json()["data"]
    assert [(p["channel"], p["amount"]) for p in payments] == [("wechatpay", 9954)]


def test_a_free_order_completes_with_one_button_and_shows_its_receipt(
    servers: Servers, catalog: dict[str, str], browsing: Any
) -> None:
    with servers.api() as api:
        made = api.post("/v1/coupons", json={"code": "ALLFREE", "percent_off": "1"})
        assert made.status_code in (201, 409), made.text
    order = _order(servers, catalog, "python", customer_id="buyer-free", coupon_code="ALLFREE")
    assert order["total"] == 0
    page = browsing(locale="en-US", viewport=PHONE).page()
    page.goto(order["checkout_url"])
    assert page.locator("input[name=option]").count() == 0
    shot(page, "surface-free-order")
    page.get_by_test_id("pay-button").click()
    page.get_by_test_id("headline").filter(has_text="Payment received").wait_for()
    assert "Nothing was charged." in page.get_by_test_id("free-done").inner_text()
    assert page.get_by_test_id("return").inner_text() == "Continue to Tuition"
    shot(page, "surface-free-done")


def test_a_paid_order_shows_a_receipt_and_a_declined_one_its_reason(
    servers: Servers, catalog: dict[str, str], browsing: Any
) -> None:
    buyer = browsing(locale="en-US", viewport=DESKTOP)
    paid = _order(servers, catalog, "design", customer_id="buyer-receipt")
    page = buyer.page()
    page.goto(paid["checkout_url"])
    page.get_by_role("radio", name="Sandbox Continue on the payment site").check()
    page.get_by_test_id("pay-button").click()
    page.wait_for_url(f"{servers.gateway_url}/pay/**")
    page.get_by_role("button", name="Pay").click()
    page.get_by_test_id("headline").filter(has_text="Payment received").wait_for(timeout=15_000)
    page.get_by_test_id("receipt").wait_for()
    assert page.get_by_test_id("receipt-amount").inner_text() == "CN¥299.00"
    assert "(Asia/Shanghai)" in page.get_by_test_id("receipt-paid-at").inner_text()
    assert page.get_by_test_id("receipt-reference").inner_text().startswith("SBX")
    assert page.get_by_test_id("return").get_attribute("href") == "https://shop.example/courses/1"
    shot(page, "surface-receipt")

    declined = _order(servers, catalog, "writing", customer_id="buyer-declines")
    page.goto(declined["checkout_url"])
    page.get_by_role("radio", name="Sandbox Continue on the payment site").check()
    page.get_by_test_id("pay-button").click()
    page.wait_for_url(f"{servers.gateway_url}/pay/**")
    page.get_by_role("button", name="Decline").click()
    page.wait_for_url(f"{servers.base_url}/pay/{declined['id']}?**")
    # Back before or after the gateway's notification: either way the failure shows.
    page.locator("#attempt-failed, [data-testid=decline-reason]").first.wait_for(timeout=15_000)
    page.reload()
    reason = page.get_by_test_id("decline-reason")
    assert reason.inner_text() == "Reason: The payment was declined."
    assert "Try again or choose another method." in page.get_by_test_id("error").inner_text()
    shot(page, "surface-declined-reason")


def _artifact(name: str) -> Any:
    from tests.e2e.conftest import ARTIFACTS

    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / f"{name}.png"


def _only_here(servers: Servers, blocked: list[str]) -> Any:
    here = urlsplit(servers.base_url).netloc

    def route(request_route: Any) -> None:
        if urlsplit(request_route.request.url).netloc == here:
            request_route.continue_()
        else:
            blocked.append(request_route.request.url)
            request_route.abort()

    return route


def test_the_api_docs_render_with_the_network_blocked(
    servers: Servers, browser: Any, browsing: Any
) -> None:
    page = browsing(locale="en-US", viewport=DESKTOP).page()  # fails on any foreign request
    blocked: list[str] = []
    page.route("**/*", _only_here(servers, blocked))
    page.goto(f"{servers.base_url}/docs")
    page.locator(".swagger-ui .info .title").filter(has_text="Tuition").wait_for()
    assert page.locator(".opblock").count() > 20
    assert page.locator("link[rel~=icon]").first.get_attribute("href") == "/favicon.ico"
    shot(page, "api-docs-swagger-offline")
    assert blocked == []

    # ReDoc renders as well; its bundle asks only for Redocly's decorative sidebar logo.
    context = browser.new_context(viewport=DESKTOP)
    redoc = context.new_page()
    redoc.route("**/*", _only_here(servers, blocked))
    redoc.goto(f"{servers.base_url}/redoc")
    redoc.locator("h1").filter(has_text="Tuition").first.wait_for()
    shot(redoc, "api-docs-redoc-offline")
    context.close()
    assert set(blocked) <= {"https://cdn.redoc.ly/redoc/logo-mini.svg"}
