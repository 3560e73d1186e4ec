"""No secret reaches a log line when database statements fail with secrets bound."""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.secret_probe import PLAIN_CANARY, TOKEN
from tuition.clock import FrozenClock
from tuition.services.webhooks import create_endpoint
from tuition.store.uow import UnitOfWork
from tuition.store.work import Endpoint

ROOT = Path(__file__).resolve().parents[2]


def test_database_errors_with_secrets_in_flight_log_no_secret(db_url: str) -> None:
    probe = subprocess.run(
        [sys.executable, "-m", "tests.integration.secret_probe", db_url],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = probe.stdout + probe.stderr
    assert probe.returncode == 0, output[-3000:]
    # The failures were logged, tracebacks and all ...
    assert "api answered 500" in output
    assert output.count('"event": "unhandled_error"') >= 2, output[-3000:]
    assert '"event": "worker_iteration_failed"' in output
    assert "Exception in ASGI application" in output
    assert "IntegrityError" in output
    # ... and no secret, nor any part of one, is in them.
    for secret in (TOKEN, PLAIN_CANARY, TOKEN[:12]):
        assert secret not in output, output[output.find(secret) - 500 : output.find(secret) + 200]


def _rendered(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


async def test_a_failed_statement_quotes_no_bound_value_in_its_exception_chain(
    engine: AsyncEngine, uow: UnitOfWork, clock: FrozenClock
) -> None:
    endpoint = await create_endpoint(
        uow, url="https://platform.example/h", events=["*"], description="", clock=clock
    )
    with pytest.raises(IntegrityError) as duplicate:
        await _add(uow, replace(endpoint, secret=f"x{PLAIN_CANARY}"))
    assert PLAIN_CANARY not in _rendered(duplicate.value)
    assert endpoint.secret not in _rendered(duplicate.value)

    for statement in ("SELECT CAST(:v AS INTEGER) + 1", "INSERT INTO api_keys (id) VALUES (:v)"):
        with pytest.raises(DBAPIError) as failed:
            await _run_both(engine, statement)
        assert PLAIN_CANARY not in _rendered(failed.value)


async def _add(uow: UnitOfWork, endpoint: Endpoint) -> None:
    async with uow:
        await uow.work.add_endpoint(endpoint)
        await uow.commit()


async def _run_both(engine: AsyncEngine, statement: str) -> None:
    """``statement``, then one that fails on every engine (SQLite casts anything)."""
    async with engine.connect() as conn:
        await conn.execute(text(statement), {"v": PLAIN_CANARY})
        await conn.execute(text("INSERT INTO api_keys (id) VALUES (:v)"), {"v": PLAIN_CANARY})
