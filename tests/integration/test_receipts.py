"""Receipts: JSON amounts equal the order's, and the signed printable page."""

from __future__ import annotations

import httpx

from tests.integration.shop import order_body, post
from tuition.simulator.app import Simulator


async def test_the_receipt_equals_the_order_and_shows_refunds_so_far(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1", "c2", tax_region="CN-X"))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    refund = await post(client, "/v1/refunds", {"order_id": order["id"], "amount": 1000})
    await gateway.drain()
    got = await client.get(f"/v1/orders/{order['id']}/receipt")
    assert got.status_code == 200, got.text
    receipt = got.json()
    now = (await client.get(f"/v1/orders/{order['id']}")).json()
    for field in ("subtotal", "discount_total", "tax_total", "total", "amount_refunded"):
        assert receipt[field] == now[field], field
    assert receipt["tax_total"] > 0
    assert sum(line["total"] for line in receipt["lines"]) == receipt["total"]
    assert receipt["net"] == now["total"] - 1000
    assert [p["id"] for p in receipt["payments"]] == [payment["id"]]
    assert receipt["payments"][0]["amount"] == receipt["total"]
    assert [r["id"] for r in receipt["refunds"]] == [refund["id"]]
    assert receipt["time_zone"] == "Asia/Shanghai"
    assert receipt["paid_at_local"].endswith("+08:00")
    url = receipt["url"]
    assert "/receipts/" in url
    assert "sig=" in url
    path = url[url.index("/receipts/") :]
    zh = await anon_client.get(path + "&lang=zh-CN")
    assert zh.status_code == 200, zh.text
    assert "收据" in zh.text
    assert order["id"] in zh.text
    en = await anon_client.get(path + "&lang=en")
    assert "Receipt" in en.text
    assert "Refunded so far" in en.text
    forged = await anon_client.get(f"/receipts/{order['id']}?sig={'0' * 32}")
    assert forged.status_code == 404


async def test_an_unpaid_order_has_no_receipt(
    client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    got = await client.get(f"/v1/orders/{order['id']}/receipt")
    assert got.status_code == 409
    assert got.json()["error"]["code"] == "order_not_paid"
    missing = await client.get("/v1/orders/ord_01J9Z3K4QW8YV6T2N5B7C0D1EF/receipt")
    assert missing.status_code == 404
