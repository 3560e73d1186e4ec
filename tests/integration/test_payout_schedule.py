"""The worker's payout schedule on both engines with the clock injected: each period's
run is proposed once (nothing moves until it is approved), auto-approved and paid once
when TUITION_PAYOUT_AUTO_APPROVE says so, and a period nobody is due gets no run."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.test_payouts import (  # noqa: F401
    _balance,
    _bank,
    _books_clean,
    _sell,
    seller,
)
from tuition.clock import FrozenClock
from tuition.config import Settings, load_settings
from tuition.container import Container
from tuition.services.payout_runs import AUTO_APPROVER
from tuition.services.payouts import TAX_ZONE
from tuition.simulator.app import Simulator
from tuition.store.uow import UnitOfWork
from tuition.worker.runner import Worker, WorkerConfig


@pytest.fixture
def settings(db_url: str, request: pytest.FixtureRequest) -> Settings:
    overrides: dict[str, Any] = getattr(request, "param", {})
    return load_settings(database_url=db_url, **overrides)


def _worker(app: FastAPI) -> Worker:
    return Worker(app.state.modes.live, WorkerConfig(sweep_interval=timedelta(0)))


async def _runs(uow: UnitOfWork) -> list[tuple[str, str, str | None]]:
    async with uow:
        runs = await uow.payout_runs.listing(limit=10)
    return [(r.period, r.status, r.approved_by) for r in reversed(runs)]


async def test_each_period_gets_one_proposed_run_and_nothing_moves_before_approval(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    clock.set(datetime(2026, 11, 2, tzinfo=TAX_ZONE))
    await _worker(app).run_once()
    assert await _runs(uow) == []  # nobody due: no run
    await _sell(app, client, gateway, clock, seller, "u_1")
    await _bank(client, seller["creator"])
    for _ in range(3):
        await _worker(app).run_once()
    await asyncio.gather(*(_worker(app).run_once() for _ in range(3)))
    assert await _runs(uow) == [("2026-11", "proposed", None)]
    assert (await _balance(client, seller["creator"]))["available"] == 500000
    assert (await client.get("/v1/payouts")).json()["data"] == []
    clock.set(datetime(2026, 12, 1, 0, 1, tzinfo=TAX_ZONE))
    await _worker(app).run_once()
    assert await _runs(uow) == [("2026-11", "proposed", None), ("2026-12", "proposed", None)]
    await _books_clean(uow)


@pytest.mark.parametrize("settings", [{"payout_auto_approve": True}], indirect=True)
async def test_an_auto_approved_schedule_pays_each_period_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    clock.set(datetime(2026, 11, 2, tzinfo=TAX_ZONE))
    await _sell(app, client, gateway, clock, seller, "u_1")
    await _bank(client, seller["creator"])
    await asyncio.gather(*(_worker(app).run_once() for _ in range(3)))
    await _worker(app).run_once()
    assert await _runs(uow) == [("2026-11", "approved", AUTO_APPROVER)]
    [payout] = (await client.get("/v1/payouts")).json()["data"]
    assert (payout["amount"], payout["tax_withheld"]) == (500000, 80000)
    assert payout["requested_by"].startswith("run:prun_")
    await _sell(app, client, gateway, clock, seller, "u_2")  # more this month: next period
    await _worker(app).run_once()
    assert len((await client.get("/v1/payouts")).json()["data"]) == 1
    assert (await _balance(client, seller["creator"]))["available"] == 500000
    await _books_clean(uow)


@pytest.mark.parametrize("settings", [{"test_payout_auto_approve": True}], indirect=True)
async def test_auto_approval_is_set_per_mode(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
) -> None:
    # Both modes share this test's store: only the mode's own setting may approve.
    clock.set(datetime(2026, 11, 2, tzinfo=TAX_ZONE))
    await _sell(app, client, gateway, clock, seller, "u_1")
    await _bank(client, seller["creator"])
    await _worker(app).run_once()
    await _worker(app).run_once()
    assert await _runs(uow) == [("2026-11", "proposed", None)]  # live: an operator approves
    assert (await client.get("/v1/payouts")).json()["data"] == []
    live = app.state.modes.live
    as_test = Container(live.settings, live.engine, live.clock, live.registry, mode="test")
    test_mode = Worker(as_test, WorkerConfig(sweep_interval=timedelta(0)))
    await test_mode.run_once()
    assert await _runs(uow) == [("2026-11", "approved", AUTO_APPROVER)]
    assert len((await client.get("/v1/payouts")).json()["data"]) == 1
    await _books_clean(uow)


def test_each_mode_reads_its_own_auto_approve_setting() -> None:
    live_only = load_settings(payout_auto_approve=True)
    assert (live_only.auto_approves_payouts("live"), live_only.auto_approves_payouts("test")) == (
        True,
        False,
    )
    test_only = load_settings(test_payout_auto_approve=True)
    assert (test_only.auto_approves_payouts("live"), test_only.auto_approves_payouts("test")) == (
        False,
        True,
    )
