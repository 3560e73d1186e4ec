"""The gateway simulator wired to a test app through the sandbox channel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tuition.channels.sandbox.client import SandboxChannel, SandboxConfig
from tuition.clock import FrozenClock
from tuition.simulator.app import Simulator, create_simulator
from tuition.simulator.config import DEFAULT_APP_ID, DEFAULT_SECRET, SimulatorConfig


async def _no_wait(_seconds: float) -> None:
    await asyncio.sleep(0)


@pytest.fixture
async def gateway(app: FastAPI, clock: FrozenClock) -> AsyncIterator[Simulator]:
    """A simulator that notifies the app in-process; the app's sandbox channel uses it."""
    sim = create_simulator(
        SimulatorConfig(
            clock=clock,
            sleep=_no_wait,
            notify_transport=httpx.ASGITransport(app=app),
        )
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
    yield sim
    await sim.aclose()
    await channel.aclose()


async def send_notification(
    client: httpx.AsyncClient, sim: Simulator, clock: FrozenClock, **body: Any
) -> httpx.Response:
    """Deliver a notification signed with the simulator's real key, saying anything."""
    raw = json.dumps(body, separators=(",", ":")).encode()
    headers = sim.signer.headers(raw, int(clock.now().timestamp()))
    return await client.post("/v1/notify/sandbox", content=raw, headers=headers)
