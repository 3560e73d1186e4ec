"""The checkout page on every surface, with the simulator playing Alipay, WeChat Pay and
WeChat itself: one method per channel by user agent, and JSAPI inside WeChat with the
openid from the order or from WeChat web OAuth (snsapi_base)."""

from __future__ import annotations

import asyncio
import base64
import html
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from fastapi import FastAPI

from tests.integration.shop import order_body, post
from tests.unit.test_checkout_methods import ALIPAY_APP, ANDROID, DESKTOP, WECHAT
from tuition import web
from tuition.channels.setup import SIMULATED_APPID, build_registry
from tuition.clock import FrozenClock
from tuition.config import Settings, load_settings
from tuition.domain.errors import Conflict
from tuition.services.ledger import verify_ledger
from tuition.services.payments import CreatePayment, create_payment
from tuition.simulator.app import Simulator, create_simulator
from tuition.simulator.config import SimulatorConfig
from tuition.simulator.wechat_oauth import WechatOAuth
from tuition.store.uow import UnitOfWork

EN = {"accept-language": "en"}
RATES = {"sandbox": "0.01", "alipay": "0.006", "wechatpay": "0.0055"}


@pytest.fixture
def settings(db_url: str) -> Settings:
    return load_settings(database_url=db_url, channel_fee_rates=RATES)


async def _no_wait(_seconds: float) -> None:
    await asyncio.sleep(0)


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("surface-keys")


@pytest.fixture
async def sim(app: FastAPI, clock: FrozenClock, key_dir: Path) -> AsyncIterator[Simulator]:
    """Alipay and WeChat Pay (with web OAuth) on the simulator, set up as the demo does."""
    web.mount(app)
    simulator = create_simulator(
        SimulatorConfig(clock=clock, sleep=_no_wait, notify_transport=httpx.ASGITransport(app=app))
    )
    settings = load_settings(
        simulator=True,
        channels=["sandbox", "alipay", "wechatpay"],
        simulator_key_file=str(key_dir / "simulator.pem"),
    )
    built = build_registry(settings, clock=clock, simulator=simulator, mode="test")
    for channel in built:
        app.state.modes.live.registry.add(channel)
    yield simulator
    await simulator.aclose()
    for channel in built:
        await channel.aclose()


def _link(order: dict[str, Any]) -> tuple[str, str]:
    url = urlsplit(order["checkout_url"])
    return url.path, parse_qs(url.query)["sig"][0]


def _offered(page: str) -> list[str]:
    return re.findall(r'name="option" value="([^"]+)"', page)


def _checked(page: str) -> list[str]:
    return re.findall(r'name="option" value="([^"]+)" required checked', page)


async def test_each_surface_is_offered_one_method_per_channel_and_never_the_sandbox_first(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    sim: Simulator,
) -> None:
    path, sig = _link(await post(client, "/v1/orders", order_body(shop, "c1")))

    async def offered(agent: str, **query: str) -> tuple[list[str], list[str], str]:
        page = await anon_client.get(
            path, params={"sig": sig, **query}, headers={**EN, "user-agent": agent}
        )
        assert page.status_code == 200
        return _offered(page.text), _checked(page.text), page.text

    desktop, chosen, text = await offered(DESKTOP)
    assert desktop == ["alipay:page", "wechatpay:native", "sandbox:page"]
    assert chosen == ["alipay:page"]
    assert "Pay on another device (QR code)" in text
    phone, chosen, _ = await offered(ANDROID)
    assert phone == ["alipay:wap", "wechatpay:h5", "sandbox:page"]
    assert chosen == ["alipay:wap"]
    inside_wechat, chosen, _ = await offered(WECHAT)
    assert inside_wechat == ["wechatpay:jsapi"]
    assert chosen == ["wechatpay:jsapi"]
    assert (await offered(ALIPAY_APP))[0] == ["alipay:wap"]
    other_device, _, text = await offered(WECHAT, qr="1")
    assert other_device == ["alipay:qr", "wechatpay:native", "sandbox:qr"]
    assert "Pay on this device instead" in text


async def _pay_jsapi_in_wechat(sim: Simulator, page: str, back: str) -> httpx.Response:
    """What WeChat does with the page's JSAPI parameters: its sheet checks paySign, the
    buyer confirms."""
    found = re.search(r'id="jsapi" data-params="([^"]+)"', page)
    assert found is not None, page
    params = json.loads(html.unescape(found.group(1)))
    async with httpx.AsyncClient(
        transport=sim.transport, base_url=sim.config.public_base_url
    ) as wechat:
        query = {k: params[k] for k in ("appId", "timeStamp", "nonceStr", "package")}
        query.update(signType=params["signType"], paySign=params["paySign"])
        query["return"] = back
        sheet = await wechat.get(f"/wechatpay/jsapi?{urlencode(query)}", follow_redirects=True)
        assert sheet.status_code == 200, sheet.text
        action = re.search(r'<form method="post" action="([^"]+/pay)"', sheet.text)
        assert action is not None, sheet.text
        return await wechat.post(action.group(1))


async def test_inside_wechat_jsapi_gets_the_openid_through_web_oauth_and_pays(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    sim: Simulator,
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    path, sig = _link(order)
    in_wechat = {**EN, "user-agent": WECHAT}
    started = await anon_client.post(
        f"{path}/attempts", data={"sig": sig, "option": "wechatpay:jsapi"}, headers=in_wechat
    )
    assert started.status_code == 303
    authorize = urlsplit(started.headers["location"])
    assert authorize.fragment == "wechat_redirect"
    asked = parse_qs(authorize.query)
    assert asked["appid"] == [SIMULATED_APPID]
    assert (asked["scope"], asked["response_type"]) == (["snsapi_base"], ["code"])
    assert "secret" not in authorize.query
    assert (await client.get(f"/v1/orders/{order['id']}/payments")).json()["data"] == []

    async with httpx.AsyncClient(transport=sim.transport) as wechat:  # WeChat's redirect
        back = await wechat.get(started.headers["location"].partition("#")[0])
    assert back.status_code == 302
    callback = urlsplit(back.headers["location"])
    assert callback.path == f"{path}/wechat-oauth"
    code = parse_qs(callback.query)["code"][0]

    tampered = await anon_client.get(
        callback.path, params={"sig": sig, "code": code, "state": "0" * 32}
    )
    assert tampered.status_code == 404  # a code is traded only for the order it was asked for
    done = await anon_client.get(f"{callback.path}?{callback.query}", headers=in_wechat)
    assert done.status_code == 303
    assert "error" not in done.headers["location"]
    page = await anon_client.get(done.headers["location"], headers=in_wechat)
    assert 'data-testid="jsapi-pay"' in page.text
    assert "bridge.js" not in page.text  # the simulator's bridge only in simulator mode

    paid = await _pay_jsapi_in_wechat(sim, page.text, f"http://127.0.0.1:8000{path}?sig={sig}")
    assert paid.status_code == 303
    assert paid.headers["location"] == f"http://127.0.0.1:8000{path}?sig={sig}"
    await sim.drain()
    payments = (await client.get(f"/v1/orders/{order['id']}/payments")).json()["data"]
    assert [(p["method"], p["status"]) for p in payments] == [("jsapi", "succeeded")]
    assert sim.payment(payments[0]["id"]).details["openid"] == WechatOAuth.openid_for(
        SIMULATED_APPID
    )
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"

    replayed = await anon_client.get(f"{callback.path}?{callback.query}", headers=in_wechat)
    assert replayed.headers["location"].endswith("error=wechat_oauth_failed")  # code used


async def test_an_openid_on_the_order_needs_no_oauth_and_pay_sign_verifies(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    sim: Simulator,
) -> None:
    bad = await client.post(
        "/v1/orders", json=order_body(shop, "c1", payer={"wechat_openid": "o <script>"})
    )
    assert bad.status_code == 422
    order = await post(
        client, "/v1/orders", order_body(shop, "c1", payer={"wechat_openid": "o_known_buyer"})
    )
    assert order["payer"] == {"wechat_openid": "o_known_buyer"}
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["payer"] == order["payer"]
    path, sig = _link(order)
    in_wechat = {**EN, "user-agent": WECHAT}
    started = await anon_client.post(
        f"{path}/attempts", data={"sig": sig, "option": "wechatpay:jsapi"}, headers=in_wechat
    )
    assert started.status_code == 303
    assert urlsplit(started.headers["location"]).path == path  # straight back, no OAuth
    page = await anon_client.get(started.headers["location"], headers=in_wechat)
    found = re.search(r'id="jsapi" data-params="([^"]+)"', page.text)
    assert found is not None
    params = json.loads(html.unescape(found.group(1)))
    message = (
        f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
    )
    mchid = next(iter(sim.wechatpay.merchants))
    sim.wechatpay.merchants[mchid].public_key.verify(
        base64.b64decode(params["paySign"]), message.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    payments = (await client.get(f"/v1/orders/{order['id']}/payments")).json()["data"]
    assert sim.payment(payments[0]["id"]).details["openid"] == "o_known_buyer"

    forged = dict(params, paySign=base64.b64encode(b"x" * 256).decode())
    async with httpx.AsyncClient(
        transport=sim.transport, base_url=sim.config.public_base_url
    ) as wechat:
        refused = await wechat.get(f"/wechatpay/jsapi?{urlencode(forged)}")
    assert refused.status_code == 400  # WeChat's sheet checks the signature too


async def test_the_platforms_own_apps_pay_through_the_api_and_unlock_for_the_customer(
    client: httpx.AsyncClient, shop: dict[str, str], sim: Simulator
) -> None:
    """Alipay App pay, WeChat APP and a mini-program: three surfaces, one customer, one
    set of entitlements (the cross-platform promise)."""
    orders = {}
    for name, channel, method, extra in [
        ("c1", "alipay", "app", {}),
        ("c2", "wechatpay", "app", {}),
        ("c3", "wechatpay", "miniprogram", {"payer_id": "o_mini_buyer"}),
    ]:
        order = await post(client, "/v1/orders", order_body(shop, name, customer_id="u_apps"))
        payment = await post(
            client,
            f"/v1/orders/{order['id']}/payments",
            {"channel": channel, "method": method, **extra},
        )
        assert payment["next_action"]["type"] == "app_params"
        orders[name] = (order, payment)

    # The Alipay app SDK submits the order string to Alipay, which opens the trade.
    order_string = orders["c1"][1]["next_action"]["params"]["order_string"]
    async with httpx.AsyncClient(
        transport=sim.transport, base_url=sim.config.public_base_url
    ) as alipay_app:
        opened = await alipay_app.post(
            "/alipay/gateway.do",
            content=order_string,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert opened.status_code == 303, opened.text
    assert set(orders["c2"][1]["next_action"]["params"]) >= {"prepayid", "partnerid", "sign"}
    assert set(orders["c3"][1]["next_action"]["params"]) == {
        "timeStamp",
        "nonceStr",
        "package",
        "signType",
        "paySign",
    }
    for _order, payment in orders.values():
        await sim.pay(payment["id"])
    await sim.drain()
    for name, (order, _payment) in orders.items():
        assert (await client.get(f"/v1/orders/{order['id']}")).json()["status"] == "paid"
        access = await client.get(f"/v1/customers/u_apps/entitlements/{shop[name]}")
        assert access.json()["has_access"] is True


async def test_in_surcharge_mode_the_total_follows_the_channel_chosen(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    sim: Simulator,
    uow: UnitOfWork,
    app: FastAPI,
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1", surcharge_channel="alipay"))
    assert order["total"] == 9959  # 99.00 + 0.6 %
    path, sig = _link(order)
    desktop = {**EN, "user-agent": DESKTOP}
    page = (await anon_client.get(path, params={"sig": sig}, headers=desktop)).text
    totals = dict(
        re.findall(
            r'value="([^"]+)" required[^>]*>.*?data-testid="option-total">([^<]+)<', page, re.S
        )
    )
    assert totals == {
        "alipay:page": "CN¥99.59",
        "wechatpay:native": "CN¥99.54",  # 99.00 + 0.55 %
        "sandbox:page": "CN¥99.99",
    }
    assert 'data-pay-label="Pay CN¥99.54"' in page
    assert "Pay CN¥99.59</button>" in page  # the chosen one's total
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["total"] == 9959
    # A payment priced for one channel's total never goes out at another's.
    with pytest.raises(Conflict) as changed:
        await create_payment(
            CreatePayment(
                order_id=order["id"], channel="wechatpay", method="native", expected_total=9954
            ),
            uow,
            deps=app.state.modes.live.payment_deps(),
        )
    assert changed.value.code == "order_changed"
    assert (await client.get(f"/v1/orders/{order['id']}/payments")).json()["data"] == []

    started = await anon_client.post(
        f"{path}/attempts", data={"sig": sig, "option": "wechatpay:native"}, headers=desktop
    )
    assert "error" not in started.headers["location"]
    now = (await client.get(f"/v1/orders/{order['id']}")).json()
    assert (now["total"], now["surcharge"], now["pricing"]["surcharge_rate"]) == (
        9954,
        54,
        "0.0055",
    )
    assert sum(line["total"] for line in now["lines"]) == 9954
    payments = (await client.get(f"/v1/orders/{order['id']}/payments")).json()["data"]
    assert [(p["channel"], p["amount"]) for p in payments] == [("wechatpay", 9954)]

    # With that attempt open the gateway holds 99.54: another channel cannot re-price.
    refused = await anon_client.post(
        f"{path}/attempts", data={"sig": sig, "option": "alipay:page"}, headers=desktop
    )
    assert refused.headers["location"].endswith("error=payment_in_progress")
    assert (await client.get(f"/v1/orders/{order['id']}")).json()["total"] == 9954
    await sim.pay(payments[0]["id"])
    await sim.drain()
    paid = (await client.get(f"/v1/orders/{order['id']}")).json()
    assert (paid["status"], paid["total"]) == ("paid", 9954)
    report = await verify_ledger(uow)
    assert report.ok, report.problems
