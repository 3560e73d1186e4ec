"""The printable receipt in a real browser, in Chinese and in English: a buyer pays from
the wallet, is refunded in part, and opens the receipt link the API hands out."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import PHONE, shot
from tests.e2e.server import Servers

CUSTOMER = "reader-receipt"


def test_the_receipt_page_shows_the_order_in_both_languages(
    servers: Servers, catalog: dict[str, str], browsing: Any
) -> None:
    with servers.api() as api:
        credit = api.post(
            f"/v1/customers/{CUSTOMER}/wallet/adjustments",
            json={"currency": "CNY", "amount": 50000, "reason": "receipt test"},
        )
        assert credit.status_code == 201, credit.text
        order = api.post(
            "/v1/orders",
            json={
                "customer_id": CUSTOMER,
                "currency": "CNY",
                "items": [{"product_id": catalog["python"]}, {"product_id": catalog["writing"]}],
            },
        ).json()
        paid = api.post(f"/v1/orders/{order['id']}/payments", json={"channel": "wallet"})
        assert paid.status_code == 201, paid.text
        refund = api.post(
            "/v1/refunds", json={"order_id": order["id"], "amount": 1000, "to": "wallet"}
        )
        assert refund.status_code == 201, refund.text
        receipt = api.get(f"/v1/orders/{order['id']}/receipt").json()
    assert receipt["total"] == 29800
    url = receipt["url"]

    zh = browsing(locale="zh-CN", viewport=PHONE).page()
    zh.goto(url + "&lang=zh-CN")
    assert zh.locator("html").get_attribute("lang") == "zh-CN"
    assert zh.get_by_role("heading", name="收据").is_visible()
    assert zh.get_by_test_id("order-id").inner_text() == order["id"]
    assert zh.get_by_test_id("total").inner_text() == "¥298.00"
    assert zh.get_by_test_id("refunded").inner_text() == "¥10.00"
    assert "Asia/Shanghai" in zh.get_by_test_id("paid-at").inner_text()
    lines = zh.get_by_test_id("lines").inner_text()
    assert "Python 数据分析实战" in lines
    assert "高效写作 30 讲" in lines
    assert "已退款" in zh.get_by_test_id("totals").inner_text()
    shot(zh, "receipt-zh")

    en = browsing(locale="en-US").page()
    en.goto(url + "&lang=en")
    assert en.locator("html").get_attribute("lang") == "en"
    assert en.get_by_role("heading", name="Receipt").is_visible()
    assert en.get_by_test_id("total").inner_text() == "CN¥298.00"
    assert "Refunded so far" in en.get_by_test_id("totals").inner_text()
    assert "wallet" in en.get_by_test_id("payments").inner_text()
    shot(en, "receipt-en")

    forged = browsing().page()
    answer = forged.goto(url.split("?")[0] + "?sig=" + "0" * 32)
    assert answer is not None
    assert answer.status == 404
