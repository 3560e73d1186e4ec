"""UnionPay (全渠道) end to end: the API, the channel and the simulator playing UnionPay
with its own test CA, on both engines.

The app's channels are built as in simulator mode (``build_registry``); the simulator's
notifications are delivered to the app in-process, so every step is the real path: the
signed front form the buyer's browser posts, the backUrl notification, the status query
when a notification is lost, a refund, an undo (消费撤销) and the bill file.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.shop import order_body, post
from tuition import web
from tuition.app import create_app
from tuition.channels.base import ChannelTimeout
from tuition.channels.setup import build_registry
from tuition.channels.unionpay.client import UnionPayChannel, UnionPayRefused
from tuition.channels.unionpay.gateway_side import sign_message
from tuition.clock import FrozenClock
from tuition.config import load_settings
from tuition.domain import ids
from tuition.domain.reconciliation import BEIJING
from tuition.services.api_keys import create_key
from tuition.services.ledger import verify_ledger
from tuition.services.payments import PaymentDeps, reconcile_payment, submit_refund
from tuition.services.reconciliation import ReconcileDay, ReconcileDeps, reconcile_day
from tuition.simulator.app import Simulator, create_simulator
from tuition.simulator.config import SimulatorConfig
from tuition.simulator.unionpay_ca import TestCA, expired_window
from tuition.store import tables
from tuition.store.uow import UnitOfWork


class _ToApp(httpx.AsyncBaseTransport):
    """Delivers the simulator's notifications to the app, once the app exists."""

    def __init__(self) -> None:
        self.app: FastAPI | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert self.app is not None
        return await httpx.ASGITransport(app=self.app).handle_async_request(request)


async def _no_wait(_seconds: float) -> None:
    await asyncio.sleep(0)


@pytest.fixture
async def sim(clock: FrozenClock) -> AsyncIterator[Simulator]:
    simulator = create_simulator(
        SimulatorConfig(clock=clock, sleep=_no_wait, notify_transport=_ToApp())
    )
    yield simulator
    await simulator.aclose()


@pytest.fixture
def app(
    db_url: str, engine: AsyncEngine, clock: FrozenClock, tmp_path: Path, sim: Simulator
) -> FastAPI:
    settings = load_settings(
        database_url=db_url,
        simulator=True,
        test_channels=["sandbox", "unionpay"],
        public_url="http://tuition.test",
        simulator_key_file=str(tmp_path / "sim.pem"),
    )
    registry = build_registry(settings, clock=clock, simulator=sim, mode="test")
    application = create_app(
        settings,
        engine=engine,
        test_engine=engine,
        clock=clock,
        registry=registry,
        run_worker=False,
    )
    transport = sim.config.notify_transport
    assert isinstance(transport, _ToApp)
    transport.app = application
    return application


@pytest.fixture
async def client(app: FastAPI, engine: AsyncEngine, clock: FrozenClock) -> AsyncIterator[Any]:
    key = await create_key(UnitOfWork(engine), name="t", mode="test", clock=clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://tuition.test",
        headers={"Authorization": f"Bearer {key.secret}"},
    ) as c:
        yield c


@pytest.fixture
def ids_on_the_clock(clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """New ids carry the frozen clock's time (their txnTime), as in production they carry
    the time they were made: an undo is decided by the payment's own day."""
    ids._generator.reset()
    monkeypatch.setattr(ids, "_now_ms", lambda: int(clock.now().timestamp() * 1000))
    yield
    ids._generator.reset()


def _channel(app: FastAPI) -> UnionPayChannel:
    channel = app.state.modes.live.registry.get("unionpay")
    assert isinstance(channel, UnionPayChannel)
    return channel


async def _buyer_opens(sim: Simulator, payment: dict[str, Any]) -> str:
    """The buyer's browser posts the signed form; returns UnionPay's orderId."""
    action = payment["next_action"]
    assert action["type"] == "form_post"
    assert action["url"].endswith("/unionpay/gateway/api/frontTransReq.do")
    params = action["params"]
    assert (params["version"], params["signMethod"], params["txnAmt"]) == (
        "5.1.0",
        "01",
        str(payment["amount"]),
    )
    async with httpx.AsyncClient(transport=sim.transport) as browser:
        landed = await browser.post(action["url"], data=params)
    assert landed.status_code == 303, landed.text
    assert "/pay/" in landed.headers["location"]
    return str(params["orderId"])


async def _pay(
    client: httpx.AsyncClient, sim: Simulator, shop: dict[str, str], buyer: str = "u_1"
) -> tuple[dict[str, Any], dict[str, Any]]:
    order = await post(client, "/v1/orders", order_body(shop, "c1", customer_id=buyer))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "unionpay", "method": "page"}
    )
    order_id = await _buyer_opens(sim, payment)
    await sim.pay(order_id)
    await sim.drain()
    return order, payment


async def _order_status(client: httpx.AsyncClient, order_id: str) -> str:
    return str((await client.get(f"/v1/orders/{order_id}")).json()["status"])


async def test_a_payment_is_paid_by_unionpays_notification_exactly_once(
    client: httpx.AsyncClient, sim: Simulator, shop: dict[str, str], uow: UnitOfWork
) -> None:
    sim.duplicate_notifications(2)
    order, payment = await _pay(client, sim, shop)

    assert await _order_status(client, order["id"]) == "paid"
    paid = (await client.get(f"/v1/payments/{payment['id']}")).json()
    assert paid["status"] == "succeeded"
    async with uow:
        record = await uow.payments.get(payment["id"])
    assert record is not None
    assert record.channel_trade_no == sim.payment(payment["id"].replace("_", "")).trade_no
    accepted = [d for d in sim.deliveries if d.accepted]
    assert len(accepted) == 3  # the original and two copies, each answered 200
    report = await verify_ledger(uow)
    assert report.ok, report.problems


async def test_a_tampered_notification_is_refused_and_the_query_recovers(
    app: FastAPI, client: httpx.AsyncClient, sim: Simulator, shop: dict[str, str]
) -> None:
    sim.tamper_next_notifications(1)
    order, payment = await _pay(client, sim, shop)

    refused = sim.deliveries[-1]
    assert refused.tampered
    assert not refused.accepted
    assert await _order_status(client, order["id"]) == "pending_payment"
    container = app.state.modes.live
    deps = PaymentDeps(container.registry, container.clock, container.settings.base_url)
    recovered = await reconcile_payment(container.uow(), payment["id"], deps=deps)
    assert recovered.status.value == "succeeded"
    assert await _order_status(client, order["id"]) == "paid"


async def test_a_lost_notification_is_recovered_by_the_status_query(
    app: FastAPI, client: httpx.AsyncClient, sim: Simulator, shop: dict[str, str]
) -> None:
    sim.drop_next_notifications(1)
    order, payment = await _pay(client, sim, shop)
    assert await _order_status(client, order["id"]) == "pending_payment"

    container = app.state.modes.live
    deps = PaymentDeps(container.registry, container.clock, container.settings.base_url)
    await reconcile_payment(container.uow(), payment["id"], deps=deps)
    assert await _order_status(client, order["id"]) == "paid"


async def test_a_payment_the_buyer_never_opened_is_unknown_to_unionpay(
    app: FastAPI, client: httpx.AsyncClient, shop: dict[str, str], clock: FrozenClock
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "unionpay", "method": "wap"}
    )
    assert payment["next_action"]["params"]["channelType"] == "08"
    container = app.state.modes.live
    deps = PaymentDeps(container.registry, container.clock, container.settings.base_url)
    clock.advance(timedelta(days=2))  # the order expired: its unseen attempt is closed
    closed = await reconcile_payment(container.uow(), payment["id"], deps=deps)
    assert closed.status.value == "closed"
    assert closed.failure_code == "34"


async def test_a_partial_refund_settles_by_notification_and_the_books_balance(
    client: httpx.AsyncClient, sim: Simulator, shop: dict[str, str], uow: UnitOfWork
) -> None:
    order, payment = await _pay(client, sim, shop)
    sim.duplicate_notifications(1)

    first = await post(client, "/v1/refunds", {"order_id": order["id"], "amount": 4000})
    await sim.drain()
    second = await post(client, "/v1/refunds", {"order_id": order["id"]})
    await sim.drain()

    for made in (first, second):
        assert (await client.get(f"/v1/refunds/{made['id']}")).json()["status"] == "succeeded"
    assert await _order_status(client, order["id"]) == "refunded"
    refunds = [
        r for r in sim.state.refunds.values() if r.out_trade_no == payment["id"].replace("_", "")
    ]
    assert sorted(r.amount for r in refunds) == [4000, payment["amount"] - 4000]
    assert set(sim.unionpay.txn_types.values()) == {"04"}  # another day: refunds, no undo
    report = await verify_ledger(uow)
    assert report.ok, report.problems


@pytest.mark.usefixtures("ids_on_the_clock")
async def test_a_whole_refund_on_the_payments_day_is_an_undo(
    app: FastAPI, client: httpx.AsyncClient, sim: Simulator, shop: dict[str, str], uow: UnitOfWork
) -> None:
    order, payment = await _pay(client, sim, shop)
    sim.drop_next_notifications(1)  # the undo's outcome is learnt by query

    made = await post(client, "/v1/refunds", {"order_id": order["id"]})
    await sim.drain()
    assert list(sim.unionpay.txn_types.values()) == ["31"]
    channel = _channel(app)
    state = await channel.query_refund(made["id"], payment["id"])
    assert state.status.value == "succeeded"
    assert state.raw_status == "origRespCode=00"

    container = app.state.modes.live
    deps = PaymentDeps(container.registry, container.clock, container.settings.base_url)
    assert (await submit_refund(container.uow(), made["id"], deps=deps)).value == "succeeded"
    assert await _order_status(client, order["id"]) == "refunded"
    report = await verify_ledger(uow)
    assert report.ok, report.problems


# -- refusals: only UnionPay's own certificate, valid and named so, is trusted ------------


def _notification_fields(sim: Simulator, order_id: str) -> dict[str, str]:
    payment = sim.payment(order_id)
    assert payment.paid_at is not None
    return {
        "version": "5.1.0",
        "encoding": "UTF-8",
        "txnType": "01",
        "txnSubType": "01",
        "bizType": "000201",
        "accessType": "0",
        "merId": payment.app_id,
        "orderId": order_id,
        "txnTime": payment.details["txnTime"],
        "txnAmt": str(payment.amount),
        "currencyCode": "156",
        "queryId": payment.trade_no,
        "traceTime": f"{payment.paid_at.astimezone(BEIJING):%m%d%H%M%S}",
        "respCode": "00",
        "respMsg": "成功[0000000]",
    }


async def _opened(
    client: httpx.AsyncClient, sim: Simulator, shop: dict[str, str]
) -> tuple[dict[str, Any], str]:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "unionpay", "method": "page"}
    )
    return order, await _buyer_opens(sim, payment)


def _forged(
    sim: Simulator, clock: FrozenClock, how: str
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    ca = sim.unionpay.ca
    match how:
        case "another_ca":
            other = TestCA.create()
            return other.signing_key, other.signing
        case "expired":
            before, after = expired_window(clock.now())
            certificate, key = ca.issue_signing(not_before=before, not_after=after)
            return key, certificate
        case "wrong_cn":
            certificate, key = ca.issue_signing(common_name="041@Z0000000000001@某某公司@00000001")
            return key, certificate
        case "not_yet_valid":
            start = clock.now() + timedelta(days=1)
            certificate, key = ca.issue_signing(not_before=start, not_after=start + timedelta(1))
            return key, certificate
    raise AssertionError(how)


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("another_ca", "not issued by the configured middle certificate"),
        ("expired", "is not valid now"),
        ("not_yet_valid", "is not valid now"),
        ("wrong_cn", "CN does not name UnionPay"),
    ],
)
async def test_a_notification_signed_by_an_untrusted_certificate_is_refused(
    client: httpx.AsyncClient,
    sim: Simulator,
    shop: dict[str, str],
    clock: FrozenClock,
    engine: AsyncEngine,
    how: str,
    reason: str,
) -> None:
    order, order_id = await _opened(client, sim, shop)
    sim.drop_next_notifications(1)  # only the notifications below reach the app
    await sim.pay(order_id)
    await sim.drain()
    key, certificate = _forged(sim, clock, how)
    body = sign_message(_notification_fields(sim, order_id), key, certificate)

    refused = await client.post(
        "/v1/notify/unionpay",
        content=urlencode(body).encode("ascii"),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert refused.status_code == 400
    assert refused.text == "fail"
    assert await _order_status(client, order["id"]) == "pending_payment"
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(tables.notifications.c.verdict, tables.notifications.c.reason).where(
                    tables.notifications.c.channel == "unionpay"
                )
            )
        ).all()
    assert [(verdict, reason in (why or "")) for verdict, why in rows] == [("rejected", True)]


async def test_a_notification_changed_after_signing_is_refused_and_the_genuine_one_applies(
    client: httpx.AsyncClient, sim: Simulator, shop: dict[str, str]
) -> None:
    order, order_id = await _opened(client, sim, shop)
    sim.drop_next_notifications(1)  # only the notifications below reach the app
    await sim.pay(order_id)
    await sim.drain()
    genuine = sim.unionpay.sign(_notification_fields(sim, order_id))
    other_order = order_id[:-1] + ("1" if order_id.endswith("0") else "0")
    for field, value in (("txnAmt", "1"), ("respCode", "00 "), ("orderId", other_order)):
        changed = {**genuine, field: value}
        refused = await client.post(
            "/v1/notify/unionpay",
            content=urlencode(changed).encode("ascii"),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert refused.status_code == 400, field
    assert await _order_status(client, order["id"]) == "pending_payment"

    accepted = await client.post(
        "/v1/notify/unionpay",
        content=urlencode(genuine).encode("ascii"),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert accepted.status_code == 200
    assert await _order_status(client, order["id"]) == "paid"


async def test_an_answer_signed_by_another_ca_is_not_trusted(
    app: FastAPI, client: httpx.AsyncClient, sim: Simulator, shop: dict[str, str]
) -> None:
    _, order_id = await _opened(client, sim, shop)
    await sim.pay(order_id)
    genuine_ca = sim.unionpay.ca
    sim.unionpay.use_ca(TestCA.create())  # the "gateway" now answers with a stranger's chain
    try:
        with pytest.raises(ChannelTimeout, match="not trusted"):
            await _channel(app).query_payment(ids_from_order(order_id))
    finally:
        sim.unionpay.use_ca(genuine_ca)


def ids_from_order(order_id: str) -> str:
    return f"{order_id[:3]}_{order_id[3:]}"


async def test_the_checkout_page_hands_the_signed_form_to_the_buyers_browser(
    app: FastAPI, client: httpx.AsyncClient, sim: Simulator, shop: dict[str, str]
) -> None:
    web.mount(app)
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    path, _, query = httpx.URL(order["checkout_url"]).raw_path.decode().partition("?")
    page = await client.get(f"{path}?{query}&lang=zh-CN")
    assert 'value="unionpay:page"' in page.text
    assert "银联" in page.text
    started = await client.post(
        f"{path}/attempts", data={"sig": query.removeprefix("sig="), "option": "unionpay:page"}
    )
    assert started.status_code == 200, started.text
    assert "前往银联" in started.text  # the zh-CN choice is remembered
    form = re.search(r'<form method="post" action="([^"]+)"', started.text)
    assert form is not None
    assert form.group(1).endswith("/unionpay/gateway/api/frontTransReq.do")
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', started.text))
    fields = {name: html.unescape(value) for name, value in fields.items()}
    assert fields["txnAmt"] == str(order["total"])
    assert fields["signature"]
    async with httpx.AsyncClient(transport=sim.transport) as browser:
        landed = await browser.post(form.group(1), data=fields)
    assert landed.status_code == 303  # the signature survived the page: UnionPay accepts it


async def test_the_days_bill_file_is_downloaded_parsed_and_reconciles_clean(
    app: FastAPI,
    client: httpx.AsyncClient,
    sim: Simulator,
    shop: dict[str, str],
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    first_order, first = await _pay(client, sim, shop)
    await _pay(client, sim, shop, buyer="u_2")
    await post(client, "/v1/refunds", {"order_id": first_order["id"], "amount": 1000})
    await sim.drain()
    day = clock.now().astimezone(BEIJING).date()

    with pytest.raises(UnionPayRefused) as not_yet:  # the day has not ended: 98, no file
        await _channel(app).fetch_bill(day)
    assert not_yet.value.resp_code == "98"

    clock.advance(timedelta(days=1))
    bill = await _channel(app).fetch_bill(day)
    assert (bill.totals.payments, bill.totals.refunds, bill.totals.refund_amount) == (2, 1, 1000)
    refund_entry = next(e for e in bill.entries if e.is_refund)
    assert refund_entry.payment_id == first["id"]  # resolved through origQryId
    container = app.state.modes.live
    deps = ReconcileDeps(container.registry, container.clock, container.settings.zone)
    run = await reconcile_day(ReconcileDay("unionpay", day), container.uow(), deps=deps)
    assert run.status == "clean", run.report
    assert run.report["matched"] == 3, json.dumps(run.report, default=str)
    assert run.report["clearing"]["nets_to_zero"] is True
    report = await verify_ledger(uow)
    assert report.ok, report.problems


async def test_copies_of_the_payment_notification_racing_in_pay_once(
    client: httpx.AsyncClient, sim: Simulator, shop: dict[str, str], uow: UnitOfWork
) -> None:
    sim.duplicate_notifications(3, concurrent=True)
    order, _ = await _pay(client, sim, shop)
    assert await _order_status(client, order["id"]) == "paid"
    assert len([d for d in sim.deliveries if d.accepted]) == 4
    report = await verify_ledger(uow)
    assert report.ok, report.problems


async def test_a_refund_whose_answer_was_lost_is_settled_by_the_query(
    app: FastAPI, client: httpx.AsyncClient, sim: Simulator, shop: dict[str, str], uow: UnitOfWork
) -> None:
    order, _ = await _pay(client, sim, shop)
    sim.lose_next_refund_answers(1)  # UnionPay applied it; we never heard back
    sim.drop_next_notifications(1)  # and its notification is lost too
    made = await post(client, "/v1/refunds", {"order_id": order["id"], "amount": 3000})
    await sim.drain()
    assert (await client.get(f"/v1/refunds/{made['id']}")).json()["status"] == "pending"

    container = app.state.modes.live
    deps = PaymentDeps(container.registry, container.clock, container.settings.base_url)
    assert (await submit_refund(container.uow(), made["id"], deps=deps)).value == "succeeded"
    assert len(sim.state.refunds) == 1  # asked about, not sent twice
    assert (await client.get(f"/v1/refunds/{made['id']}")).json()["status"] == "succeeded"
    report = await verify_ledger(uow)
    assert report.ok, report.problems


async def test_a_refund_unionpay_fails_is_failed_by_its_notification(
    client: httpx.AsyncClient, sim: Simulator, shop: dict[str, str], uow: UnitOfWork
) -> None:
    order, _ = await _pay(client, sim, shop)
    sim.fail_next_refunds(1)
    made = await post(client, "/v1/refunds", {"order_id": order["id"]})
    await sim.drain()
    failed = (await client.get(f"/v1/refunds/{made['id']}")).json()
    assert failed["status"] == "failed", failed
    assert await _order_status(client, order["id"]) == "paid"
    report = await verify_ledger(uow)
    assert report.ok, report.problems


async def test_the_buyer_sent_back_by_a_form_post_lands_on_the_checkout_page(
    app: FastAPI, client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    web.mount(app)
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    path = httpx.URL(order["checkout_url"]).raw_path.decode()
    back = await client.post(path, data={"respCode": "00", "orderId": "anything"})
    assert back.status_code == 303
    assert back.headers["location"] == path
    assert (await client.get(back.headers["location"])).status_code == 200
    forged = await client.post(path.split("?")[0] + "?sig=wrong", data={})
    assert forged.status_code == 404


async def test_an_app_payment_hands_the_app_its_tn_and_a_lost_answer_is_recovered(
    app: FastAPI, client: httpx.AsyncClient, sim: Simulator, shop: dict[str, str]
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "unionpay", "method": "app"}
    )
    action = payment["next_action"]
    assert action["type"] == "app_params"
    assert len(action["params"]["tn"]) == 21
    await sim.pay(payment["id"].replace("_", ""))
    await sim.drain()
    assert await _order_status(client, order["id"]) == "paid"

    # UnionPay took the second order but its answer was lost: the attempt stays pending
    # for the recovery query, never failed on a guess.
    other = await post(client, "/v1/orders", order_body(shop, "c2"))
    sim.fail_next("create", kind="timeout", applied=True)
    lost = await client.post(
        f"/v1/orders/{other['id']}/payments", json={"channel": "unionpay", "method": "app"}
    )
    assert lost.status_code == 502, lost.text
    assert lost.json()["error"]["code"] == "channel_timeout"
    listed = (await client.get(f"/v1/orders/{other['id']}/payments")).json()["data"]
    (attempt,) = listed
    assert attempt["status"] == "pending"
    sim.drop_next_notifications(1)
    await sim.pay(attempt["id"].replace("_", ""))
    container = app.state.modes.live
    deps = PaymentDeps(container.registry, container.clock, container.settings.base_url)
    await reconcile_payment(container.uow(), attempt["id"], deps=deps)
    assert await _order_status(client, other["id"]) == "paid"


async def test_an_unsigned_refusal_of_a_refund_leaves_it_pending_for_the_query(
    app: FastAPI, client: httpx.AsyncClient, sim: Simulator, shop: dict[str, str]
) -> None:
    order, payment = await _pay(client, sim, shop)
    merchants = dict(sim.unionpay.merchants)
    sim.unionpay.merchants.clear()  # UnionPay answers "11 验证签名失败", unsigned
    made = await post(client, "/v1/refunds", {"order_id": order["id"], "amount": 500})
    refund = (await client.get(f"/v1/refunds/{made['id']}")).json()
    assert refund["status"] == "pending"  # not failed: it could have been applied
    assert not sim.state.refunds

    sim.unionpay.merchants.update(merchants)
    container = app.state.modes.live
    deps = PaymentDeps(container.registry, container.clock, container.settings.base_url)
    await submit_refund(container.uow(), made["id"], deps=deps)  # asked: none; sent again
    await sim.drain()
    assert (await client.get(f"/v1/refunds/{made['id']}")).json()["status"] == "succeeded"
    assert len(sim.state.refunds) == 1
    assert payment["amount"] > 500
