"""A database that cannot be reached is a 503 with Retry-After, never a 500 (issue 15):
the error envelope on API routes, the channel's failure ACK on its notify endpoint (so
the gateway delivers again)."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.gateway import _no_wait
from tuition.api.errors import database_unavailable
from tuition.app import create_app
from tuition.channels.registry import ChannelRegistry
from tuition.channels.sandbox.client import SandboxChannel, SandboxConfig
from tuition.clock import FrozenClock
from tuition.config import load_settings
from tuition.simulator.app import Simulator, create_simulator
from tuition.simulator.config import DEFAULT_APP_ID, DEFAULT_SECRET, SimulatorConfig
from tuition.store.db import create_engine


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def dead_engine(backend: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine whose database cannot be reached: PostgreSQL on a port nobody listens
    on; SQLite in a directory that does not exist."""
    if backend == "postgresql":
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/postgres"
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'tuition.db'}"
    engine = create_engine(url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def sim(clock: FrozenClock) -> AsyncIterator[Simulator]:
    simulator = create_simulator(SimulatorConfig(clock=clock, sleep=_no_wait))
    yield simulator
    await simulator.aclose()


@pytest.fixture
async def dead_app(
    dead_engine: AsyncEngine, clock: FrozenClock, sim: Simulator
) -> AsyncIterator[FastAPI]:
    settings = load_settings(database_url=str(dead_engine.url))
    app = create_app(
        settings,
        engine=dead_engine,
        test_engine=dead_engine,
        clock=clock,
        registry=ChannelRegistry(),
    )
    channel = SandboxChannel(
        SandboxConfig(
            base_url=sim.config.public_base_url,
            app_id=DEFAULT_APP_ID,
            secret=DEFAULT_SECRET,
            gateway_public_key_pem=sim.public_key_pem,
            gateway_serial=sim.serial,
        ),
        transport=sim.transport,
        clock=clock,
    )
    app.state.modes.live.registry.add(channel)
    yield app
    await channel.aclose()


async def test_an_api_route_answers_503_with_retry_after(dead_app: FastAPI) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=dead_app),
        base_url="http://tuition.test",
        headers={"Authorization": "Bearer sk_test_whatever"},
    ) as client:
        response = await client.get("/v1/orders")
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    assert response.headers["request-id"]
    assert response.json()["error"] == {
        "type": "api_error",
        "code": "database_unavailable",
        "message": "the database cannot be reached; retry later",
        "param": None,
    }


async def test_a_notification_gets_the_channels_failure_ack_so_it_is_sent_again(
    dead_app: FastAPI, sim: Simulator, clock: FrozenClock
) -> None:
    body = {
        "app_id": DEFAULT_APP_ID,
        "event": "payment.paid",
        "out_trade_no": "pay_1",
        "trade_no": "T1",
        "status": "PAID",
        "amount": 100,
        "currency": "CNY",
        "paid_at": clock.now().isoformat(),
        "notify_id": "N1",
        "sent_at": clock.now().isoformat(),
    }
    raw = json.dumps(body, separators=(",", ":")).encode()
    headers = sim.signer.headers(raw, int(clock.now().timestamp()))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=dead_app), base_url="http://tuition.test"
    ) as client:
        response = await client.post("/v1/notify/sandbox", content=raw, headers=headers)
    failure = dead_app.state.modes.live.registry.get("sandbox").ack(False)
    assert (response.status_code, response.content) == (failure.status_code, failure.body)
    assert int(response.headers["retry-after"]) > 0


def test_only_connection_failures_count_as_the_database_unavailable() -> None:
    """A bad statement, or an OSError raised outside the driver, stays a 500."""
    refused = sa_exc.OperationalError("SELECT 1", {}, ConnectionRefusedError(111, "refused"))
    dropped = sa_exc.DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True)
    wrong = sa_exc.ProgrammingError("SELEC 1", {}, Exception("syntax error"))
    duplicate = sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key"))
    assert database_unavailable(refused)
    assert database_unavailable(dropped)
    assert not database_unavailable(wrong)
    assert not database_unavailable(duplicate)
    assert not database_unavailable(FileNotFoundError("a template"))
    assert not database_unavailable(ConnectionRefusedError(111, "a webhook receiver"))
    # A transaction aborted to break a deadlock was rolled back whole: retry it later.
    deadlock = sa_exc.DBAPIError(
        "UPDATE", {}, asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
    )
    assert database_unavailable(deadlock)
