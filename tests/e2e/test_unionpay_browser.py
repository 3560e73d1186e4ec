"""UnionPay's page flow in a real browser: the checkout page hands the signed form to the
browser, which posts it to the (simulated) UnionPay by itself; the buyer pays there and
comes back to a page that turns paid once UnionPay's signed notification arrives."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import shot
from tests.e2e.server import Servers, start


@pytest.fixture(scope="module")
def servers(browser: Any) -> Iterator[Servers]:  # overrides conftest's: UnionPay enabled
    running = start(channels=["unionpay", "sandbox"])
    yield running
    running.stop()


def test_the_signed_form_goes_to_unionpay_by_itself_and_the_page_comes_back_paid(
    servers: Servers, catalog: dict[str, str], browsing: Any
) -> None:
    with servers.api() as api:
        made = api.post(
            "/v1/orders",
            json={
                "customer_id": "buyer-unionpay",
                "currency": "CNY",
                "items": [{"product_id": catalog["writing"]}],
            },
        )
        assert made.status_code == 201, made.text
        order = made.json()
    page = browsing(locale="zh-CN").page()
    page.goto(order["checkout_url"])
    page.get_by_role("radio", name="银联 前往支付网站付款").check()
    page.get_by_test_id("pay-button").click()

    # The form page submits itself: the browser lands on the gateway's buyer page.
    page.wait_for_url(f"{servers.gateway_url}/pay/**")
    shot(page, "unionpay-gateway-simulator")
    page.get_by_role("button", name="Pay").click()

    page.wait_for_url(f"{servers.base_url}/pay/{order['id']}?**")
    page.get_by_test_id("headline").filter(has_text="支付成功").wait_for(timeout=15_000)
    shot(page, "checkout-zh-unionpay-paid")
