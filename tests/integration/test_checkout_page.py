"""The hosted checkout page on both engines: signed links, re-pricing with a coupon (also
under races), payment attempts from the page, and the status the page polls."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.integration.shop import order_body, post
from tuition import web
from tuition.clock import FrozenClock
from tuition.domain.errors import Conflict, InvalidRequest
from tuition.services.checkout import change_coupon
from tuition.simulator.app import Simulator
from tuition.store.tables import coupon_redemptions, coupons, outbox_events
from tuition.store.uow import UnitOfWork


@pytest.fixture(autouse=True)
def _pages(app: FastAPI) -> None:
    web.mount(app)


async def _order(client: httpx.AsyncClient, shop: dict[str, str], *names: str, **extra: Any) -> Any:
    return await post(client, "/v1/orders", order_body(shop, *names or ("c1",), **extra))


async def _coupon(client: httpx.AsyncClient, code: str, **fields: Any) -> None:
    await post(client, "/v1/coupons", {"code": code, **fields})


def _link(order: dict[str, Any]) -> tuple[str, str]:
    """(path, sig) of an order's checkout_url."""
    url = urlsplit(order["checkout_url"])
    return url.path, parse_qs(url.query)["sig"][0]


async def _uses(uow: UnitOfWork) -> dict[str, int]:
    async with uow:
        rows = await uow.conn.execute(select(coupons.c.code, coupons.c.times_redeemed))
        return {code: int(n) for code, n in rows}


async def test_an_order_carries_a_signed_link_and_only_that_link_opens_its_page(
    client: httpx.AsyncClient, anon_client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    order = await _order(client, shop, "c1", return_url="https://shop.example/back")
    other = await _order(client, shop, "c2", customer_id="u_2")
    path, sig = _link(order)
    assert order["checkout_url"].startswith("http://127.0.0.1:8000/pay/ord_")
    page = await anon_client.get(path, params={"sig": sig})
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    tampered = sig[:-1] + ("1" if sig.endswith("0") else "0")
    for bad in ({}, {"sig": tampered}, {"sig": _link(other)[1]}):
        refused = await anon_client.get(path, params=bad)
        assert refused.status_code == 404
        assert "u_1" not in refused.text
    status = await anon_client.get(f"{path}/status", params={"sig": sig})
    assert status.json()["status"] == "pending_payment"
    assert (await anon_client.get(f"{path}/status")).status_code == 404
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["checkout_url"] == order[
        "checkout_url"
    ]


async def test_the_page_speaks_the_buyers_language_and_remembers_a_switch(
    client: httpx.AsyncClient, anon_client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    path, sig = _link(await _order(client, shop, "c1"))
    zh = await anon_client.get(
        path, params={"sig": sig}, headers={"accept-language": "zh-CN,zh;q=0.9"}
    )
    assert '<html lang="zh-CN">' in zh.text
    assert "支付订单" in zh.text
    assert "¥99.00" in zh.text
    en = await anon_client.get(
        path, params={"sig": sig}, headers={"accept-language": "fr, en;q=0.5"}
    )
    assert '<html lang="en">' in en.text
    assert "Pay for your order" in en.text
    switched = await anon_client.get(path, params={"sig": sig, "lang": "zh-CN"})
    assert "支付订单" in switched.text
    assert "tuition_lang=zh_CN" in switched.headers["set-cookie"]
    again = await anon_client.get(path, params={"sig": sig}, headers={"accept-language": "en"})
    assert "支付订单" in again.text  # the cookie wins over the header


async def test_applying_a_coupon_reprices_the_order_and_counts_one_use(
    client: httpx.AsyncClient, anon_client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork
) -> None:
    await _coupon(client, "SAVE20", percent_off="0.2")
    order = await _order(client, shop, "c1", "c2", tax_region="CN-X")
    path, sig = _link(order)
    applied = await anon_client.post(f"{path}/coupon", data={"sig": sig, "code": " save20 "})
    assert applied.status_code == 303
    assert applied.headers["location"].endswith("notice=coupon_applied")
    after = (await client.get(f"/v1/orders/{order['id']}")).json()
    # (99.00 + 199.00) x 0.8 = 238.40, + 8 % tax = 257.47
    assert (after["coupon_code"], after["discount_total"], after["total"]) == (
        "SAVE20",
        5960,
        25747,
    )
    assert sum(line["total"] for line in after["lines"]) == after["total"]
    assert [s["name"] for s in after["pricing"]["steps"]] == ["coupon", "tax"]
    assert await _uses(uow) == {"SAVE20": 1}
    page = await anon_client.get(path, params={"sig": sig, "lang": "en"})
    assert "Coupon SAVE20" in page.text
    assert "CN¥257.47" in page.text
    async with uow:
        types = [r[0] for r in await uow.conn.execute(select(outbox_events.c.type))]
    assert types == ["order.updated"]


async def test_switching_and_removing_coupons_gives_each_use_back(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    await _coupon(client, "AAA", percent_off="0.1")
    await _coupon(client, "BBB", amount_off={"CNY": 500})
    order = await _order(client, shop, "c1", coupon_code="AAA")
    assert await _uses(uow) == {"AAA": 1, "BBB": 0}
    switched = await change_coupon(uow, order["id"], "bbb", clock=clock)
    assert (switched.coupon_code, switched.total) == ("BBB", 9400)
    assert await _uses(uow) == {"AAA": 0, "BBB": 1}
    removed = await change_coupon(uow, order["id"], None, clock=clock)
    assert (removed.coupon_code, removed.total, removed.discount_total) == (None, 9900, 0)
    assert await _uses(uow) == {"AAA": 0, "BBB": 0}
    # Cancelling later gives nothing back twice.
    await post(client, f"/v1/orders/{order['id']}/cancel", {})
    assert await _uses(uow) == {"AAA": 0, "BBB": 0}
    async with uow:
        row = (await uow.conn.execute(select(coupon_redemptions))).one()
    assert row.released_at is not None


async def test_a_refused_coupon_changes_nothing(
    client: httpx.AsyncClient, anon_client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork
) -> None:
    await _coupon(client, "KEEP", percent_off="0.1")
    await _coupon(client, "BIG", amount_off={"CNY": 100}, min_spend={"CNY": 50000})
    order = await _order(client, shop, "c1", coupon_code="KEEP")
    path, sig = _link(order)
    for code, error in [("NOPE", "coupon_unknown"), ("BIG", "coupon_below_minimum_spend")]:
        refused = await anon_client.post(f"{path}/coupon", data={"sig": sig, "code": code})
        assert refused.headers["location"].endswith(f"error={error}")
    page = await anon_client.get(refused.headers["location"], headers={"accept-language": "zh"})
    assert "订单金额未达到优惠券的最低消费。" in page.text
    after = (await client.get(f"/v1/orders/{order['id']}")).json()
    assert (after["coupon_code"], after["total"]) == ("KEEP", 8910)
    assert await _uses(uow) == {"KEEP": 1, "BIG": 0}


async def test_repricing_keeps_the_prices_the_order_was_placed_with(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    await _coupon(client, "STACK", amount_off={"CNY": 1000}, stacks_with_promotions=True)
    order = await _order(client, shop, "sale", tax_region="CN-X")
    # Since then the promotion was withdrawn, and the price and the tax rate changed.
    changed = await client.patch(
        f"/v1/products/{shop['sale']}", json={"prices": {"CNY": 50000}, "promotion": None}
    )
    assert changed.status_code == 200, changed.text
    tax = await client.put("/v1/tax_rates/CN-X", json={"rate": "0.2", "inclusive": False})
    assert tax.status_code == 200, tax.text
    repriced = await change_coupon(uow, order["id"], "STACK", clock=clock)
    # 200.00 - 15 % promotion = 170.00 - 10.00 coupon = 160.00, + 8 % tax = 172.80
    assert repriced.lines[0].unit_price == 20000
    assert repriced.total == 17280
    assert [s["name"] for s in repriced.pricing["steps"]] == ["promotion", "coupon", "tax"]


async def test_the_coupon_is_locked_once_a_payment_is_under_way(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    await _coupon(client, "LATE", percent_off="0.5")
    order = await _order(client, shop, "c1")
    path, sig = _link(order)
    started = await anon_client.post(f"{path}/attempts", data={"sig": sig, "option": "sandbox:qr"})
    assert started.status_code == 303
    page = await anon_client.get(started.headers["location"], headers={"accept-language": "en"})
    assert 'class="qr-code"' in page.text
    assert "The coupon cannot be changed while a payment is under way." in page.text
    with pytest.raises(Conflict) as refused:
        await change_coupon(uow, order["id"], "LATE", clock=clock)
    assert refused.value.code == "payment_in_progress"
    assert await _uses(uow) == {"LATE": 0}


async def test_a_page_payment_sends_the_buyer_to_the_gateway_and_back_here(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
) -> None:
    order = await _order(client, shop, "c1", return_url="https://shop.example/back")
    path, sig = _link(order)
    unknown = await anon_client.post(
        f"{path}/attempts", data={"sig": sig, "option": "sandbox:jsapi"}
    )
    assert unknown.headers["location"].endswith("error=option_unknown")
    started = await anon_client.post(
        f"{path}/attempts", data={"sig": sig, "option": "sandbox:page"}
    )
    assert started.status_code == 303
    assert started.headers["location"].startswith(f"{gateway.config.public_base_url}/pay/")
    payments = (await client.get(f"/v1/orders/{order['id']}/payments")).json()["data"]
    sim_payment = gateway.payment(payments[0]["id"])
    assert sim_payment.return_url == order["checkout_url"]  # not the platform's return_url

    await gateway.pay(payments[0]["id"])
    await gateway.drain()
    status = (await anon_client.get(f"{path}/status", params={"sig": sig})).json()
    assert status == {"status": "paid", "attempt": "succeeded", "expires_at": order["expires_at"]}
    page = await anon_client.get(path, params={"sig": sig, "lang": "en"})
    assert "Payment received" in page.text
    assert "https://shop.example/back" in page.text
    for private in ("u_1", payments[0]["id"], "sandbox_app", "sandbox_secret"):
        assert private not in page.text
    again = await anon_client.post(f"{path}/attempts", data={"sig": sig, "option": "sandbox:qr"})
    assert again.headers["location"].endswith("error=order_not_payable")


async def test_a_declined_payment_is_shown_and_another_can_start(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
) -> None:
    order = await _order(client, shop, "c1")
    path, sig = _link(order)
    await anon_client.post(f"{path}/attempts", data={"sig": sig, "option": "sandbox:qr"})
    payment = (await client.get(f"/v1/orders/{order['id']}/payments")).json()["data"][0]
    await gateway.decline(payment["id"])
    await gateway.drain()
    status = (await anon_client.get(f"{path}/status", params={"sig": sig})).json()
    assert (status["status"], status["attempt"]) == ("pending_payment", "failed")
    page = await anon_client.get(path, params={"sig": sig, "lang": "en"})
    assert "The payment did not go through." in page.text
    again = await anon_client.post(f"{path}/attempts", data={"sig": sig, "option": "sandbox:qr"})
    assert "error" not in again.headers["location"]


async def test_an_expired_order_shows_as_expired_before_the_worker_closes_it(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    await _coupon(client, "TOO-LATE", percent_off="0.1")
    order = await _order(client, shop, "c1")
    path, sig = _link(order)
    clock.advance(timedelta(minutes=16))
    status = (await anon_client.get(f"{path}/status", params={"sig": sig})).json()
    assert status["status"] == "expired"
    page = await anon_client.get(path, params={"sig": sig, "lang": "en"})
    assert "This order has expired" in page.text
    assert 'data-testid="pay-button"' not in page.text
    with pytest.raises(Conflict):
        await change_coupon(uow, order["id"], "TOO-LATE", clock=clock)


async def test_two_concurrent_coupon_changes_leave_one_coupon_counted(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    engine: Any,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    await _coupon(client, "LEFT", percent_off="0.1")
    await _coupon(client, "RIGHT", percent_off="0.3")
    for n in range(3):
        order = await _order(client, shop, "c1", customer_id=f"racer-{n}")
        results = await asyncio.gather(
            change_coupon(UnitOfWork(engine), order["id"], "LEFT", clock=clock),
            change_coupon(UnitOfWork(engine), order["id"], "RIGHT", clock=clock),
            return_exceptions=True,
        )
        assert all(not isinstance(r, Exception) or isinstance(r, Conflict) for r in results), (
            results
        )
        assert any(not isinstance(r, Exception) for r in results)
        final = (await client.get(f"/v1/orders/{order['id']}")).json()
        expected = {"LEFT": 8910, "RIGHT": 6930}[final["coupon_code"]]
        assert final["total"] == expected
    uses = await _uses(uow)
    async with uow:
        held = (
            await uow.conn.execute(
                select(coupon_redemptions.c.coupon_id).where(
                    coupon_redemptions.c.released_at.is_(None)
                )
            )
        ).all()
    assert uses["LEFT"] + uses["RIGHT"] == len(held) == 3


async def test_the_last_use_of_a_coupon_goes_to_one_of_two_racing_orders(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    engine: Any,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    await _coupon(client, "ONLY-ONE", percent_off="0.5", max_redemptions=1)
    first = await _order(client, shop, "c1", customer_id="a")
    second = await _order(client, shop, "c1", customer_id="b")
    results = await asyncio.gather(
        change_coupon(UnitOfWork(engine), first["id"], "ONLY-ONE", clock=clock),
        change_coupon(UnitOfWork(engine), second["id"], "ONLY-ONE", clock=clock),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 1
    assert isinstance(refused[0], InvalidRequest)
    assert refused[0].code == "coupon_exhausted"
    assert await _uses(uow) == {"ONLY-ONE": 1}


def test_the_pages_are_included_once_however_often_they_are_mounted() -> None:
    by_hand = FastAPI()
    for router in web.routers:  # as app.py may wire them
        by_hand.include_router(router)
    count = len(by_hand.router.routes)
    web.mount(by_hand)
    web.mount(by_hand)
    assert len(by_hand.router.routes) == count
    fresh = FastAPI()
    web.mount(fresh)
    web.mount(fresh)
    assert len(fresh.router.routes) == count
