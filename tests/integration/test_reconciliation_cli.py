"""``tuition reconcile``: its options, and a clear refusal for a channel without bills."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tuition.cli import app
from tuition.config import get_settings

runner = CliRunner()


@pytest.fixture
def db_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "cli.db"
    monkeypatch.setenv("TUITION_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--channel", "alipay", "--all"],
        ["--channel", "alipay", "--date", "30/11/2026"],
        ["--all", "--format", "xml"],
    ],
)
def test_reconcile_refuses_unclear_options(db_file: Path, args: list[str]) -> None:
    result = runner.invoke(app, ["reconcile", *args])
    assert result.exit_code == 2, result.output


def test_reconcile_names_a_channel_that_has_no_bills(db_file: Path) -> None:
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    day = ["--channel", "sandbox", "--date", "2026-11-30"]
    result = runner.invoke(app, ["--mode", "test", "reconcile", *day])
    assert result.exit_code == 1
    assert "channel_has_no_bills" in result.output
    live = runner.invoke(app, ["reconcile", *day])  # the sandbox is test mode's only
    assert live.exit_code == 1
    assert "channel_unknown" in live.output


def test_reconcile_all_with_no_bill_channels_reports_nothing_and_succeeds(db_file: Path) -> None:
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    result = runner.invoke(app, ["reconcile", "--all", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "[]"
