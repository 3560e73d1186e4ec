"""Alipay and WeChat Pay end to end through our API, with the simulator playing both gateways.

The channels are configured exactly as ``make demo`` configures them (``build_registry``
in simulator mode, keys kept in files), and reach the simulator in-process; the
simulator notifies the app in-process.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from fastapi import FastAPI
from sqlalchemy import select

from tests.integration.shop import order_body, post
from tuition.channels.alipay.client import AlipayChannel
from tuition.channels.setup import SIMULATED_APPID, build_registry
from tuition.channels.wechatpay.client import WechatPayChannel
from tuition.clock import FrozenClock
from tuition.config import load_settings
from tuition.services.ledger import verify_ledger
from tuition.services.payments import PaymentDeps, reconcile_payment
from tuition.simulator.app import Simulator, create_simulator
from tuition.simulator.config import SimulatorConfig
from tuition.store.tables import journal_entries, notifications, outbox_events
from tuition.store.uow import UnitOfWork


async def _no_wait(_seconds: float) -> None:
    await asyncio.sleep(0)


@dataclass
class Gateways:
    sim: Simulator
    alipay: AlipayChannel
    wechatpay: WechatPayChannel


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One set of key files for the session: making RSA keys is slow.
    return tmp_path_factory.mktemp("channel-keys")


@pytest.fixture
async def gateways(app: FastAPI, clock: FrozenClock, key_dir: Path) -> AsyncIterator[Gateways]:
    """The simulator in-process, with the app's alipay and wechatpay channels set up on it."""
    sim = create_simulator(
        SimulatorConfig(clock=clock, sleep=_no_wait, notify_transport=httpx.ASGITransport(app=app))
    )
    settings = load_settings(
        simulator=True,
        channels=["alipay", "wechatpay"],
        simulator_key_file=str(key_dir / "simulator.pem"),
    )
    built = build_registry(settings, clock=clock, simulator=sim)
    alipay, wechatpay = list(built)
    assert isinstance(alipay, AlipayChannel)
    assert isinstance(wechatpay, WechatPayChannel)
    app.state.modes.live.registry.add(alipay)
    app.state.modes.live.registry.add(wechatpay)
    yield Gateways(sim, alipay, wechatpay)
    await sim.aclose()
    await alipay.aclose()
    await wechatpay.aclose()


def _buyer(sim: Simulator) -> httpx.AsyncClient:
    """The buyer's browser; it reaches the simulator at its public URL."""
    return httpx.AsyncClient(transport=sim.transport, base_url=sim.config.public_base_url)


async def _pay_in_browser(sim: Simulator, url: str) -> httpx.Response:
    """Open ``url`` (a gateway link or a scanned QR code) and press Pay."""
    async with _buyer(sim) as browser:
        page = await browser.get(url, follow_redirects=True)
        assert page.status_code == 200, page.text
        action = re.search(r'<form method="post" action="([^"]+/pay)"', page.text)
        assert action is not None, page.text
        return await browser.post(action.group(1))


async def _attempt(
    client: httpx.AsyncClient, order: dict[str, Any], channel: str, method: str, **extra: Any
) -> dict[str, Any]:
    body = {"channel": channel, "method": method, **extra}
    return await post(client, f"/v1/orders/{order['id']}/payments", body)


async def _order(client: httpx.AsyncClient, shop: dict[str, str], **extra: Any) -> dict[str, Any]:
    return await post(client, "/v1/orders", order_body(shop, "bundle", **extra))


async def _status(client: httpx.AsyncClient, kind: str, id_: str) -> Any:
    return (await client.get(f"/v1/{kind}/{id_}")).json()["status"]


async def _entries(uow: UnitOfWork) -> int:
    async with uow:
        return len((await uow.conn.execute(select(journal_entries.c.id))).all())


async def _verdicts(uow: UnitOfWork) -> list[tuple[str, str]]:
    async with uow:
        rows = await uow.conn.execute(
            select(notifications.c.channel, notifications.c.verdict).order_by(notifications.c.id)
        )
        return [(r[0], r[1]) for r in rows]


async def _paid_and_clean(
    client: httpx.AsyncClient, uow: UnitOfWork, order: dict[str, Any], payment: dict[str, Any]
) -> None:
    assert await _status(client, "payments", payment["id"]) == "succeeded"
    assert await _status(client, "orders", order["id"]) == "paid"
    assert await _entries(uow) == 1
    report = await verify_ledger(uow)
    assert report.ok, report.problems
    async with uow:
        balances = await uow.ledger.balances()
    assert balances[f"channel_clearing:CNY:{payment['channel']}"] == 39900 - 239


async def test_an_alipay_page_payment_is_paid_in_the_simulator_and_settles_once(
    client: httpx.AsyncClient, shop: dict[str, str], gateways: Gateways, uow: UnitOfWork
) -> None:
    order = await _order(client, shop, return_url="https://shop.test/done")
    payment = await _attempt(client, order, "alipay", "page")
    action = payment["next_action"]
    assert action["type"] == "redirect"
    gateway_url = f"{gateways.sim.config.public_base_url}/alipay/gateway.do?"
    assert action["url"].startswith(gateway_url)
    assert "method=alipay.trade.page.pay" in action["url"]

    paid = await _pay_in_browser(gateways.sim, action["url"])
    assert paid.status_code == 303
    assert paid.headers["location"] == "https://shop.test/done"
    await gateways.sim.drain()

    await _paid_and_clean(client, uow, order, payment)
    delivered = [d for d in gateways.sim.deliveries if d.accepted]
    assert len(delivered) == 1
    assert b"trade_status=TRADE_SUCCESS" in delivered[0].body
    assert await _verdicts(uow) == [("alipay", "applied")]


async def test_an_alipay_qr_payment_is_paid_by_scanning_the_code(
    client: httpx.AsyncClient, shop: dict[str, str], gateways: Gateways, uow: UnitOfWork
) -> None:
    order = await _order(client, shop)
    payment = await _attempt(client, order, "alipay", "qr")
    assert payment["next_action"]["type"] == "qr_code"
    qr = payment["next_action"]["qr_payload"]
    assert qr.startswith(f"{gateways.sim.config.public_base_url}/pay/")

    result = await _pay_in_browser(gateways.sim, qr)
    assert result.status_code == 200
    assert "Payment successful" in result.text
    await gateways.sim.drain()
    await _paid_and_clean(client, uow, order, payment)


async def test_a_wechat_native_payment_is_paid_by_scanning_the_code(
    client: httpx.AsyncClient, shop: dict[str, str], gateways: Gateways, uow: UnitOfWork
) -> None:
    order = await _order(client, shop)
    payment = await _attempt(client, order, "wechatpay", "native")
    assert payment["next_action"]["type"] == "qr_code"
    async with _buyer(gateways.sim) as browser:
        page = await browser.get(payment["next_action"]["qr_payload"])
    assert "WeChat Pay (simulated)" in page.text
    assert "399.00 CNY" in page.text

    await _pay_in_browser(gateways.sim, payment["next_action"]["qr_payload"])
    await gateways.sim.drain()
    await _paid_and_clean(client, uow, order, payment)
    assert await _verdicts(uow) == [("wechatpay", "applied")]
    # What went over the wire was encrypted: no amount or trade number in the clear.
    [delivery] = gateways.sim.deliveries
    assert delivery.status_code == 204
    assert payment["id"].encode() not in delivery.body


async def test_a_wechat_jsapi_payment_hands_over_params_whose_pay_sign_verifies(
    client: httpx.AsyncClient, shop: dict[str, str], gateways: Gateways, uow: UnitOfWork
) -> None:
    order = await _order(client, shop)
    payment = await _attempt(client, order, "wechatpay", "jsapi", payer_id="o_buyer_openid")
    action = payment["next_action"]
    assert action["type"] == "app_params"
    params = action["params"]
    assert params["appId"] == SIMULATED_APPID
    assert params["package"].startswith("prepay_id=wx")
    assert params["signType"] == "RSA"
    message = (
        f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
    )
    # WeChat checks paySign with the merchant's public key, which the simulator holds.
    merchant_key = gateways.sim.wechatpay.merchants[gateways.wechatpay.app_id].public_key
    merchant_key.verify(
        base64.b64decode(params["paySign"]),
        message.encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )

    await gateways.sim.pay(payment["id"])
    await gateways.sim.drain()
    await _paid_and_clean(client, uow, order, payment)
    assert gateways.sim.payment(payment["id"]).details["openid"] == "o_buyer_openid"


@pytest.mark.parametrize(("channel", "method"), [("alipay", "qr"), ("wechatpay", "native")])
async def test_a_second_payment_of_a_paid_order_is_refunded_through_its_channel(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateways: Gateways,
    uow: UnitOfWork,
    channel: str,
    method: str,
) -> None:
    order = await _order(client, shop)
    first = await _attempt(client, order, channel, method)
    second = await _attempt(client, order, channel, method)
    await gateways.sim.pay(first["id"])
    await gateways.sim.drain()
    await gateways.sim.pay(second["id"])
    await gateways.sim.drain()

    assert await _status(client, "orders", order["id"]) == "paid"
    duplicate = (await client.get(f"/v1/payments/{second['id']}")).json()
    assert duplicate["duplicate_of"] == order["id"]
    assert duplicate["amount_refunded"] == duplicate["amount"] == 39900
    [refund] = gateways.sim.state.refunds.values()
    assert (refund.out_trade_no, refund.amount, refund.status) == (
        second["id"],
        39900,
        "REFUND_SUCCESS",
    )
    async with uow:
        types = [r[0] for r in await uow.conn.execute(select(outbox_events.c.type))]
    assert types.count("refund.succeeded") == 1
    assert (await verify_ledger(uow)).ok
    # Both gateways also notified the refund; it settled once whichever came first.
    events = [d.event for d in gateways.sim.deliveries if d.accepted]
    assert events.count("refund.succeeded") == 1


@pytest.mark.parametrize(("channel", "method"), [("alipay", "qr"), ("wechatpay", "native")])
async def test_a_dropped_notification_is_recovered_by_querying_the_gateway(
    client: httpx.AsyncClient,
    app: FastAPI,
    shop: dict[str, str],
    gateways: Gateways,
    uow: UnitOfWork,
    clock: FrozenClock,
    channel: str,
    method: str,
) -> None:
    gateways.sim.drop_next_notifications(1)
    order = await _order(client, shop)
    payment = await _attempt(client, order, channel, method)
    await gateways.sim.pay(payment["id"])
    await gateways.sim.drain()
    assert await _status(client, "orders", order["id"]) == "pending_payment"

    deps = PaymentDeps(app.state.modes.live.registry, clock, "http://tuition.test")
    recovered = await reconcile_payment(uow, payment["id"], deps=deps)
    assert recovered.status == "succeeded"
    assert recovered.channel_trade_no == gateways.sim.payment(payment["id"]).trade_no
    await _paid_and_clean(client, uow, order, payment)


@pytest.mark.parametrize(("channel", "method"), [("alipay", "qr"), ("wechatpay", "native")])
async def test_a_tampered_notification_is_rejected_and_changes_nothing(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateways: Gateways,
    uow: UnitOfWork,
    channel: str,
    method: str,
) -> None:
    gateways.sim.tamper_next_notifications(1)
    order = await _order(client, shop)
    payment = await _attempt(client, order, channel, method)
    await gateways.sim.pay(payment["id"])
    await gateways.sim.drain()

    assert gateways.sim.deliveries
    assert all(d.tampered and not d.accepted for d in gateways.sim.deliveries)
    assert {d.status_code for d in gateways.sim.deliveries} == {400}
    assert {v for _, v in await _verdicts(uow)} == {"rejected"}
    async with uow:
        reasons = {r[0] for r in await uow.conn.execute(select(notifications.c.reason))}
    assert all("signature" in r for r in reasons), reasons
    assert await _status(client, "orders", order["id"]) == "pending_payment"
    assert await _entries(uow) == 0


@pytest.mark.parametrize(("channel", "method"), [("alipay", "qr"), ("wechatpay", "native")])
async def test_a_gateway_timeout_leaves_the_payment_pending_for_recovery(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateways: Gateways,
    channel: str,
    method: str,
) -> None:
    order = await _order(client, shop)
    gateways.sim.fail_next("create", kind="timeout", applied=True)
    timed_out = await client.post(
        f"/v1/orders/{order['id']}/payments", json={"channel": channel, "method": method}
    )
    assert timed_out.status_code == 502
    assert timed_out.json()["error"]["code"] == "channel_timeout"
    [pending] = (await client.get(f"/v1/orders/{order['id']}/payments")).json()["data"]
    assert pending["status"] == "pending"
    # The gateway did open the trade before the answer was lost.
    assert gateways.sim.payment(pending["id"]).status == "WAIT_PAY"
