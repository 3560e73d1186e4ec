"""Payouts through Alipay's transfer API, played by the simulator, on both engines:
paid at once, refused with a reason, processing then done, and an answer lost after the
gateway paid (the query decides; one transfer)."""

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

LOGIN = "bo@example.com"


async def _ready(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
) -> str:
    """¥5,000 available to a payee paid through Alipay."""
    await _sell(app, client, gateway, clock, seller, "u_1")
    payee = seller["creator"]
    got = await client.post(
        f"/v1/payees/{payee}", json={"payout_method": "alipay", "payout_account": LOGIN}
    )
    assert got.status_code == 200, got.text
    assert got.json()["payout_account"] == "b***@example.com"
    return payee


async def _pay(client: httpx.AsyncClient, payee: str) -> dict[str, object]:
    made = await client.post("/v1/payouts", json={"payee_id": payee, "currency": "CNY"})
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


async def _jobs(app: FastAPI, clock: FrozenClock) -> None:
    clock.advance(timedelta(seconds=61))
    await Worker(app.state.modes.live, WorkerConfig(sweep_interval=timedelta(0))).run_once()


async def test_an_alipay_payout_is_transferred_once_and_paid_net_of_tax(
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
    assert (payout["status"], payout["method"], payout["net"]) == ("paid", "alipay", 420000)
    [transfer] = gateways.sim.transfers.transfers.values()
    assert (transfer.out_biz_no, transfer.amount, transfer.account) == (
        payout["id"],
        420000,
        LOGIN,
    )
    assert payout["reference"] == transfer.order_id
    await _jobs(app, clock)  # the queued job finds it paid and sends nothing
    assert len(gateways.sim.transfers.transfers) == 1
    assert (await _balance(client, payee))["paid_out"] == 420000
    await _books_clean(uow)


async def test_a_transfer_alipay_refuses_fails_the_payout_with_its_reason(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    gateways: Gateways,  # noqa: F811
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    payee = await _ready(app, client, gateway, clock, seller)
    gateways.sim.transfers.refuse_next("PAYEE_NOT_EXIST", "the payee account does not exist")
    payout = await _pay(client, payee)
    assert (payout["status"], payout["failure_code"]) == ("failed", "PAYEE_NOT_EXIST")
    assert (
        payout["failure_message"]
        == "Alipay refused (PAYEE_NOT_EXIST): the payee account does not exist"
    )
    balance = await _balance(client, payee)
    assert (balance["available"], balance["tax_withheld"]) == (500000, 0)
    await _books_clean(uow)


async def test_a_processing_transfer_is_settled_by_the_job_once_alipay_ends_it(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    gateways: Gateways,  # noqa: F811
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    payee = await _ready(app, client, gateway, clock, seller)
    gateways.sim.transfers.process_next()
    payout = await _pay(client, payee)
    assert payout["status"] == "processing"
    await _jobs(app, clock)
    got = (await client.get(f"/v1/payouts/{payout['id']}")).json()
    assert got["status"] == "processing"  # Alipay still DEALING: asked again later
    gateways.sim.transfers.settle(str(payout["id"]))
    await _jobs(app, clock)
    got = (await client.get(f"/v1/payouts/{payout['id']}")).json()
    assert got["status"] == "paid"
    assert len(gateways.sim.transfers.transfers) == 1
    await _books_clean(uow)


async def test_a_processing_transfer_that_ends_in_failure_gives_the_money_back(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    gateways: Gateways,  # noqa: F811
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    payee = await _ready(app, client, gateway, clock, seller)
    gateways.sim.transfers.process_next()
    payout = await _pay(client, payee)
    gateways.sim.transfers.settle(
        str(payout["id"]), succeed=False, code="PAYEE_ACCOUNT_STATUS_ERROR", reason="frozen"
    )
    await _jobs(app, clock)
    got = (await client.get(f"/v1/payouts/{payout['id']}")).json()
    assert (got["status"], got["failure_code"], got["failure_message"]) == (
        "failed",
        "PAYEE_ACCOUNT_STATUS_ERROR",
        "frozen",
    )
    assert (await _balance(client, payee))["available"] == 500000
    await _books_clean(uow)


async def test_an_answer_lost_after_alipay_paid_is_settled_by_the_query_without_a_second_transfer(
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
    assert len(gateways.sim.transfers.transfers) == 1  # but Alipay paid
    await _jobs(app, clock)
    got = (await client.get(f"/v1/payouts/{payout['id']}")).json()
    assert got["status"] == "paid"
    assert len(gateways.sim.transfers.transfers) == 1
    assert (await _balance(client, payee))["paid_out"] == 420000
    await _books_clean(uow)


async def test_a_transfer_lost_before_alipay_saw_it_is_sent_again_by_the_job(
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
    assert gateways.sim.transfers.transfers == {}
    await _jobs(app, clock)
    got = (await client.get(f"/v1/payouts/{payout['id']}")).json()
    assert got["status"] == "paid"
    assert len(gateways.sim.transfers.transfers) == 1
    await _books_clean(uow)
