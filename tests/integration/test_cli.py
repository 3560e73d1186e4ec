"""The `tuition` command on a real SQLite file."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from tuition.cli import DEMO_ENVIRONMENT, app
from tuition.config import get_settings

runner = CliRunner()


@pytest.fixture
def db_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "cli.db"
    monkeypatch.setenv("TUITION_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def test_serve_refuses_an_unmigrated_database_and_says_how_to_fix_it(db_file: Path) -> None:
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 1
    assert "tuition migrate" in result.output


def test_keys_can_be_created_listed_and_revoked(db_file: Path) -> None:
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    created = runner.invoke(app, ["keys", "create", "--name", "shop", "--mode", "live"])
    assert created.exit_code == 0, created.output
    secret = created.output.strip().splitlines()[-1]
    assert secret.startswith("sk_live_")
    key_id = created.output.split()[1]
    listed = runner.invoke(app, ["keys", "list"])
    assert key_id in listed.output
    assert secret not in listed.output
    assert runner.invoke(app, ["keys", "revoke", key_id]).exit_code == 0
    again = runner.invoke(app, ["keys", "revoke", key_id])
    assert again.exit_code == 1
    assert "no active API key" in again.output


def test_each_mode_has_its_own_store_and_keys(db_file: Path) -> None:
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    test_store = db_file.with_name("cli.test.db")
    assert test_store.exists()  # migrate brings both modes' stores up to date
    test_key = runner.invoke(app, ["keys", "create", "--name", "t", "--mode", "test"])
    live_key = runner.invoke(app, ["keys", "create", "--name", "l", "--mode", "live"])
    assert test_key.exit_code == live_key.exit_code == 0, test_key.output
    listed = runner.invoke(app, ["keys", "list"]).output
    assert "test" in listed
    assert "live" in listed
    # Commands work on live mode's store unless told otherwise.
    for mode in ("live", "test"):
        verified = runner.invoke(app, ["--mode", mode, "ledger", "verify"])
        assert verified.exit_code == 0, verified.output
    test_id = test_key.output.split()[1]
    assert runner.invoke(app, ["keys", "revoke", test_id]).exit_code == 0


def test_bad_configuration_exits_with_a_message_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TUITION_DATABASE_URL", "nonsense")
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["migrate"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "TUITION_DATABASE_URL" in result.output


def test_serve_refuses_fewer_than_one_worker(db_file: Path) -> None:
    result = runner.invoke(app, ["serve", "--workers", "0"])
    assert result.exit_code == 2
    assert "--workers" in result.output


def _fails_in_one_line(result: Result, setting: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert setting in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://tuition:hunter2-password@127.0.0.1:1/tuition",
        "sqlite+aiosqlite:////nonexistent/directory/tuition.db",
    ],
)
@pytest.mark.parametrize("command", [["migrate"], ["worker"], ["keys", "list"]])
def test_an_unreachable_database_is_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, url: str, command: list[str]
) -> None:
    monkeypatch.setenv("TUITION_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, command)
    finally:
        get_settings.cache_clear()
    _fails_in_one_line(result, "TUITION_DATABASE_URL")
    assert "hunter2-password" not in result.output


def test_a_list_setting_that_is_not_json_is_one_line_naming_it(
    db_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUITION_CHANNELS", "sandbox,alipay")
    get_settings.cache_clear()
    _fails_in_one_line(runner.invoke(app, ["migrate"]), "TUITION_CHANNELS")


def test_demo_on_a_busy_port_stops_before_printing_credentials(
    db_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (*DEMO_ENVIRONMENT, "TUITION_PORT"):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # demo sets them; restore after
        monkeypatch.delenv(name)
    monkeypatch.setenv("TUITION_SIMULATOR_KEY_FILE", str(db_file.parent / "sim.pem"))
    monkeypatch.setenv("TUITION_SECRET_KEY_FILE", str(db_file.parent / "secret"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["demo", "--port", str(port)])
    assert result.exit_code == 1, result.output
    assert "already in use" in result.output
    assert "sk_test_" not in result.output
    assert "checkout" not in result.output
    assert not db_file.exists()  # nothing was set up either


def test_version_is_printed() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"tuition {version('tuition')}"


def test_every_command_knows_the_coin_unit_before_it_touches_prices(
    db_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuition.domain import money

    monkeypatch.setattr(
        money, "CURRENCIES", {c: u for c, u in money.CURRENCIES.items() if not u.virtual}
    )
    monkeypatch.setenv("TUITION_COINS", '{"code": "XBK", "name": "书币", "decimals": 0}')
    get_settings.cache_clear()
    try:
        assert runner.invoke(app, ["migrate"]).exit_code == 0
        assert money.CURRENCIES["XBK"].virtual  # the demo seeds a coin pack right after
    finally:
        get_settings.cache_clear()
