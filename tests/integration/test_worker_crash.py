"""A worker killed with SIGKILL mid-batch loses nothing: another one finishes the work."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tuition.clock import SystemClock
from tuition.config import load_settings
from tuition.services.webhooks import create_endpoint
from tuition.store import schema
from tuition.store.db import create_engine
from tuition.store.uow import UnitOfWork

EVENTS = 150


class _Hook(BaseHTTPRequestHandler):
    received: list[str] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(0.02)  # slow enough that a kill lands mid-batch
        with self.lock:
            self.received.append(json.loads(body)["id"])
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[str]]]:
    _Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Hook.received
    server.shutdown()


def _start_worker(db_url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TUITION_DATABASE_URL": db_url,
        "TUITION_CHANNELS": "[]",
        "TUITION_WORKER_LEASE_SECONDS": "2",
        "TUITION_WORKER_POLL_SECONDS": "0.05",
        "TUITION_LOG_LEVEL": "warning",
        "TUITION_WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]',
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tuition.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def _migrate_test_mode_store(db_url: str) -> None:
    """What `tuition migrate` does for test mode's store beside ``db_url`` (a worker
    refuses to start while either mode's schema is out of date)."""
    url, test_schema = load_settings(database_url=db_url).store_url("test")
    engine = create_engine(url, schema=test_schema)
    try:
        await schema.upgrade(engine)
    finally:
        await engine.dispose()


async def _wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_a_worker_killed_mid_batch_loses_no_event(
    db_url: str, uow: UnitOfWork, receiver: tuple[str, list[str]]
) -> None:
    url, received = receiver
    clock = SystemClock()
    await create_endpoint(
        uow,
        url=url,
        events=["*"],
        description="crash test",
        clock=clock,
        allowed_hosts=["127.0.0.1"],
    )
    async with uow:
        ids = [
            await uow.events.emit("order.paid", f"ord_{n}", {"n": n}, at=clock.now())
            for n in range(EVENTS)
        ]
        await uow.commit()

    await _migrate_test_mode_store(db_url)  # the worker runs both modes, as deployed
    first = _start_worker(db_url)
    try:
        await _wait_for(lambda: len(received) >= 20, 60, "the first deliveries")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    killed_at = len(set(received))
    assert killed_at < EVENTS, "the worker finished before it could be killed"

    second = _start_worker(db_url)
    try:
        await _wait_for(lambda: set(received) >= set(ids), 90, "every event")
        # Every event arrived, but what the killed worker sent and had not yet recorded
        # (its whole batch is recorded at once) is sent again once its lease passes.
        deadline = time.monotonic() + 90
        while await _counts(uow) != {"succeeded": EVENTS}:
            assert time.monotonic() < deadline, "timed out waiting for every delivery"
            await asyncio.sleep(0.1)
        second.send_signal(signal.SIGTERM)
        second.wait(20)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, second.stderr.read() if second.stderr else ""
    assert set(received) == set(ids)
    # At least once: only what the killed worker had in hand may arrive twice.
    assert len(received) - len(ids) <= 100
    assert await _counts(uow) == {"succeeded": EVENTS}


async def _counts(uow: UnitOfWork) -> dict[str, int]:
    async with uow:
        return await uow.work.delivery_counts()
