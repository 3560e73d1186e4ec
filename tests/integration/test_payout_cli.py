"""``tuition payouts run``: against a real SQLite file, and through the payout run's
approval on both engines (propose; pay an approved run, or one the mode auto-approves)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from fastapi import FastAPI
from typer.testing import CliRunner

from tests.integration.test_payouts import (  # noqa: F401
    _balance,
    _bank,
    _books_clean,
    _sell,
    seller,
)
from tuition.cli import app as cli
from tuition.clock import FrozenClock
from tuition.config import get_settings
from tuition.services.payout_runs import AUTO_APPROVER
from tuition.simulator.app import Simulator
from tuition.store import schema
from tuition.store.db import create_engine
from tuition.store.uow import UnitOfWork


def test_payouts_run_pays_nobody_on_an_empty_ledger_and_refuses_an_unknown_schedule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'payouts.db'}"
    monkeypatch.setenv("TUITION_DATABASE_URL", url)
    get_settings.cache_clear()

    async def migrate() -> None:
        engine = create_engine(url)
        try:
            await schema.upgrade(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(migrate())
        runner = CliRunner()
        ran = runner.invoke(cli, ["payouts", "run", "--schedule", "weekly"])
        assert ran.exit_code == 0, ran.output
        assert "nobody is due a payout; 0 payout(s)" in ran.output
        assert "-W" in ran.output  # a weekly period such as 2026-W49
        bad = runner.invoke(cli, ["payouts", "run", "--schedule", "yearly"])
        assert bad.exit_code == 2
        verified = runner.invoke(cli, ["ledger", "verify"])
        assert verified.exit_code == 0, verified.output
        assert "held earnings match pending" in verified.output
    finally:
        get_settings.cache_clear()


async def test_payouts_run_proposes_and_pays_only_an_approved_run(
    app: FastAPI,
    client: httpx.AsyncClient,
    gateway: Simulator,
    clock: FrozenClock,
    seller: dict[str, str],  # noqa: F811
    uow: UnitOfWork,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TUITION_DATABASE_URL", db_url)
    runner = CliRunner()

    async def run(*args: str) -> Result:
        get_settings.cache_clear()
        try:
            return await asyncio.to_thread(runner.invoke, cli, ["payouts", "run", *args])
        finally:
            get_settings.cache_clear()

    await _sell(app, client, gateway, clock, seller, "u_1")
    await _bank(client, seller["creator"])
    for _ in range(2):  # running it again proposes nothing new and pays nothing
        ran = await run("--schedule", "monthly")
        assert ran.exit_code == 0, ran.output
        assert "awaits approval" in ran.output
        assert "nothing paid" in ran.output
        assert "TUITION_PAYOUT_AUTO_APPROVE" in ran.output
        assert (await client.get("/v1/payouts")).json()["data"] == []
    async with uow:
        [proposed] = await uow.payout_runs.listing(limit=10)
    assert (proposed.status, proposed.proposed_by) == ("proposed", "cli")
    assert (await _balance(client, seller["creator"]))["available"] == 500000
    # Approved (on the console) but not yet paid, as after a crash: the command pays it.
    async with uow:
        assert await uow.payout_runs.approve(proposed.id, operator="op_finance", at=clock.now())
        await uow.commit()
    for _ in range(2):
        ran = await run("--schedule", "monthly")
        assert ran.exit_code == 0, ran.output
        assert "approved by op_finance: 1 payout(s)" in ran.output, ran.output
    [payout] = (await client.get("/v1/payouts")).json()["data"]
    assert (payout["amount"], payout["tax_withheld"]) == (500000, 80000)
    # The mode's auto-approve setting stands for the approval.
    await _sell(app, client, gateway, clock, seller, "u_2")
    monkeypatch.setenv("TUITION_PAYOUT_AUTO_APPROVE", "true")
    ran = await run("--schedule", "weekly")
    assert ran.exit_code == 0, ran.output
    assert f"approved by {AUTO_APPROVER}: 1 payout(s)" in ran.output, ran.output
    assert len((await client.get("/v1/payouts")).json()["data"]) == 2
    await _books_clean(uow)
