"""The checkout page as the merchant's: branding from settings, the receipt on the paid
page (in the platform's time zone, with our and the gateway's references), and a failed
payment's reason in words with the next step."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.shop import order_body, post
from tuition import web
from tuition.config import Settings, load_settings
from tuition.simulator.app import Simulator

EN = {"accept-language": "en"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32  # enough for a content check


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    logo = tmp_path / "logo.png"
    logo.write_bytes(PNG)
    return load_settings(
        database_url=db_url,
        merchant_name="Ada Academy",
        merchant_logo_file=str(logo),
        merchant_accent_colour="#AA3300",
        merchant_support="help@ada.example",
        time_zone="Asia/Shanghai",
    )


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    web.mount(app)


def _link(order: dict[str, Any]) -> tuple[str, str]:
    url = urlsplit(order["checkout_url"])
    return url.path, parse_qs(url.query)["sig"][0]


async def test_the_page_names_the_merchant_with_its_logo_colour_and_support(
    client: httpx.AsyncClient, anon_client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    order = await post(
        client, "/v1/orders", order_body(shop, "c1", return_url="https://ada.example/course")
    )
    path, sig = _link(order)
    page = (await anon_client.get(path, params={"sig": sig}, headers=EN)).text
    assert "<title>Pay for your order · Ada Academy</title>" in page
    assert "Back to Ada Academy" in page
    assert 'href="mailto:help@ada.example"' in page
    logo = re.search(r'<img class="brand-logo" src="([^"]+)"', page)
    css = re.search(r'<link rel="stylesheet" href="(/assets/brand/style\.css[^"]*)"', page)
    assert logo is not None
    assert css is not None
    served = await anon_client.get(logo.group(1))
    assert (served.headers["content-type"], served.content) == ("image/png", PNG)
    colours = await anon_client.get(css.group(1))
    assert "--brand: #AA3300" in colours.text
    assert colours.headers["content-type"].startswith("text/css")


async def test_the_paid_page_shows_a_receipt_in_the_platforms_time_zone(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
) -> None:
    order = await post(
        client, "/v1/orders", order_body(shop, "c1", return_url="https://ada.example/course")
    )
    path, sig = _link(order)
    started = await anon_client.post(f"{path}/attempts", data={"sig": sig, "option": "sandbox:qr"})
    assert started.status_code == 303
    payment = (await client.get(f"/v1/orders/{order['id']}/payments")).json()["data"][0]
    await gateway.pay(payment["id"])
    await gateway.drain()
    reference = (await client.get(f"/v1/payments/{payment['id']}")).json()
    page = (await anon_client.get(path, params={"sig": sig}, headers=EN)).text
    receipt = page[page.index('data-testid="receipt"') :]
    assert "CN¥99.00" in receipt
    # The clock is 2026-11-01 09:00 UTC: 17:00 in Shanghai.
    assert "2026-11-01 17:00" in receipt
    assert "(Asia/Shanghai)" in receipt
    assert "Sandbox" in receipt
    assert order["id"] in receipt
    assert gateway.payment(payment["id"]).trade_no in receipt  # the gateway's reference
    assert 'href="https://ada.example/course"' in receipt
    assert "Continue to Ada Academy" in receipt
    assert f"/receipts/{order['id']}?sig=" in receipt  # the printable one
    assert reference["status"] == "succeeded"


async def test_a_declined_payment_says_why_and_what_to_do_next(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    path, sig = _link(order)
    await anon_client.post(f"{path}/attempts", data={"sig": sig, "option": "sandbox:qr"})
    payment = (await client.get(f"/v1/orders/{order['id']}/payments")).json()["data"][0]
    await gateway.decline(payment["id"])
    await gateway.drain()
    page = (await anon_client.get(path, params={"sig": sig}, headers=EN)).text
    alert = page[page.index('data-testid="error"') :]
    alert = alert[: alert.index("</div>")]
    assert "The payment did not go through. Try again or choose another method." in alert
    assert "Reason: The payment was declined." in alert
    assert 'name="option"' in page  # the methods are offered again


async def test_where_no_method_works_the_page_offers_a_qr_code_for_another_device(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
) -> None:
    """Only the sandbox here, and the page is opened inside WeChat (JSAPI only)."""
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    path, sig = _link(order)
    wechat = {**EN, "user-agent": "Mozilla/5.0 (iPhone) Mobile MicroMessenger/8.0.50"}
    page = (await anon_client.get(path, params={"sig": sig}, headers=wechat)).text
    assert 'name="option"' not in page
    assert "None of the payment methods works here." in page
    switch = re.search(r'href="([^"]+)" data-testid="qr-switch"', page)
    assert switch is not None
    other = (await anon_client.get(switch.group(1).replace("&amp;", "&"), headers=wechat)).text
    assert 'value="sandbox:qr"' in other
