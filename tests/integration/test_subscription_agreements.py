"""Renewal by agreement through the simulator, on both engines: Alipay periodic deduction
and WeChat Pay contract deduction (papay, API v3).

The channels are configured as ``make demo`` configures them and reach the simulator
in-process; the simulator notifies the app in-process. The clock is frozen: the renewal
pass runs at the times the tests set.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.subscription_shop import events, get_sub, mark_paid, renewal_deps
from tuition import web
from tuition.channels.alipay.client import AlipayChannel
from tuition.channels.base import AgreementState
from tuition.channels.setup import build_registry
from tuition.channels.wechatpay.client import WechatPayChannel
from tuition.clock import FrozenClock
from tuition.config import load_settings
from tuition.domain.agreements import AgreementStatus
from tuition.domain.risk import RiskPolicy
from tuition.services import admin as admin_service
from tuition.services.agreements import apply_agreement_state
from tuition.services.ledger import verify_ledger
from tuition.services.payments import PaymentDeps
from tuition.services.renewals import RenewalRun, run_renewals
from tuition.simulator.app import Simulator, create_simulator
from tuition.simulator.config import SimulatorConfig
from tuition.simulator.faults import FaultKind, Operation
from tuition.store.tables import agreement_charges, notifications, payments
from tuition.store.uow import UnitOfWork

RENEWAL_DUE = datetime(2026, 11, 28, 9, tzinfo=UTC)  # three days before 12-01 09:00
PERIOD_END = datetime(2026, 12, 1, 9, tzinfo=UTC)


async def _no_wait(_seconds: float) -> None:
    await asyncio.sleep(0)


@pytest.fixture(scope="session")
def agreement_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("agreement-keys")


@pytest.fixture
async def sim(app: FastAPI, clock: FrozenClock, agreement_keys: Path) -> AsyncIterator[Simulator]:
    simulator = create_simulator(
        SimulatorConfig(clock=clock, sleep=_no_wait, notify_transport=httpx.ASGITransport(app=app))
    )
    settings = load_settings(
        simulator=True,
        channels=["alipay", "wechatpay"],
        simulator_key_file=str(agreement_keys / "simulator.pem"),
    )
    alipay, wechatpay = list(build_registry(settings, clock=clock, simulator=simulator))
    assert isinstance(alipay, AlipayChannel)
    assert isinstance(wechatpay, WechatPayChannel)
    app.state.modes.live.registry.add(alipay)
    app.state.modes.live.registry.add(wechatpay)
    web.mount(app)
    yield simulator
    await simulator.aclose()
    await alipay.aclose()
    await wechatpay.aclose()


def _deps(app: FastAPI) -> PaymentDeps:
    return app.state.modes.live.payment_deps()  # type: ignore[no-any-return]


async def _renew(app: FastAPI, uow: UnitOfWork, clock: FrozenClock) -> RenewalRun:
    deps = renewal_deps(clock)
    return await run_renewals(uow, deps=type(deps)(**{**_fields(deps), "payments": _deps(app)}))


def _fields(deps: Any) -> dict[str, Any]:
    return {name: getattr(deps, name) for name in deps.__slots__}


METHODS = {"alipay": "page", "wechatpay": "native"}
SIGN_CALLS = {
    "alipay": "method=alipay.user.agreement.page.sign",  # a page call through the gateway
    "wechatpay": "/agreements/",  # the redirect_url of pre-entrust-sign
}
both_channels = pytest.mark.parametrize("channel", ["alipay", "wechatpay"])


async def _subscribe_and_sign(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    sim: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
    channel: str = "alipay",
) -> dict[str, Any]:
    """Subscribe with auto-renew, pay the first month, sign on the sign page."""
    await client.put(f"/v1/products/{shop['monthly']}/access_scope", json={"everything": True})
    response = await client.post(
        "/v1/subscriptions",
        json={
            "customer_id": "u_1",
            "product_id": shop["monthly"],
            "channel": channel,
            "method": METHODS[channel],
            "auto_renew": True,
        },
    )
    assert response.status_code == 201, response.text
    sub = response.json()
    assert sub["agreement_sign_url"], sub
    await mark_paid(uow, sub["latest_order"]["id"], clock)
    # The buyer follows the checkout page's sign link: our route -> the gateway's sign
    # page (Alipay: through its page.sign call), which sends them back to the checkout.
    checkout = httpx.URL(sub["latest_order"]["checkout_url"])
    step = await client.get(f"{checkout.path}/agreement?{checkout.query.decode()}")
    assert step.status_code == 303, step.text
    gateway_url = step.headers["location"]
    assert SIGN_CALLS[channel] in gateway_url
    async with httpx.AsyncClient(
        transport=sim.transport, base_url=sim.config.public_base_url
    ) as browser:
        page = await browser.get(gateway_url, follow_redirects=True)
        assert page.status_code == 200, page.text
        action = re.search(r'action="([^"]+/sign)"', page.text)
        assert action is not None, page.text
        signed = await browser.post(action.group(1))
        assert signed.status_code == 303  # back to the checkout page
    await sim.drain()
    body = await get_sub(client, sub["id"])
    assert body["agreement"]["status"] == "active", body
    assert body["agreement"]["agreement_no"]
    return body


async def _charges(uow: UnitOfWork) -> list[Any]:
    async with uow:
        return list(await uow.conn.execute(select(agreement_charges)))


async def _agreement_payments(uow: UnitOfWork) -> list[tuple[str, str]]:
    async with uow:
        rows = await uow.conn.execute(
            select(payments.c.id, payments.c.status)
            .where(payments.c.method == "agreement")
            .order_by(payments.c.created_at, payments.c.id)
        )
        return [(r[0], r[1]) for r in rows]


@both_channels
async def test_an_agreement_renews_the_period_without_the_buyer(
    channel: str,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    sim: Simulator,
    app: FastAPI,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    sub = await _subscribe_and_sign(client, shop, sim, uow, clock, channel)
    clock.set(RENEWAL_DUE)
    run = await _renew(app, uow, clock)
    assert (run.prepared, run.charged) == ([sub["id"]], [sub["id"]])
    await sim.drain()  # the trade notification arrives too; it changes nothing more
    renewed = await get_sub(client, sub["id"])
    assert renewed["status"] == "active"
    assert renewed["period_index"] == 2
    assert renewed["current_period_end"].startswith("2027-01-01T09:00:00")
    [(payment_id, status)] = await _agreement_payments(uow)
    assert status == "succeeded"
    trade = sim.payment(payment_id)
    assert trade.amount == 3000
    assert trade.details["agreement_no"] == sub["agreement"]["agreement_no"]
    kinds = [t for t, _ in await events(uow)]
    # Charged by agreement: no link to pay by hand was sent.
    assert "subscription.renewal_upcoming" not in kinds
    assert kinds[-1] == "subscription.renewed"
    assert [t for t, _ in await events(uow, "agreement.")] == ["agreement.signed"]
    async with uow:
        signs = list(
            await uow.conn.execute(
                select(notifications.c.verdict, notifications.c.trade_no).where(
                    notifications.c.event.in_(["dut_user_sign", "PAPAY.SIGN"])
                )
            )
        )
    assert signs == [("applied", sub["agreement"]["agreement_no"])]
    report = await verify_ledger(uow)
    assert report.ok, report.problems

    # Run again, and again later the same day: nothing more is charged.
    assert (await _renew(app, uow, clock)).charged == []
    assert len(await _agreement_payments(uow)) == 1


@both_channels
async def test_two_workers_charge_a_period_once(
    channel: str,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    sim: Simulator,
    app: FastAPI,
    engine: AsyncEngine,
    clock: FrozenClock,
) -> None:
    sub = await _subscribe_and_sign(client, shop, sim, UnitOfWork(engine), clock, channel)
    clock.set(RENEWAL_DUE)
    await asyncio.gather(*(_renew(app, UnitOfWork(engine), clock) for _ in range(4)))
    await sim.drain()
    assert len(await _charges(UnitOfWork(engine))) == 1
    assert [s for _, s in await _agreement_payments(UnitOfWork(engine))] == ["succeeded"]
    paid_trades = [p for p in sim.state.payments.values() if p.method == "agreement"]
    assert len(paid_trades) == 1
    assert (await get_sub(client, sub["id"]))["period_index"] == 2


async def test_a_lost_charge_answer_is_decided_by_the_query_and_charged_once(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    sim: Simulator,
    app: FastAPI,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    sub = await _subscribe_and_sign(client, shop, sim, uow, clock)
    clock.set(RENEWAL_DUE)
    sim.drop_next_notifications(1)  # and the trade notification is lost as well
    sim.fail_next(Operation.CREATE, kind=FaultKind.TIMEOUT, applied=True)
    await _renew(app, uow, clock)
    [(_, status)] = await _agreement_payments(uow)
    assert status == "pending"  # unknown: never failed on a guess
    assert (await get_sub(client, sub["id"]))["period_index"] == 1
    # A later pass asks before charging again, and the query finds the debit.
    await _renew(app, uow, clock)
    assert [s for _, s in await _agreement_payments(uow)] == ["succeeded"]
    assert len([p for p in sim.state.payments.values() if p.method == "agreement"]) == 1
    assert (await get_sub(client, sub["id"]))["period_index"] == 2


async def test_a_refused_charge_goes_into_dunning_and_a_retry_charges_again(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    sim: Simulator,
    app: FastAPI,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    sub = await _subscribe_and_sign(client, shop, sim, uow, clock)
    sim.agreements.fail_next_charges(1)
    clock.set(RENEWAL_DUE)
    await _renew(app, uow, clock)
    assert [s for _, s in await _agreement_payments(uow)] == ["failed"]
    upcoming = [d for t, d in await events(uow) if t == "subscription.renewal_upcoming"]
    assert len(upcoming) == 1
    assert upcoming[0]["charge_failed"] is True  # with the link to pay by hand meanwhile
    clock.set(PERIOD_END)
    assert (await _renew(app, uow, clock)).past_due == [sub["id"]]
    assert (await get_sub(client, sub["id"]))["status"] == "past_due"
    clock.set(datetime(2026, 12, 2, 9, tzinfo=UTC))  # the first retry, +1 day
    assert (await _renew(app, uow, clock)).reminded == [sub["id"]]
    renewed = await get_sub(client, sub["id"])
    assert renewed["status"] == "active"
    assert renewed["period_index"] == 2
    assert [s for _, s in await _agreement_payments(uow)] == ["failed", "succeeded"]
    assert [c.attempt for c in await _charges(uow)] == [1, 2]
    # The retry charged: no "payment failed" notice for it, only for the period end.
    failed = [d["attempt"] for t, d in await events(uow) if t == "subscription.payment_failed"]
    assert failed == [1]
    report = await verify_ledger(uow)
    assert report.ok, report.problems


@both_channels
async def test_an_agreement_cancelled_at_the_gateway_ends_auto_renew_not_the_period(
    channel: str,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    sim: Simulator,
    app: FastAPI,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    sub = await _subscribe_and_sign(client, shop, sim, uow, clock, channel)
    clock.set(datetime(2026, 11, 20, 9, tzinfo=UTC))
    sim.agreements.cancel_by_buyer(sub["agreement"]["id"])
    await sim.drain()
    after = await get_sub(client, sub["id"])
    assert after["status"] == "active"  # the paid month runs to its end
    assert after["auto_renew"] is False
    assert after["current_period_end"].startswith("2026-12-01T09:00:00")
    assert after["agreement"]["status"] == AgreementStatus.ENDED.value
    assert [t for t, _ in await events(uow, "agreement.")] == [
        "agreement.signed",
        "agreement.ended",
    ]
    assert "subscription.auto_renew_ended" in [t for t, _ in await events(uow)]
    assert sim.agreements.notices[-1].accepted
    # A sign notification arriving late (re-delivered) changes nothing: ended is final.
    late = AgreementState(
        sub["agreement"]["id"], AgreementStatus.ACTIVE, sub["agreement"]["agreement_no"]
    )
    assert await apply_agreement_state(uow, channel, late, deps=_deps(app))
    assert (await get_sub(client, sub["id"]))["agreement"]["status"] == "ended"
    clock.set(RENEWAL_DUE)
    run = await _renew(app, uow, clock)
    assert (run.prepared, run.charged) == ([sub["id"]], [])
    assert await _agreement_payments(uow) == []
    upcoming = [d for t, d in await events(uow) if t == "subscription.renewal_upcoming"]
    assert len(upcoming) == 1  # renewed by hand from now on, with the link


async def test_a_forged_agreement_notification_changes_nothing(
    client: httpx.AsyncClient, anon_client: httpx.AsyncClient, sim: Simulator, uow: UnitOfWork
) -> None:
    body = (
        b"notify_type=dut_user_unsign&status=UNSIGN&agreement_no=1&external_agreement_no=x"
        b"&app_id=a&sign_type=RSA2&sign=AAAA"
    )
    response = await anon_client.post(
        "/v1/notify/alipay/agreements",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert response.content == b"fail"
    async with uow:
        rows = list(
            await uow.conn.execute(select(notifications.c.channel, notifications.c.verdict))
        )
    assert rows == [("alipay", "rejected")]  # kept for audit, like every notification


async def test_the_checkout_page_links_the_agreement_step(
    client: httpx.AsyncClient, shop: dict[str, str], sim: Simulator
) -> None:
    response = await client.post(
        "/v1/subscriptions",
        json={
            "customer_id": "u_2",
            "product_id": shop["monthly"],
            "channel": "alipay",
            "method": "page",
            "auto_renew": True,
        },
    )
    sub = response.json()
    page = await client.get(httpx.URL(sub["latest_order"]["checkout_url"]).raw_path.decode())
    assert page.status_code == 200
    assert 'data-testid="agreement-sign"' in page.text
    manual = await client.post(
        "/v1/subscriptions",
        json={
            "customer_id": "u_3",
            "product_id": shop["monthly"],
            "channel": "alipay",
            "method": "page",
            "auto_renew": False,
        },
    )
    assert manual.json()["agreement_sign_url"] is None
    page = await client.get(
        httpx.URL(manual.json()["latest_order"]["checkout_url"]).raw_path.decode()
    )
    assert 'data-testid="agreement-sign"' not in page.text


async def test_a_failed_wechat_deduction_is_found_by_the_query_and_retried_in_dunning(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    sim: Simulator,
    app: FastAPI,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    sub = await _subscribe_and_sign(client, shop, sim, uow, clock, "wechatpay")
    sim.agreements.fail_next_charges(1)
    clock.set(RENEWAL_DUE)
    await _renew(app, uow, clock)
    await sim.drain()
    # WeChat Pay accepted the deduction; it failed later and is not notified.
    assert [s for _, s in await _agreement_payments(uow)] == ["pending"]
    clock.set(PERIOD_END)
    assert (await _renew(app, uow, clock)).past_due == [sub["id"]]
    assert [s for _, s in await _agreement_payments(uow)] == ["failed"]  # by the query
    clock.set(datetime(2026, 12, 2, 9, tzinfo=UTC))
    assert (await _renew(app, uow, clock)).reminded == [sub["id"]]
    await sim.drain()  # TRANSACTION.SUCCESS of the retry
    renewed = await get_sub(client, sub["id"])
    assert (renewed["status"], renewed["period_index"]) == ("active", 2)
    assert [s for _, s in await _agreement_payments(uow)] == ["failed", "succeeded"]
    failed = [d["attempt"] for t, d in await events(uow) if t == "subscription.payment_failed"]
    assert failed == [1]
    report = await verify_ledger(uow)
    assert report.ok, report.problems


@both_channels
async def test_a_canceled_subscription_leaves_no_signed_agreement_behind(
    channel: str,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    sim: Simulator,
    app: FastAPI,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    sub = await _subscribe_and_sign(client, shop, sim, uow, clock, channel)
    canceled = await client.post(
        f"/v1/subscriptions/{sub['id']}/cancel", json={"at_period_end": False}
    )
    assert canceled.status_code == 200, canceled.text
    run = await _renew(app, uow, clock)
    assert run.unsigned == [sub["agreement"]["id"]]
    assert sim.agreements.find(sub["agreement"]["id"]).status == "STOP"  # unsigned there
    await sim.drain()  # the gateway's unsign notification: a copy, accepted
    assert sim.agreements.notices[-1].accepted
    after = (await get_sub(client, sub["id"]))["agreement"]
    assert (after["status"], after["end_reason"]) == ("ended", "subscription_ended")
    assert (await _renew(app, uow, clock)).unsigned == []
    ended = [d for t, d in await events(uow, "agreement.") if t == "agreement.ended"]
    assert len(ended) == 1


async def test_the_console_shows_the_subscriptions_agreement(
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    shop: dict[str, str],
    sim: Simulator,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    sub = await _subscribe_and_sign(client, shop, sim, uow, clock)
    await admin_service.create_admin_user(uow, "ops@example.com", "a-long-enough-password", clock)
    anon_client.headers["Accept-Language"] = "zh-CN"
    form = await anon_client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    signed_in = await anon_client.post(
        "/admin/login",
        data={
            "email": "ops@example.com",
            "password": "a-long-enough-password",
            "csrf_token": token.group(1),
        },
    )
    assert signed_in.status_code == 303
    page = await anon_client.get(f"/admin/subscriptions/{sub['id']}")
    assert page.status_code == 200
    table = page.text[page.text.index('data-testid="agreements"') :]
    assert sub["agreement"]["id"] in table
    assert sub["agreement"]["agreement_no"] in table
    assert "已签约" in table  # the status, translated


async def test_a_trial_signs_before_its_first_charge_which_the_agreement_pays(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    sim: Simulator,
    app: FastAPI,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    await client.put(f"/v1/products/{shop['monthly']}/access_scope", json={"everything": True})
    response = await client.post(
        "/v1/subscriptions",
        json={
            "customer_id": "u_1",
            "product_id": shop["monthly"],
            "channel": "alipay",
            "method": "page",
            "auto_renew": True,
            "trial_days": 7,
        },
    )
    sub = response.json()
    assert (sub["status"], sub["latest_order"]) == ("trialing", None)
    forged = await client.get(f"/subscriptions/{sub['id']}/agreement?sig=0000")
    assert forged.status_code == 404
    step = await client.get(httpx.URL(sub["agreement_sign_url"]).raw_path.decode())
    assert step.status_code == 303, step.text
    async with httpx.AsyncClient(
        transport=sim.transport, base_url=sim.config.public_base_url
    ) as browser:
        page = await browser.get(step.headers["location"], follow_redirects=True)
        action = re.search(r'action="([^"]+/sign)"', page.text)
        assert action is not None, page.text
        assert (await browser.post(action.group(1))).status_code == 200
    await sim.drain()
    assert (await get_sub(client, sub["id"]))["agreement"]["status"] == "active"
    clock.set(datetime(2026, 11, 5, 9, tzinfo=UTC))  # three days before the trial ends
    assert (await _renew(app, uow, clock)).charged == [sub["id"]]
    await sim.drain()
    paid = await get_sub(client, sub["id"])
    assert paid["status"] == "active"
    # The paid month starts when the trial ends.
    assert paid["current_period_start"].startswith("2026-11-08T09:00:00")
    assert paid["current_period_end"].startswith("2026-12-08T09:00:00")


@both_channels
async def test_a_worker_killed_mid_charge_converges_to_one_debit(
    channel: str,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    sim: Simulator,
    app: FastAPI,
    uow: UnitOfWork,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sub = await _subscribe_and_sign(client, shop, sim, uow, clock, channel)
    gateway_channel = app.state.modes.live.registry.get(channel)

    async def killed(_charge: object) -> None:
        raise SystemExit("worker killed while calling the gateway")

    clock.set(RENEWAL_DUE)
    monkeypatch.setattr(gateway_channel, "charge_agreement", killed)
    with pytest.raises(SystemExit):
        await _renew(app, uow, clock)
    monkeypatch.undo()
    # The claim was written, the gateway never heard of it: the attempt is "created".
    assert [s for _, s in await _agreement_payments(uow)] == ["created"]
    assert [p for p in sim.state.payments.values() if p.method == "agreement"] == []
    # The next pass asks the gateway, which has no such trade, and sends the same one.
    await _renew(app, uow, clock)
    await sim.drain()
    await _renew(app, uow, clock)  # and a pass after that changes nothing
    assert [s for _, s in await _agreement_payments(uow)] == ["succeeded"]
    assert len([p for p in sim.state.payments.values() if p.method == "agreement"]) == 1
    assert len(await _charges(uow)) == 1
    assert (await get_sub(client, sub["id"]))["period_index"] == 2


async def test_a_renewal_held_for_review_is_charged_by_agreement_only_once_approved(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    sim: Simulator,
    app: FastAPI,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    sub = await _subscribe_and_sign(client, shop, sim, uow, clock, "alipay")
    rule = {
        "name": "big",
        "kind": "amount_threshold",
        "params": {"amounts": {"CNY": "10.00"}},
        "stages": ["order"],
        "action": "review",
    }
    assert (await client.post("/v1/risk/rules", json=rule)).status_code == 201
    clock.set(RENEWAL_DUE)
    base = renewal_deps(clock)
    deps = replace(base, orders=replace(base.orders, risk=RiskPolicy()), payments=_deps(app))
    run = await run_renewals(uow, deps=deps)
    assert (run.prepared, run.charged) == ([sub["id"]], [])
    assert await _agreement_payments(uow) == []
    [review] = (await client.get("/v1/risk/reviews", params={"status": "open"})).json()["data"]
    assert (await client.post(f"/v1/risk/reviews/{review['id']}/approve", json={})).is_success
    assert (await run_renewals(uow, deps=deps)).charged == [sub["id"]]
    await sim.drain()
    [(_, status)] = await _agreement_payments(uow)
    assert status == "succeeded"
    assert (await get_sub(client, sub["id"]))["period_index"] == 2
