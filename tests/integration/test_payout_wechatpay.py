"""Payouts through WeChat Pay's merchant transfer bills, played by the simulator, on
both engines: paid at once, failed with a reason, refused, waiting for the payee to
confirm then done (by the job's query or by the MCHTRANSFER.BILL.FINISHED
notification), cancelled, and an answer lost after the bill was made (the query
decides; one bill)."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI

from tests.integration.test_channels_offline import Gateways, gateways, key_dir  # noqa: F401
from tests.integration.test_payouts import _balance, _books_clean, _sell, seller  # noqa: F401
from tuition.clock import FrozenClock
from tuition.simulator.app import Simulator
from tuition.simulator.faults import FaultKind, Operation
from tuition.store.uow import UnitOfWork
from tuition.worker.runner import Worker, WorkerConfig

OPENID = "o-MYE42l80oelYMDE34nYD456Xoy"


async def _ready(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
) -> str:
    """¥5,000 available to a payee paid through WeChat Pay (its openid)."""
    await _sell(app, client, gateway, clock, seller, "u_1")
    payee = seller["creator"]
    got = await client.post(
        f"/v1/payees/{payee}", json={"payout_method": "wechatpay", "payout_account": OPENID}
    )
    assert got.status_code == 200, got.text
    assert got.json()["payout_account"].endswith("6Xoy")
    assert OPENID not in got.text
    return payee


async def _pay(client: httpx.AsyncClient, payee: str) -> dict[str, object]:
    made = await client.post("/v1/payouts", json={"payee_id": payee, "currency": "CNY"})
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


async def _get(client: httpx.AsyncClient, payout_id: object) -> dict[str, object]:
    return (await client.get(f"/v1/payouts/{payout_id}")).json()  # type: ignore[no-any-return]


async def _jobs(app: FastAPI, clock: FrozenClock) -> None:
    clock.advance(timedelta(seconds=61))
    await Worker(app.state.modes.live, WorkerConfig(sweep_interval=timedelta(0))).run_once()


async def test_a_wechatpay_payout_is_one_transfer_bill_paid_net_of_tax(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    gateways: Gateways,  # noqa: F811
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    payee = await _ready(app, client, gateway, clock, seller)
    payout = await _pay(client, payee)
    assert (payout["status"], payout["method"], payout["net"]) == ("paid", "wechatpay", 420000)
    [bill] = gateways.sim.wechatpay.transfers.bills.values()
    assert (bill.out_bill_no, bill.amount, bill.openid) == (payout["id"], 420000, OPENID)
    # From 2,000 yuan the payee's name is sent, sealed with the WeChat Pay public key.
    assert bill.user_name == "Bo"
    assert bill.notify_url is not None
    assert bill.notify_url.endswith("/v1/notify/wechatpay")
    assert payout["reference"] == bill.transfer_bill_no
    await _jobs(app, clock)  # the queued job finds it paid and sends nothing
    assert len(gateways.sim.wechatpay.transfers.bills) == 1
    assert (await _balance(client, payee))["paid_out"] == 420000
    await _books_clean(uow)


async def test_a_bill_that_fails_fails_the_payout_with_wechat_pays_reason(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    gateways: Gateways,  # noqa: F811
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    payee = await _ready(app, client, gateway, clock, seller)
    gateways.sim.wechatpay.transfers.fail_next("PAYEE_ACCOUNT_ABNORMAL")
    payout = await _pay(client, payee)
    assert (payout["status"], payout["failure_code"], payout["failure_message"]) == (
        "failed",
        "PAYEE_ACCOUNT_ABNORMAL",
        "WeChat Pay could not transfer: PAYEE_ACCOUNT_ABNORMAL",
    )
    balance = await _balance(client, payee)
    assert (balance["available"], balance["tax_withheld"], balance["in_payout"]) == (500000, 0, 0)
    await _books_clean(uow)


async def test_a_refused_request_fails_the_payout_once_the_query_finds_no_bill(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    gateways: Gateways,  # noqa: F811
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    payee = await _ready(app, client, gateway, clock, seller)
    gateways.sim.wechatpay.transfers.refuse_next("NOT_ENOUGH", "资金不足")
    payout = await _pay(client, payee)
    assert (payout["status"], payout["failure_code"]) == ("failed", "NOT_ENOUGH")
    assert payout["failure_message"] == "WeChat Pay refused (NOT_ENOUGH): 资金不足"
    assert gateways.sim.wechatpay.transfers.bills == {}
    assert (await _balance(client, payee))["available"] == 500000
    await _books_clean(uow)


async def test_a_bill_waiting_for_the_payee_is_paid_when_the_job_finds_it_confirmed(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    gateways: Gateways,  # noqa: F811
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    payee = await _ready(app, client, gateway, clock, seller)
    desk = gateways.sim.wechatpay.transfers
    desk.confirm_next()
    payout = await _pay(client, payee)
    [bill] = desk.bills.values()
    # The app hands package_info to WeChat for the payee to confirm receipt.
    assert (payout["status"], payout["transfer_package"]) == ("processing", bill.package_info)
    await _jobs(app, clock)
    assert (await _get(client, payout["id"]))["status"] == "processing"  # still waiting
    desk.settle(str(payout["id"]))
    await _jobs(app, clock)
    got = await _get(client, payout["id"])
    assert (got["status"], got["reference"]) == ("paid", bill.transfer_bill_no)
    assert len(desk.bills) == 1
    await _books_clean(uow)


async def test_the_finished_notification_settles_a_waiting_bill_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    gateways: Gateways,  # noqa: F811
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    payee = await _ready(app, client, gateway, clock, seller)
    desk = gateways.sim.wechatpay.transfers
    desk.confirm_next()
    payout = await _pay(client, payee)
    desk.settle(str(payout["id"]))
    headers, body = desk.notification(str(payout["id"]))
    first = await client.post("/v1/notify/wechatpay", content=body, headers=headers)
    assert first.status_code == 204, first.text
    assert (await _get(client, payout["id"]))["status"] == "paid"
    again = await client.post("/v1/notify/wechatpay", content=body, headers=headers)
    assert again.status_code == 204  # a redelivery is acknowledged and changes nothing
    await _jobs(app, clock)  # nor does the job that comes after
    assert (await _balance(client, payee))["paid_out"] == 420000
    await _books_clean(uow)


async def test_a_forged_finished_notification_changes_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    gateways: Gateways,  # noqa: F811
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    payee = await _ready(app, client, gateway, clock, seller)
    desk = gateways.sim.wechatpay.transfers
    desk.confirm_next()
    payout = await _pay(client, payee)
    desk.settle(str(payout["id"]))
    headers, body = desk.notification(str(payout["id"]))
    forged = body.replace(b'"ciphertext":"', b'"ciphertext":"A', 1)
    got = await client.post("/v1/notify/wechatpay", content=forged, headers=headers)
    assert got.status_code == 400
    assert (await _get(client, payout["id"]))["status"] == "processing"
    await _books_clean(uow)


async def test_a_bill_the_payee_never_confirms_is_cancelled_and_the_money_comes_back(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    gateways: Gateways,  # noqa: F811
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    payee = await _ready(app, client, gateway, clock, seller)
    desk = gateways.sim.wechatpay.transfers
    desk.confirm_next()
    payout = await _pay(client, payee)
    desk.settle(str(payout["id"]), state="CANCELLED")
    headers, body = desk.notification(str(payout["id"]))
    got = await client.post("/v1/notify/wechatpay", content=body, headers=headers)
    assert got.status_code == 204
    failed = await _get(client, payout["id"])
    assert (failed["status"], failed["failure_code"]) == ("failed", "CANCELLED")
    assert (await _balance(client, payee))["available"] == 500000
    await _books_clean(uow)


async def test_an_answer_lost_after_the_bill_was_made_is_settled_by_the_query_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    gateways: Gateways,  # noqa: F811
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    payee = await _ready(app, client, gateway, clock, seller)
    gateways.sim.fail_next(Operation.TRANSFER, kind=FaultKind.TIMEOUT, applied=True)
    payout = await _pay(client, payee)
    assert payout["status"] == "processing"  # the answer never came
    assert len(gateways.sim.wechatpay.transfers.bills) == 1  # but the bill was made
    await _jobs(app, clock)
    assert (await _get(client, payout["id"]))["status"] == "paid"
    assert len(gateways.sim.wechatpay.transfers.bills) == 1
    assert (await _balance(client, payee))["paid_out"] == 420000
    await _books_clean(uow)


async def test_a_request_lost_before_wechat_pay_saw_it_is_sent_again_by_the_job(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    gateways: Gateways,  # noqa: F811
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    payee = await _ready(app, client, gateway, clock, seller)
    gateways.sim.fail_next(Operation.TRANSFER, kind=FaultKind.TIMEOUT)
    payout = await _pay(client, payee)
    assert payout["status"] == "processing"
    assert gateways.sim.wechatpay.transfers.bills == {}
    await _jobs(app, clock)
    assert (await _get(client, payout["id"]))["status"] == "paid"
    assert len(gateways.sim.wechatpay.transfers.bills) == 1
    await _books_clean(uow)
