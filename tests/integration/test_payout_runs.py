"""Payout runs on both engines with the clock injected: proposed (what each payee would
get, nothing moves), approved by an operator (who and when) before any money moves,
paid once however often or concurrently it is approved or executed, an item no longer
covered skipped with the reason, and failed payouts retried once."""

from __future__ import annotations

import asyncio
from datetime import datetime

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.shop import post
from tests.integration.test_payouts import (  # noqa: F401
    _balance,
    _bank,
    _books_clean,
    _sell,
    seller,
)
from tuition.clock import FrozenClock
from tuition.domain.errors import Conflict
from tuition.services import payout_runs as payout_runs_module
from tuition.services.payout_runs import (
    approve_run,
    execute_run,
    propose_run,
    retry_failed,
    view_run,
)
from tuition.services.payouts import TAX_ZONE, PayoutDeps, mark_failed
from tuition.simulator.app import Simulator
from tuition.store.uow import UnitOfWork

FINANCE = "admin:fin@example.com"


async def _proposed(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> tuple[str, PayoutDeps]:
    clock.set(datetime(2026, 11, 2, tzinfo=TAX_ZONE))
    await _sell(app, client, gateway, clock, seller, "u_1")
    await _bank(client, seller["creator"])
    deps = PayoutDeps(clock=clock)
    run, new = await propose_run(uow, schedule="monthly", proposed_by="worker", deps=deps)
    assert new
    return run.id, deps


async def test_a_proposed_run_shows_what_each_payee_would_get_and_moves_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    run_id, deps = await _proposed(app, client, gateway, clock, seller, uow)
    again, new = await propose_run(uow, schedule="monthly", proposed_by="cli", deps=deps)
    assert (again.id, new, again.period, again.status) == (run_id, False, "2026-11", "proposed")
    view = await view_run(uow, run_id)
    [item] = view.items
    # ¥5,000 available; 5,000 > 4,000: taxable 4,000, tax 800 (as the payout would).
    assert (item.payee_id, item.amount, item.tax_estimate, item.status) == (
        seller["creator"],
        500000,
        80000,
        "proposed",
    )
    assert view.names[seller["creator"]] == "Bo"
    balance = await _balance(client, seller["creator"])
    assert (balance["available"], balance["in_payout"]) == (500000, 0)
    listed = (await client.get("/v1/payouts")).json()["data"]
    assert listed == []
    await _books_clean(uow)


async def test_approval_records_the_operator_and_pays_once_however_often_it_is_asked(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    run_id, deps = await _proposed(app, client, gateway, clock, seller, uow)
    view = await approve_run(uow, run_id, operator=FINANCE, deps=deps)
    assert (view.run.status, view.run.approved_by, view.run.approved_at) == (
        "approved",
        FINANCE,
        clock.now(),
    )
    [item] = view.items
    payout = view.payouts[item.payout_id or ""]
    assert (item.status, payout.amount, payout.tax_withheld, payout.status.value) == (
        "created",
        500000,
        80000,
        "pending",
    )
    with pytest.raises(Conflict) as refused:
        await approve_run(uow, run_id, operator="admin:other@example.com", deps=deps)
    assert refused.value.code == "payout_run_approved"
    await execute_run(uow, run_id, deps=deps)  # again, as after a crash: nothing new
    assert len((await client.get("/v1/payouts")).json()["data"]) == 1
    assert (await _balance(client, seller["creator"]))["in_payout"] == 420000
    await _books_clean(uow)


async def test_concurrent_approvals_and_executions_pay_each_payee_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    run_id, deps = await _proposed(app, client, gateway, clock, seller, uow)
    engine = app.state.modes.live.engine
    results = await asyncio.gather(
        *(
            approve_run(UnitOfWork(engine), run_id, operator=f"admin:{n}@x.com", deps=deps)
            for n in range(3)
        ),
        *(execute_run(UnitOfWork(engine), run_id, deps=deps) for _ in range(2)),
        return_exceptions=True,
    )
    approvals = [r for r in results[:3] if not isinstance(r, BaseException)]
    assert len(approvals) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
    await execute_run(uow, run_id, deps=deps)
    assert len((await client.get("/v1/payouts")).json()["data"]) == 1
    assert (await _balance(client, seller["creator"]))["in_payout"] == 420000
    await _books_clean(uow)


async def test_an_item_no_longer_covered_is_skipped_and_nothing_more_than_approved_is_paid(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    run_id, deps = await _proposed(app, client, gateway, clock, seller, uow)
    # Paid out by hand between the proposal and the approval.
    made = await client.post(
        "/v1/payouts", json={"payee_id": seller["creator"], "currency": "CNY", "amount": 100000}
    )
    assert made.status_code == 201, made.text
    await _sell(app, client, gateway, clock, seller, "u_2")  # 500,000 more since
    view = await approve_run(uow, run_id, operator=FINANCE, deps=deps)
    [item] = view.items
    assert item.status == "created"  # 900,000 available covers the 500,000 approved
    assert view.payouts[item.payout_id or ""].amount == 500000
    assert (await _balance(client, seller["creator"]))["available"] == 400000
    await _books_clean(uow)


async def test_an_item_whose_money_is_gone_is_skipped_with_the_reason(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    run_id, deps = await _proposed(app, client, gateway, clock, seller, uow)
    made = await client.post(
        "/v1/payouts", json={"payee_id": seller["creator"], "currency": "CNY", "amount": 100000}
    )
    assert made.status_code == 201, made.text
    view = await approve_run(uow, run_id, operator=FINANCE, deps=deps)
    [item] = view.items
    assert (item.status, item.payout_id) == ("skipped", None)
    assert item.reason is not None
    assert "400000 available, not 500000" in item.reason
    assert (await _balance(client, seller["creator"]))["available"] == 400000
    await _books_clean(uow)


async def test_a_failed_payout_of_the_run_is_retried_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    run_id, deps = await _proposed(app, client, gateway, clock, seller, uow)
    view = await approve_run(uow, run_id, operator=FINANCE, deps=deps)
    [item] = view.items
    first = item.payout_id or ""
    await mark_failed(uow, first, code="ACCOUNT_CLOSED", message="closed", deps=deps)
    assert (await _balance(client, seller["creator"]))["available"] == 500000
    retried = await retry_failed(uow, run_id, operator=FINANCE, deps=deps)
    [item] = retried.items
    assert item.payout_id not in (None, first)
    again = await retry_failed(uow, run_id, operator=FINANCE, deps=deps)
    assert again.items[0].payout_id == item.payout_id  # the retry is pending: nothing more
    payouts = (await client.get("/v1/payouts")).json()["data"]
    assert sorted(p["status"] for p in payouts) == ["failed", "pending"]
    assert (await _balance(client, seller["creator"]))["in_payout"] == 420000
    await _books_clean(uow)


async def test_a_run_cannot_be_executed_before_it_is_approved(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    run_id, deps = await _proposed(app, client, gateway, clock, seller, uow)
    with pytest.raises(Conflict) as refused:
        await execute_run(uow, run_id, deps=deps)
    assert refused.value.code == "payout_run_not_approved"
    assert (await client.get("/v1/payouts")).json()["data"] == []


async def test_a_crash_between_two_payouts_of_a_run_is_finished_once_by_the_next_execution(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock.set(datetime(2026, 11, 2, tzinfo=TAX_ZONE))
    other = await post(client, "/v1/creators", {"name": "Cy", "default_revenue_share": "0.5"})
    course = await post(
        client,
        "/v1/products",
        {
            "creator_id": other["id"],
            "title": "Also big",
            "kind": "course",
            "prices": {"CNY": 1000000},
        },
    )
    await _sell(app, client, gateway, clock, seller, "u_1")
    await _sell(
        app, client, gateway, clock, {"creator": other["id"], "course": course["id"]}, "u_2"
    )
    for payee in (seller["creator"], other["id"]):
        await _bank(client, payee)
    deps = PayoutDeps(clock=clock)
    run, _new = await propose_run(uow, schedule="monthly", proposed_by="worker", deps=deps)
    assert len((await view_run(uow, run.id)).items) == 2

    made = 0
    real = payout_runs_module.create_payout

    async def crash_after_the_first(*args: object, **kwargs: object) -> object:
        nonlocal made
        if made == 1:
            raise ConnectionError("the process died between two payouts")
        made += 1
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(payout_runs_module, "create_payout", crash_after_the_first)
    with pytest.raises(ConnectionError):
        await approve_run(uow, run.id, operator=FINANCE, deps=deps)
    assert len((await client.get("/v1/payouts")).json()["data"]) == 1
    monkeypatch.setattr(payout_runs_module, "create_payout", real)
    view = await execute_run(uow, run.id, deps=deps)  # what the worker's next sweep does
    assert [i.status for i in view.items] == ["created", "created"]
    assert len((await client.get("/v1/payouts")).json()["data"]) == 2
    await execute_run(uow, run.id, deps=deps)
    assert len((await client.get("/v1/payouts")).json()["data"]) == 2
    await _books_clean(uow)


async def test_a_crash_after_a_payout_before_its_item_is_linked_links_it_next_time(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The payout committed, the process died before the run's item named it: the next
    execution finds the payout by its run key (it is not "short of money")."""
    run_id, deps = await _proposed(app, client, gateway, clock, seller, uow)
    real = payout_runs_module._settle

    async def dies_before_the_link(*args: object, **kwargs: object) -> object:
        if kwargs.get("status") == "created":
            raise ConnectionError("died after the payout committed, before the link")
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(payout_runs_module, "_settle", dies_before_the_link)
    with pytest.raises(ConnectionError):
        await approve_run(uow, run_id, operator="admin:ops@example.com", deps=deps)
    monkeypatch.setattr(payout_runs_module, "_settle", real)
    view = await execute_run(uow, run_id, deps=deps)
    payouts = (await client.get("/v1/payouts")).json()["data"]
    assert len(payouts) == 1
    assert [(i.status, i.payout_id) for i in view.items] == [("created", payouts[0]["id"])]


async def test_a_transfer_payout_is_never_marked_by_hand(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    """Its outcome is the gateway's: marked failed here while WeChat still pays it, the
    money would be available again and paid twice."""
    from tuition.services.payouts import mark_paid

    await _proposed(app, client, gateway, clock, seller, uow)
    made = await post(client, "/v1/payouts", {"payee_id": seller["creator"], "currency": "CNY"})
    async with uow:  # as if it had gone out as a WeChat Pay transfer
        await uow.conn.exec_driver_sql("UPDATE payouts SET method = 'wechatpay'")
        await uow.commit()
    for refused in (
        mark_failed(uow, made["id"], code="x", message="y", deps=PayoutDeps(clock=clock)),
        mark_paid(uow, made["id"], reference="bank-1", deps=PayoutDeps(clock=clock)),
    ):
        with pytest.raises(Conflict) as error:
            await refused
        assert error.value.code == "payout_not_manual"


async def test_approval_pays_the_accounts_the_run_was_proposed_with(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    """The approver approves what the run's page shows: an account changed between the
    proposal and the approval is flagged, and the money still goes to the one shown."""
    run_id, deps = await _proposed(app, client, gateway, clock, seller, uow)
    [shown] = (await view_run(uow, run_id)).items
    assert (await view_run(uow, run_id)).approved_to(shown) == "************1234"
    changed = await client.post(
        f"/v1/payees/{seller['creator']}",
        json={"payout_method": "bank", "payout_account": "6222029999995678"},
    )
    assert changed.status_code == 200, changed.text
    before = await view_run(uow, run_id)
    assert before.changed == frozenset({seller["creator"]})
    view = await approve_run(uow, run_id, operator=FINANCE, deps=deps)
    payout = view.payouts[view.items[0].payout_id or ""]
    assert payout.destination == "************1234"


async def test_an_approved_run_pays_the_account_it_was_approved_with(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_id, deps = await _proposed(app, client, gateway, clock, seller, uow)
    real = payout_runs_module.create_payout

    async def crash(*args: object, **kwargs: object) -> object:
        raise ConnectionError("the process died after the approval, before any payout")

    monkeypatch.setattr(payout_runs_module, "create_payout", crash)
    with pytest.raises(ConnectionError):
        await approve_run(uow, run_id, operator=FINANCE, deps=deps)
    monkeypatch.setattr(payout_runs_module, "create_payout", real)
    # After approval someone points the payee at another account: the run's money
    # still goes where the approver saw it going.
    changed = await client.post(
        f"/v1/payees/{seller['creator']}",
        json={"payout_method": "bank", "payout_account": "6222029999995678"},
    )
    assert changed.status_code == 200, changed.text
    view = await view_run(uow, run_id)
    [item] = view.items
    assert view.approved_to(item) == "************1234"
    assert view.changed == frozenset({seller["creator"]})
    assert "6222020000001234" not in repr(item)
    view = await execute_run(uow, run_id, deps=deps)
    payout = view.payouts[view.items[0].payout_id or ""]
    assert payout.destination == "************1234"
    got = (await client.get(f"/v1/payouts/{payout.id}")).json()
    assert got["destination"] == "************1234"
    batch = (await client.post("/v1/payouts/bank_batch")).json()
    [_header, row] = batch["csv"].splitlines()
    assert "6222020000001234" in row
    assert "5678" not in row
    # A payout made by hand now goes to the payee's new account.
    await _sell(app, client, gateway, clock, seller, "u_2")
    later = await post(client, "/v1/payouts", {"payee_id": seller["creator"], "currency": "CNY"})
    assert later["destination"] == "************5678"
    await _books_clean(uow)
