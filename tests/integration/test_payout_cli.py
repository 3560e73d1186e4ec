"""``tuition payouts run`` against a real SQLite file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tuition.cli import app as cli
from tuition.config import get_settings
from tuition.store import schema
from tuition.store.db import create_engine


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
        assert "0 payout(s)" in ran.output
        assert "-W" in ran.output  # a weekly period such as 2026-W49
        bad = runner.invoke(cli, ["payouts", "run", "--schedule", "yearly"])
        assert bad.exit_code == 2
        verified = runner.invoke(cli, ["ledger", "verify"])
        assert verified.exit_code == 0, verified.output
        assert "held earnings match pending" in verified.output
    finally:
        get_settings.cache_clear()
