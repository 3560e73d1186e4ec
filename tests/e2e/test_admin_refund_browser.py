"""An operator refunds an order in a real browser: the refund form on the order page, the
confirmation step, and the refund on the order page once the gateway has settled it."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.e2e.conftest import shot
from tests.e2e.server import Servers


def _paid_order(servers: Servers, catalog: dict[str, str], names: list[str]) -> dict[str, Any]:
    """An order paid through the API and the simulator's control API."""
    with servers.api() as api:
        order = api.post(
            "/v1/orders",
            json={
                "customer_id": "reader-refund",
                "currency": "CNY",
                "items": [{"product_id": catalog[n]} for n in names],
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
    return order


def test_an_admin_refunds_a_line_of_a_paid_order_and_sees_it_on_the_order_page(
    servers: Servers, catalog: dict[str, str], browsing: Any
) -> None:
    order = _paid_order(servers, catalog, ["python", "writing"])
    page = browsing(locale="en-US").page()
    page.goto(f"{servers.base_url}/admin/orders/{order['id']}")
    page.wait_for_url("**/admin/login?next=**")
    page.get_by_label("Email").fill(servers.admin_email)
    page.get_by_label("Password").fill(servers.admin_password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**/admin/orders/{order['id']}")

    form = page.locator("#refund")
    assert "The refund rules allow CN¥298.00 to be refunded now." in form.inner_text()
    assert page.get_by_test_id("refundable-1").inner_text() == "CN¥99.00"
    form.get_by_label("The lines ticked below").check()
    form.get_by_label("高效写作 30 讲").check()  # line 1
    form.get_by_label("Reason").select_option("content_issue")
    shot(page, "admin-en-order-refund-form")
    form.get_by_role("button", name="Review the refund").click()

    page.wait_for_url(f"**/admin/orders/{order['id']}/refunds/confirm")
    assert page.get_by_test_id("confirm-total").inner_text() == "Refund CN¥99.00 to the buyer"
    shot(page, "admin-en-refund-confirm")
    page.get_by_role("button", name="Refund CN¥99.00 now").click()

    page.wait_for_url(f"**/admin/orders/{order['id']}?refund=re_*")
    assert "CN¥99.00" in page.get_by_test_id("refund-notice").inner_text()
    # The sandbox settles the refund by an asynchronous notification: reload until it has.
    deadline = time.monotonic() + 10
    while "Succeeded" not in page.get_by_test_id("order-refunds").inner_text():
        assert time.monotonic() < deadline, page.get_by_test_id("order-refunds").inner_text()
        time.sleep(0.2)
        page.reload()
    refunds = page.get_by_test_id("order-refunds").inner_text()
    assert "line 1: CN¥99.00" in refunds
    assert f"admin:{servers.admin_email}" in refunds
    assert "Problem with the content" in refunds
    assert page.get_by_test_id("timeline").get_by_text("Refund succeeded").is_visible()
    assert page.get_by_test_id("refundable-1").inner_text() == "CN¥0.00"
    shot(page, "admin-en-order-refunded")
    with servers.api() as api:
        after = api.get(f"/v1/orders/{order['id']}").json()
    assert after["status"] == "partially_refunded"
    assert after["amount_refunded"] == 9900
