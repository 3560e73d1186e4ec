"""A real Tuition server on 127.0.0.1, wired as ``make demo`` runs it, for browser tests.

uvicorn serves it from a background thread with its own event loop, so the test thread
stays free for Playwright's sync API. As in demo mode (``TUITION_SIMULATOR=true``): a
migrated SQLite file, the embedded worker, the sandbox channel, and the gateway
simulator mounted at ``/simulator``; its public URL is the server's, so the buyer's
browser pays there and the signed notifications come back over HTTP.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
from fastapi import Request, Response

from tuition.app import create_app
from tuition.config import Settings, load_settings
from tuition.services.admin import create_admin_user
from tuition.services.api_keys import create_key
from tuition.store import schema
from tuition.store.db import create_engine
from tuition.store.uow import UnitOfWork

T = TypeVar("T")


class ShiftedClock:
    """The system clock, moved by ``offset``: lets a test make history on past days."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code, even where Playwright's sync
    API already runs an event loop on this thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Servers:
    settings: Settings
    base_url: str
    gateway_url: str
    api_key: str
    clock: ShiftedClock
    database_url: str
    admin_email: str = "ops@example.com"
    admin_password: str = "correct-horse-battery"
    webhooks: list[str] = field(default_factory=list)
    _thread: threading.Thread | None = None
    _stop: list[uvicorn.Server] = field(default_factory=list)

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=10
        )

    def run_db(self, sql: str, **params: Any) -> None:
        """Run one statement on the server's database (test setup only)."""
        from sqlalchemy import text

        async def go() -> None:
            engine = create_engine(self.database_url)
            try:
                async with engine.begin() as conn:
                    await conn.execute(text(sql), params)
            finally:
                await engine.dispose()

        run_sync(go())

    def stop(self) -> None:
        for server in self._stop:
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)


def start(workdir: Path | None = None, *, channels: list[str] | None = None) -> Servers:
    """``channels``: as ``TUITION_CHANNELS``; unset, every channel the simulator plays."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="tuition-e2e-"))
    chosen: dict[str, Any] = (
        {} if channels is None else {"channels": channels, "test_channels": channels}
    )
    port = free_port()
    database_url = f"sqlite+aiosqlite:///{workdir / 'tuition.db'}"
    settings = load_settings(
        database_url=database_url,
        public_url=f"http://127.0.0.1:{port}",
        simulator=True,
        secret_key="e2e-" + "k" * 40,
        simulator_key_file=str(workdir / "simulator.pem"),
        embedded_worker=True,
        worker_poll_seconds=0.2,
        log_json=False,
        log_level="warning",
        webhook_allowed_hosts=["127.0.0.1"],  # the platform's receiver is this server
        **chosen,
        # Rates that differ per channel, so surcharge mode shows a switch of channel.
        channel_fee_rates={"sandbox": "0.01", "alipay": "0.006", "wechatpay": "0.0055"},
        merchant_support="help@shop.example",
    )
    clock = ShiftedClock()
    servers = Servers(
        settings=settings,
        base_url=settings.base_url,
        gateway_url=f"{settings.base_url}/simulator",
        api_key="",
        clock=clock,
        database_url=database_url,
    )
    servers.api_key = run_sync(_prepare(servers))
    # One store for both modes, so the console shows what the tests make with a test key
    # (tests/integration/test_modes.py covers the stores kept apart).
    engine = create_engine(database_url)
    app = create_app(settings, engine=engine, test_engine=engine, clock=clock, run_worker=True)

    @app.post("/e2e/platform-webhooks", include_in_schema=False)
    async def platform(request: Request) -> Response:
        """Plays the platform's webhook receiver: notes the event type, answers 204."""
        servers.webhooks.append((await request.json())["type"])
        return Response(status_code=204)

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    servers._stop = [server]
    servers._thread = threading.Thread(target=asyncio.run, args=(server.serve(),), daemon=True)
    servers._thread.start()
    deadline = datetime.now(UTC) + timedelta(seconds=20)
    while not server.started:
        if datetime.now(UTC) > deadline or not servers._thread.is_alive():
            servers.stop()
            raise RuntimeError("the e2e server did not start")
        threading.Event().wait(0.05)
    return servers


async def _prepare(servers: Servers) -> str:
    engine = create_engine(servers.database_url)
    try:
        await schema.upgrade(engine)
        await create_admin_user(
            UnitOfWork(engine), servers.admin_email, servers.admin_password, servers.clock
        )
        created = await create_key(UnitOfWork(engine), name="e2e", mode="test", clock=servers.clock)
        return created.secret
    finally:
        await engine.dispose()
