"""Reconciliation against the simulator's Alipay and WeChat Pay bills, on both engines:
a clean day nets clearing to zero, every case type from an altered bill, a 长款
recovered through the paid path exactly once, cross-midnight matching, reruns."""

from __future__ import annotations

import asyncio
import csv
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.shop import order_body, post
from tuition.app import create_app
from tuition.cli_reconcile import close_report_csv, run_json
from tuition.clock import FrozenClock
from tuition.config import load_settings
from tuition.domain.errors import Conflict
from tuition.services.api_keys import create_key
from tuition.services.ledger import verify_ledger
from tuition.services.payments import PaymentDeps, reconcile_payment
from tuition.services.reconciliation import ReconcileDay, ReconcileDeps, reconcile_day
from tuition.simulator.app import Simulator
from tuition.store.reconciliation import RunRecord
from tuition.store.tables import (
    api_keys,
    audit_events,
    journal_entries,
    reconciliation_cases,
    reconciliation_runs,
)
from tuition.store.uow import UnitOfWork

METHODS = {"alipay": "qr", "wechatpay": "native"}
_BUYERS = itertools.count(1)
DAY = date(2026, 11, 1)  # the conftest clock, 2026-11-01 09:00 UTC, is 17:00 in Beijing


@pytest.fixture(params=sorted(METHODS))
def channel(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def app(db_url: str, engine: AsyncEngine, clock: FrozenClock, tmp_path: Path) -> FastAPI:
    settings = load_settings(
        database_url=db_url,
        simulator=True,
        public_url="http://tuition.test",
        simulator_key_file=str(tmp_path / "sim.pem"),
    )
    return create_app(settings, engine=engine, test_engine=engine, clock=clock, run_worker=False)


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
def sim(app: FastAPI) -> Simulator:
    simulator = app.state.runtime.simulator
    assert simulator is not None
    simulator.drop_next_notifications(1000)  # every outcome is learnt by query here
    return simulator  # type: ignore[no-any-return]


async def _payment(client: httpx.AsyncClient, shop: dict[str, str], channel: str) -> dict[str, Any]:
    buyer = f"u_{next(_BUYERS)}"
    order = await post(client, "/v1/orders", order_body(shop, "c1", customer_id=buyer))
    return await post(
        client,
        f"/v1/orders/{order['id']}/payments",
        {"channel": channel, "method": METHODS[channel]},
    )


async def _paid(
    app: FastAPI, client: httpx.AsyncClient, sim: Simulator, shop: dict[str, str], channel: str
) -> dict[str, Any]:
    payment = await _payment(client, shop, channel)
    await sim.pay(payment["id"])
    container = app.state.modes.live
    deps = PaymentDeps(container.registry, container.clock, container.settings.base_url)
    await reconcile_payment(container.uow(), payment["id"], deps=deps)
    return payment


async def _run(app: FastAPI, channel: str, day: date = DAY) -> RunRecord:
    container = app.state.modes.live
    deps = ReconcileDeps(container.registry, container.clock, container.settings.zone)
    return await reconcile_day(ReconcileDay(channel, day), container.uow(), deps=deps)


async def _count(engine: AsyncEngine, table: Any, *where: Any) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def _kinds(run: RunRecord) -> dict[str, int]:
    return dict(run.report["findings"])


async def test_a_clean_day_nets_clearing_to_zero_and_a_rerun_posts_nothing_again(
    app: FastAPI,
    client: httpx.AsyncClient,
    sim: Simulator,
    shop: dict[str, str],
    channel: str,
    clock: FrozenClock,
    engine: AsyncEngine,
    uow: UnitOfWork,
) -> None:
    first = await _paid(app, client, sim, shop, channel)
    await _paid(app, client, sim, shop, channel)
    refund = await post(client, "/v1/refunds", {"payment_id": first["id"]})
    container = app.state.modes.live
    deps = PaymentDeps(container.registry, container.clock, container.settings.base_url)
    from tuition.services.payments import submit_refund

    await submit_refund(container.uow(), refund["id"], deps=deps)
    await sim.drain()
    await submit_refund(container.uow(), refund["id"], deps=deps)
    assert (await client.get(f"/v1/refunds/{refund['id']}")).json()["status"] == "succeeded"
    clock.advance(timedelta(days=1))

    run = await _run(app, channel)

    assert run.status == "clean", run.report
    assert run.report["matched"] == 3
    assert run.report["bill"]["payments"] == 2
    assert run.report["bill"]["refunds"] == 1
    assert run.report["clearing"]["nets_to_zero"] is True
    assert run.report["settlement"]["posted"] is True
    settled = run.report["bill"]["settled"]
    assert (
        settled
        == run.report["bill"]["payment_amount"]
        - run.report["bill"]["refund_amount"]
        - run.report["bill"]["fees"]
    )

    lines = close_report_csv([run]).splitlines()
    assert lines[0].split(",")[:5] == ["business_day", "channel", "account", "attempt", "status"]
    assert lines[1].startswith(f"2026-11-01,{channel},")
    assert run_json(run)["report"]["clearing"]["residual"] == 0

    again = await _run(app, channel)
    assert again.attempt == 2
    assert again.status == "clean"
    assert again.report["settlement"]["posted"] is False
    assert again.report["previous"] == {"run_id": run.id, "attempt": 1, "bill_changed": False}
    assert await _count(engine, journal_entries, journal_entries.c.source.like("settlement:%")) == 1
    assert await _count(engine, reconciliation_runs) == 2
    report = await verify_ledger(uow)
    assert report.ok, report.problems


async def test_a_payment_the_gateway_took_but_we_never_heard_of_is_paid_once_by_the_run(
    app: FastAPI,
    client: httpx.AsyncClient,
    sim: Simulator,
    shop: dict[str, str],
    channel: str,
    clock: FrozenClock,
    engine: AsyncEngine,
    uow: UnitOfWork,
) -> None:
    payment = await _payment(client, shop, channel)
    await sim.pay(payment["id"])  # the notification is lost; no recovery ran
    assert (await client.get(f"/v1/payments/{payment['id']}")).json()["status"] != "succeeded"
    clock.advance(timedelta(days=1))

    runs = await asyncio.gather(_run(app, channel), _run(app, channel), return_exceptions=True)

    done = [r for r in runs if isinstance(r, RunRecord)]
    assert done, runs
    assert all(isinstance(r, (RunRecord, Conflict)) for r in runs), runs
    assert (await client.get(f"/v1/payments/{payment['id']}")).json()["status"] == "succeeded"
    source = f"payment:{payment['id']}"
    assert await _count(engine, journal_entries, journal_entries.c.source == source) == 1
    cases = [
        c for r in done for c in (await client.get(f"/v1/reconciliations/{r.id}")).json()["cases"]
    ]
    assert {c["status"] for c in cases} == {"resolved"}
    assert {c["resolution"] for c in cases} == {"recovered_paid_path"}
    assert await _count(engine, reconciliation_cases) == 1
    # A rerun finds the payment matched now and changes nothing.
    rerun = await _run(app, channel)
    assert rerun.report["recovered"] == []
    assert rerun.status == "clean", rerun.report
    assert await _count(engine, journal_entries, journal_entries.c.source == source) == 1
    report = await verify_ledger(uow)
    assert report.ok, report.problems


async def test_every_difference_the_simulator_is_told_to_make_becomes_a_case(
    app: FastAPI,
    client: httpx.AsyncClient,
    sim: Simulator,
    shop: dict[str, str],
    channel: str,
    clock: FrozenClock,
    engine: AsyncEngine,
    uow: UnitOfWork,
) -> None:
    dropped = await _paid(app, client, sim, shop, channel)
    bigger = await _paid(app, client, sim, shop, channel)
    costly = await _paid(app, client, sim, shop, channel)
    revoked = await _paid(app, client, sim, shop, channel)
    account = app.state.modes.live.registry.get(channel).app_id
    sim.bills.drop(dropped["id"])
    sim.bills.alter(bigger["id"], amount=bigger["amount"] + 100)
    sim.bills.alter(costly["id"], fee=999)
    sim.bills.add(account, "pay_never_opened_here", 5000, at=clock.now())
    if channel == "wechatpay":  # Alipay's trade bill lists only completed trades
        sim.bills.alter(revoked["id"], status="REVOKED")
    clock.advance(timedelta(days=1))

    run = await _run(app, channel)

    expected = {"ours_only": 1, "amount_mismatch": 1, "fee_mismatch": 1, "gateway_only": 1}
    if channel == "wechatpay":
        expected["status_mismatch"] = 1
    assert _kinds(run) == expected
    assert run.status == "differences"
    assert run.report["clearing"]["nets_to_zero"] is False
    # 短款 is flagged with what the gateway says, never reversed.
    assert (await client.get(f"/v1/payments/{dropped['id']}")).json()["status"] == "succeeded"
    assert "succeeded" in run.report["queries"][f"ours_only:payment:{dropped['id']}"]

    listed = (
        await client.get(
            "/v1/reconciliations", params={"channel": channel, "date": DAY.isoformat()}
        )
    ).json()
    assert [r["id"] for r in listed["data"]] == [run.id]
    bad_day = await client.get("/v1/reconciliations", params={"date": "30/11/2026"})
    assert bad_day.status_code == 422
    assert bad_day.json()["error"]["param"] == "date"
    missing = await client.get("/v1/reconciliations/rec_nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["param"] == "run_id"
    detail = (await client.get(f"/v1/reconciliations/{run.id}")).json()
    by_kind = {c["kind"]: c for c in detail["cases"]}
    assert set(by_kind) == set(expected)
    fee_case = by_kind["fee_mismatch"]
    assert fee_case["fee_gateway"] == 999
    assert fee_case["status"] == "open"

    resolved = await client.post(
        f"/v1/reconciliations/{run.id}/cases/{fee_case['id']}/resolve",
        json={"state": "resolved", "note": "the contract rate changed"},
    )
    assert resolved.status_code == 200, resolved.text
    async with uow:  # the API's change is in the audit trail, named by the key
        trail = (
            await uow.conn.execute(
                select(
                    audit_events.c.actor_kind, audit_events.c.actor, audit_events.c.subject
                ).where(audit_events.c.action == "reconciliation.case_resolved")
            )
        ).all()
        key_ids = set((await uow.conn.execute(select(api_keys.c.id))).scalars())
    assert [(kind, subject) for kind, _, subject in trail] == [("api_key", fee_case["id"])]
    assert trail[0][1] in key_ids
    assert resolved.json()["journal_source"] == f"reconciliation:{fee_case['id']}"
    twice = await client.post(
        f"/v1/reconciliations/{run.id}/cases/{fee_case['id']}/resolve",
        json={"state": "accepted", "note": "again"},
    )
    assert twice.status_code == 409
    assert twice.json()["error"]["code"] == "case_not_open"
    bad = await client.post(
        f"/v1/reconciliations/{run.id}/cases/{fee_case['id']}/resolve", json={"state": "gone"}
    )
    assert bad.status_code == 422
    assert (
        await _count(engine, journal_entries, journal_entries.c.source.like("reconciliation:%"))
        == 1
    )

    rerun = await _run(app, channel)
    assert rerun.report["new_cases"] == []
    assert await _count(engine, reconciliation_cases) == len(expected)
    report = await verify_ledger(uow)
    assert report.ok, report.problems


async def test_a_payment_paid_just_before_midnight_found_on_the_next_bill_is_no_alarm(
    app: FastAPI,
    client: httpx.AsyncClient,
    sim: Simulator,
    shop: dict[str, str],
    channel: str,
    clock: FrozenClock,
) -> None:
    clock.set(datetime(2026, 11, 1, 15, 59, 55, tzinfo=UTC))  # 23:59:55 in Beijing
    payment = await _paid(app, client, sim, shop, channel)
    # The gateway stamped it a few seconds later: it is on the next day's bill.
    sim.bills.alter(payment["id"], at=datetime(2026, 11, 1, 16, 0, 5, tzinfo=UTC))
    clock.set(datetime(2026, 11, 2, 9, 0, tzinfo=UTC))  # the 2nd's bill is not out yet

    first = await _run(app, channel)
    assert _kinds(first) == {"timing": 1}
    assert first.report["open_cases"] == 1  # waiting for the next day's bill

    clock.set(datetime(2026, 11, 3, 9, 0, tzinfo=UTC))
    next_day = await _run(app, channel, DAY + timedelta(days=1))
    assert _kinds(next_day) == {"timing": 1}
    assert next_day.status == "clean", next_day.report
    cases = (await client.get(f"/v1/reconciliations/{next_day.id}")).json()["cases"]
    assert [(c["kind"], c["status"], c["resolution"]) for c in cases] == [
        ("timing", "accepted", "matched_across_days")
    ]
    rerun = await _run(app, channel)
    assert rerun.status == "clean", rerun.report  # the next bill shows it now


async def test_a_malformed_bill_is_refused_with_nothing_written(
    app: FastAPI,
    client: httpx.AsyncClient,
    sim: Simulator,
    shop: dict[str, str],
    channel: str,
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    await _paid(app, client, sim, shop, channel)
    clock.advance(timedelta(days=1))
    book = sim.bills
    if channel == "alipay":
        book.alipay_bill = lambda app_id, day: b"PK\x03\x04 truncated"  # type: ignore[method-assign]
    else:
        book.wechat_trade_bill = lambda mchid, day: "交易时间,公众账号ID\n".encode()  # type: ignore[method-assign]
    from tuition.domain.reconciliation import BillMalformed

    with pytest.raises(BillMalformed):
        await _run(app, channel)
    assert await _count(engine, reconciliation_runs) == 0
    assert await _count(engine, reconciliation_cases) == 0
    assert await _count(engine, journal_entries, journal_entries.c.source.like("settlement:%")) == 0


async def test_an_operator_sees_the_runs_resolves_a_case_and_exports_the_cases(
    app: FastAPI,
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    sim: Simulator,
    shop: dict[str, str],
    channel: str,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    import re

    from tuition.services import admin as admin_service

    dropped = await _paid(app, client, sim, shop, channel)
    sim.bills.drop(dropped["id"])
    clock.advance(timedelta(days=1))
    run = await _run(app, channel)
    await admin_service.create_admin_user(uow, "ops@example.com", "a-long-enough-password", clock)
    browser = anon_client
    browser.headers["Accept-Language"] = "en"
    form = await browser.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    signed_in = await browser.post(
        "/admin/login",
        data={
            "email": "ops@example.com",
            "password": "a-long-enough-password",
            "csrf_token": token.group(1),
        },
    )
    assert signed_in.status_code == 303

    listing = await browser.get("/admin/reconciliations", params={"status": "open"})
    assert listing.status_code == 200
    assert run.id in listing.text
    assert dropped["id"] in listing.text
    assert "Asia/Shanghai" in listing.text
    page = await browser.get(f"/admin/reconciliations/{run.id}")
    assert page.status_code == 200
    case = (await client.get(f"/v1/reconciliations/{run.id}")).json()["cases"][0]
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    forged = await browser.post(
        f"/admin/reconciliations/{run.id}/cases/{case['id']}/resolve",
        data={"state": "accepted", "note": "x", "csrf_token": "forged"},
    )
    assert forged.status_code == 403
    done = await browser.post(
        f"/admin/reconciliations/{run.id}/cases/{case['id']}/resolve",
        data={
            "state": "accepted",
            "note": '=HYPERLINK("http://x.example") the buyer\'s bank reversed it',
            "csrf_token": csrf.group(1),
        },
    )
    assert done.status_code == 303
    after = (await client.get(f"/v1/reconciliations/{run.id}")).json()["cases"][0]
    assert after["status"] == "accepted"
    assert after["resolved_by"] == "admin:ops@example.com"
    exported = await browser.get("/admin/reconciliations/cases.csv", params={"channel": channel})
    assert exported.status_code == 200
    lines = exported.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("id,channel,account,business_day,kind")
    assert case["id"] in lines[1]
    assert ",accepted," in lines[1]
    # An operator's note is exported as typed, never as a formula a spreadsheet runs.
    [row] = list(csv.DictReader(lines))
    assert row["note"].startswith("'=HYPERLINK(")


async def test_a_wechat_pay_bill_that_does_not_match_its_signed_hash_changes_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    sim: Simulator,
    shop: dict[str, str],
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    import gzip

    await _paid(app, client, sim, shop, "wechatpay")
    clock.advance(timedelta(days=1))
    book = sim.bills
    keep = book._keep

    def tampered(content: bytes, kind: str) -> str:
        # The file changed on its way (or at rest): the signed answer's SHA-1 no longer fits.
        return keep(gzip.compress(gzip.decompress(content) + b" "), kind)

    book._keep = tampered  # type: ignore[method-assign]
    from tuition.domain.reconciliation import BillMalformed

    with pytest.raises(BillMalformed) as caught:
        await _run(app, "wechatpay")
    assert caught.value.code == "bill_hash_mismatch"
    assert await _count(engine, reconciliation_runs) == 0
    assert await _count(engine, reconciliation_cases) == 0


async def test_a_run_that_dies_after_recovering_a_payment_converges_when_run_again(
    app: FastAPI,
    client: httpx.AsyncClient,
    sim: Simulator,
    shop: dict[str, str],
    channel: str,
    clock: FrozenClock,
    engine: AsyncEngine,
    uow: UnitOfWork,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tuition.store.reconciliation import ReconciliationRepository

    payment = await _payment(client, shop, channel)
    await sim.pay(payment["id"])
    clock.advance(timedelta(days=1))

    async def crash(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("killed between the paid path and recording the run")

    with monkeypatch.context() as patch:
        patch.setattr(ReconciliationRepository, "add_run", crash)
        with pytest.raises(RuntimeError):
            await _run(app, channel)
    assert (await client.get(f"/v1/payments/{payment['id']}")).json()["status"] == "succeeded"
    assert await _count(engine, reconciliation_runs) == 0

    again = await _run(app, channel)

    assert again.status == "clean", again.report
    assert again.attempt == 1
    source = f"payment:{payment['id']}"
    assert await _count(engine, journal_entries, journal_entries.c.source == source) == 1
    report = await verify_ledger(uow)
    assert report.ok, report.problems


async def test_a_refund_missing_from_the_bill_is_a_short_case_and_clearing_does_not_net(
    app: FastAPI,
    client: httpx.AsyncClient,
    sim: Simulator,
    shop: dict[str, str],
    channel: str,
    clock: FrozenClock,
) -> None:
    from tuition.services.payments import submit_refund

    payment = await _paid(app, client, sim, shop, channel)
    refund = await post(client, "/v1/refunds", {"payment_id": payment["id"]})
    container = app.state.modes.live
    deps = PaymentDeps(container.registry, container.clock, container.settings.base_url)
    await submit_refund(container.uow(), refund["id"], deps=deps)
    await sim.drain()
    await submit_refund(container.uow(), refund["id"], deps=deps)
    sim.bills.drop(refund["id"])
    clock.advance(timedelta(days=1))

    run = await _run(app, channel)

    assert _kinds(run) == {"ours_only": 1}
    cases = (await client.get(f"/v1/reconciliations/{run.id}")).json()["cases"]
    assert [(c["subject"], c["refund_id"]) for c in cases] == [("refund", refund["id"])]
    assert run.report["clearing"]["nets_to_zero"] is False
    assert (await client.get(f"/v1/refunds/{refund['id']}")).json()["status"] == "succeeded"


async def test_the_worker_reconciles_yesterday_once_each_morning(
    app: FastAPI,
    client: httpx.AsyncClient,
    sim: Simulator,
    shop: dict[str, str],
    clock: FrozenClock,
    engine: AsyncEngine,
) -> None:
    from tuition.worker.runner import Worker, WorkerConfig

    await _paid(app, client, sim, shop, "alipay")
    await _paid(app, client, sim, shop, "wechatpay")
    worker = Worker(app.state.modes.live, WorkerConfig(sweep_interval=timedelta(seconds=0)))
    try:
        clock.set(datetime(2026, 11, 2, 1, 0, tzinfo=UTC))  # 09:00 in Beijing: too early
        await worker.run_once()
        day = reconciliation_runs.c.business_day == DAY.isoformat()
        assert await _count(engine, reconciliation_runs, day) == 0
        clock.set(datetime(2026, 11, 2, 3, 0, tzinfo=UTC))  # 11:00: the bills are out
        await worker.run_once()
        await worker.run_once()
        clock.advance(timedelta(hours=2))
        await worker.run_once()
    finally:
        await worker.close()
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(reconciliation_runs.c.channel, reconciliation_runs.c.status).where(day)
            )
        ).all()
    assert sorted(rows) == [("alipay", "clean"), ("wechatpay", "clean")]


async def test_the_simulators_bill_plan_is_driven_over_its_control_api() -> None:
    from tuition.simulator.app import create_simulator

    simulator = create_simulator()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=simulator.app), base_url="http://sim"
    ) as control:
        changed = await control.post(
            "/_control/bills",
            json={
                "drop": ["pay_C"],
                "alter": {"pay_E": {"fee": 999}, "pay_G": {"at": "2026-11-30T16:00:05Z"}},
                "add": [
                    {
                        "app_id": "m",
                        "out_trade_no": "pay_X",
                        "amount": 5000,
                        "at": "2026-11-30T04:00:00Z",
                    }
                ],
            },
        )
        assert changed.status_code == 200
        plan = simulator.bills.plan
        assert plan.dropped == {"pay_C"}
        assert plan.altered["pay_E"] == {"fee": 999}
        assert [row.out_trade_no for row in plan.added] == ["pay_X"]
        assert [row.reference for row in simulator.bills.rows("m", date(2026, 11, 30))] == ["pay_X"]
        bad = await control.post("/_control/bills", json={"alter": {"pay_E": {"colour": 1}}})
        assert bad.status_code == 400
        assert (await control.delete("/_control/bills")).status_code == 200
        assert not plan.dropped
        assert not plan.altered
        assert not plan.added
    await simulator.aclose()


async def test_a_rerun_on_a_changed_bill_reports_the_change_and_replaces_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    sim: Simulator,
    shop: dict[str, str],
    channel: str,
    clock: FrozenClock,
    engine: AsyncEngine,
    uow: UnitOfWork,
) -> None:
    payment = await _paid(app, client, sim, shop, channel)
    clock.advance(timedelta(days=1))
    first = await _run(app, channel)
    assert first.status == "clean", first.report
    posted = first.report["settlement"]["amount"]

    sim.bills.alter(payment["id"], fee=777)  # the gateway reissued the bill
    again = await _run(app, channel)

    assert again.status == "differences"
    assert again.report["previous"]["bill_changed"] is True
    assert again.report["settlement"]["differs"] is True
    assert again.report["settlement"]["already_posted"] == posted
    assert again.report["new_cases"] == [f"fee_mismatch:payment:{payment['id']}"]
    settlements = journal_entries.c.source.like("settlement:%")
    assert await _count(engine, journal_entries, settlements) == 1
    old = (await client.get(f"/v1/reconciliations/{first.id}")).json()
    assert old["status"] == "clean"  # the first attempt's report stays as it was
    report = await verify_ledger(uow)
    assert report.ok, report.problems
