"""Chaos: steady payment load while the API and the worker are SIGKILLed and PostgreSQL
is restarted (issue 15); then every invariant of the money holds.

Bounded (about 1-2 minutes). It runs on its own PostgreSQL from the ``pgserver`` wheel,
never on TUITION_TEST_DATABASE_URL, because it restarts the server (``pg_ctl stop -m
immediate``: a crash, no clean shutdown) and so must own it. The programs are the real
ones, each its own process: the gateway simulator (bench/simulator_app.py, which sends
signed notifications and retries them), ``tuition serve`` and ``tuition worker``.

The load: platforms creating orders and payment attempts with ``Idempotency-Key`` and
retrying every failure with the same key, as the API asks them to; buyers paying at the
gateway, one flow in four paying two attempts of one order (the second is refunded
automatically). Afterwards: ``tuition ledger verify`` clean; each order paid at most
once, extras refunded; no order paid without its journal entry; channel clearing equals
payments - fees - refunds (+ fees returned); every event delivered to the webhook
endpoint; no job stuck or failed; no attempt left open on a settled order; no
Idempotency-Key that produced two objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.engine import make_url

from tuition.config import TEST_MODE_SCHEMA

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process groups, pg_ctl")

REPO = Path(__file__).resolve().parents[2]
CHAOS_SECONDS = 30.0
CHAOS_EVERY = 4.0
PLATFORMS = 6
CONVERGE_SECONDS = 60.0
APP_ID = "chaos_app"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnPostgres:
    """A pgserver instance this test may crash and restart."""

    def __init__(self) -> None:
        try:
            import pgserver

            self.server = pgserver.get_server(
                tempfile.mkdtemp(prefix="tuition-chaos-pg-"), cleanup_mode="delete"
            )
            self.server.psql("CREATE DATABASE chaos;")
        except Exception as exc:  # no wheel, no binaries, no shared memory...
            pytest.skip(f"PostgreSQL (pgserver) cannot be started here: {exc}")
        self._pg_ctl = pgserver.pg_ctl

    @property
    def url(self) -> str:
        uri = make_url(self.server.get_uri("chaos"))
        return uri.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)

    @property
    def libpq_url(self) -> str:
        return make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)

    def crash_and_restart(self) -> None:
        server = self.server
        self._pg_ctl(
            ["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user
        )
        with server._lock:
            server.ensure_postgres_running()

    def close(self) -> None:
        self.server.cleanup()


class _Hook(BaseHTTPRequestHandler):
    received: set[str] = set()
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            self.received.add(json.loads(body)["id"])
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Program:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    proc: subprocess.Popen[bytes] | None = None
    kills: int = 0
    restarts: int = 0

    def start(self) -> None:
        with open(self.cwd / f"{self.name}.log", "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: SIGKILL takes its children
            )

    def kill(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):  # it had exited already
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1

    def keep_alive(self) -> None:
        """What systemd would do: start it again when it has exited (a worker started
        while PostgreSQL is down exits at once, for one)."""
        if self.proc is not None and self.proc.poll() is not None:
            self.start()
            self.restarts += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def log(self) -> str:
        return (self.cwd / f"{self.name}.log").read_text(errors="replace")[-3000:]


@dataclass
class Stack:
    pg: OwnPostgres
    api: Program
    worker: Program
    simulator: Program
    api_url: str
    sim_url: str
    api_key: str
    hook_url: str
    pg_restarts: int = 0


@dataclass
class Flow:
    ref: str
    attempts: int
    order_id: str | None = None
    payment_ids: list[str] = field(default_factory=list)
    paid_at_gateway: list[str] = field(default_factory=list)
    # Every id any response for a key carried: one per key, or a key made two objects.
    seen: dict[str, set[str]] = field(default_factory=dict)


def _tuition_bin() -> str:
    return str(Path(sys.executable).parent / "tuition")


@pytest.fixture
def hook() -> Iterator[str]:
    _Hook.received = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


@pytest.fixture
async def stack(tmp_path: Path, hook: str) -> AsyncIterator[Stack]:
    pg = OwnPostgres()
    key_file = tmp_path / "simulator-key.pem"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    api_port, sim_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUITION_")}
    env.update(
        TUITION_DATABASE_URL=pg.url,
        TUITION_HOST="127.0.0.1",
        TUITION_PORT=str(api_port),
        TUITION_SECRET_KEY="chaos-" + "k" * 40,
        TUITION_SIMULATOR="false",
        TUITION_SANDBOX_URL=f"http://127.0.0.1:{sim_port}",
        TUITION_SIMULATOR_KEY_FILE=str(key_file),
        TUITION_SANDBOX_APP_ID=APP_ID,
        TUITION_SANDBOX_SECRET="chaos-secret",
        TUITION_EMBEDDED_WORKER="false",
        TUITION_WORKER_LEASE_SECONDS="3",
        TUITION_WORKER_POLL_SECONDS="0.2",
        TUITION_RECOVER_AFTER_SECONDS="2",
        TUITION_WEBHOOK_ALLOWED_HOSTS='["127.0.0.1"]',
        TUITION_LOG_LEVEL="warning",
        BENCH_SIMULATOR_URL=f"http://127.0.0.1:{sim_port}",
        BENCH_SIMULATOR_CONTROL="1",
        PYTHONPATH=str(REPO),
    )
    migrate = subprocess.run(
        [_tuition_bin(), "migrate"], env=env, cwd=tmp_path, capture_output=True, timeout=120
    )
    assert migrate.returncode == 0, migrate.stderr.decode()
    created = subprocess.run(
        # A test key (the load pays through the sandbox, test mode's only): its data is in
        # test mode's store, the tuition_test schema, where the invariants read it.
        [_tuition_bin(), "keys", "create", "--name", "chaos", "--mode", "test"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    api_key = next(ln.strip() for ln in created.stdout.splitlines() if ln.startswith("sk_"))
    simulator = Program(
        "simulator",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.simulator_app:app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(sim_port),
            "--log-level",
            "warning",
        ],
        env,
        tmp_path,
    )
    api = Program(
        "api",
        [_tuition_bin(), "serve", "--workers", "1", "--port", str(api_port)],
        env,
        tmp_path,
    )
    worker = Program("worker", [_tuition_bin(), "worker"], env, tmp_path)
    for program in (simulator, api, worker):
        program.start()
    result = Stack(
        pg,
        api,
        worker,
        simulator,
        f"http://127.0.0.1:{api_port}",
        f"http://127.0.0.1:{sim_port}",
        api_key,
        hook,
    )
    try:
        await _until_up(result)
        yield result
    finally:
        for program in (worker, api, simulator):
            program.stop()
        pg.close()


async def _until_up(stack: Stack, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        for url in (f"{stack.sim_url}/v1/public-key", f"{stack.api_url}/readyz"):
            while True:
                try:
                    if (await client.get(url)).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{url} never answered:\n{stack.api.log()}")
                await asyncio.sleep(0.2)


class Platform:
    """A platform's client: every failure is retried with the same Idempotency-Key."""

    def __init__(self, stack: Stack, client: httpx.AsyncClient) -> None:
        self.stack, self.client = stack, client
        self.headers = {"Authorization": f"Bearer {stack.api_key}"}

    async def post(self, flow: Flow, path: str, body: dict[str, Any], key: str) -> dict[str, Any]:
        while True:
            try:
                response = await self.client.post(
                    f"{self.stack.api_url}{path}",
                    json=body,
                    headers={**self.headers, "Idempotency-Key": key},
                )
            except httpx.HTTPError:
                await asyncio.sleep(0.3)
                continue
            if response.status_code in (200, 201):
                data: dict[str, Any] = response.json()
                flow.seen.setdefault(key, set()).add(data["id"])
                return data
            in_use = response.status_code == 409 and "idempotency_key_in_use" in response.text
            if response.status_code < 500 and not in_use:
                raise AssertionError(f"POST {path} refused: {response.text}")
            await asyncio.sleep(0.3)  # 5xx (database down), the key still in use: again

    async def pay_at_gateway(self, payment_id: str) -> bool:
        """The buyer pays: the simulator takes the money and notifies Tuition."""
        for _ in range(20):
            try:
                response = await self.client.post(
                    f"{self.stack.sim_url}/_control/payments/{payment_id}/pay"
                )
            except httpx.HTTPError:
                await asyncio.sleep(0.2)
                continue
            return response.status_code == 200  # 404: the API died before the gateway saw it
        return False

    async def run_flow(self, flow: Flow, products: list[str], rng: random.Random) -> None:
        order = await self.post(
            flow,
            "/v1/orders",
            {
                "customer_id": f"cus_{flow.ref}",
                "currency": "CNY",
                "items": [{"product_id": rng.choice(products)}],
            },
            f"{flow.ref}-o",
        )
        flow.order_id = order["id"]
        for n in range(flow.attempts):
            payment = await self.post(
                flow,
                f"/v1/orders/{order['id']}/payments",
                {"channel": "sandbox", "method": "page"},
                f"{flow.ref}-p{n}",
            )
            flow.payment_ids.append(payment["id"])
        for payment_id in flow.payment_ids:
            if await self.pay_at_gateway(payment_id):
                flow.paid_at_gateway.append(payment_id)


async def _setup_catalog(stack: Stack, client: httpx.AsyncClient) -> list[str]:
    platform = Platform(stack, client)
    setup = Flow("setup", 0)
    products = []
    for n in range(3):
        creator = await platform.post(setup, "/v1/creators", {"name": f"C{n}"}, f"creator-{n}")
        product = await platform.post(
            setup,
            "/v1/products",
            {
                "creator_id": creator["id"],
                "kind": "course",
                "title": f"Course {n}",
                "prices": {"CNY": 1000 + 100 * n},
            },
            f"product-{n}",
        )
        products.append(product["id"])
    await platform.post(
        setup,
        "/v1/webhook_endpoints",
        {"url": stack.hook_url, "events": ["*"], "description": "chaos"},
        "hook",
    )
    return products


async def _chaos(stack: Stack, stop: asyncio.Event) -> None:
    """Every few seconds, one of: SIGKILL the API, SIGKILL the worker, crash PostgreSQL."""
    actions = ["api", "worker", "postgres"]
    n = 0
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), CHAOS_EVERY)
            return
        except TimeoutError:
            pass
        match actions[n % len(actions)]:
            case "api":
                stack.api.kill()
            case "worker":
                stack.worker.kill()
            case "postgres":
                await asyncio.to_thread(stack.pg.crash_and_restart)
                stack.pg_restarts += 1
        n += 1


async def _supervise(stack: Stack, stop: asyncio.Event) -> None:
    while not stop.is_set():
        stack.api.keep_alive()
        stack.worker.keep_alive()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def _load(stack: Stack, products: list[str], stop: asyncio.Event) -> list[Flow]:
    flows: list[Flow] = []
    counter = iter(range(1_000_000))

    async def platform(index: int) -> None:
        rng = random.Random(index)
        async with httpx.AsyncClient(timeout=5) as client:
            me = Platform(stack, client)
            while not stop.is_set():
                n = next(counter)
                flow = Flow(f"f{n}", attempts=2 if n % 4 == 0 else 1)
                flows.append(flow)
                await me.run_flow(flow, products, rng)

    await asyncio.gather(*(platform(i) for i in range(PLATFORMS)))
    return flows


async def test_chaos_keeps_every_invariant_of_the_money(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        products = await _setup_catalog(stack, client)
    stop_load, stop_chaos, stop_supervising = asyncio.Event(), asyncio.Event(), asyncio.Event()
    supervisor = asyncio.ensure_future(_supervise(stack, stop_supervising))
    load = asyncio.ensure_future(_load(stack, products, stop_load))
    chaos = asyncio.ensure_future(_chaos(stack, stop_chaos))
    try:
        await asyncio.sleep(CHAOS_SECONDS)
        stop_chaos.set()
        await chaos
        stop_load.set()
        flows = await asyncio.wait_for(load, 60)  # in-flight flows finish, retrying
        problems = await _converged(stack, flows, within=CONVERGE_SECONDS)
    finally:
        stop_supervising.set()
        await supervisor

    assert stack.api.kills >= 1
    assert stack.worker.kills >= 1
    assert stack.pg_restarts >= 1
    done = [f for f in flows if f.order_id is not None]
    assert len(done) >= 20, f"too little load got through: {len(done)} flows"

    print(  # shown with -s: how much chaos the run survived
        f"chaos: {len(done)} flows, API killed {stack.api.kills}x, worker killed "
        f"{stack.worker.kills}x, PostgreSQL crashed {stack.pg_restarts}x, programs "
        f"restarted {stack.api.restarts + stack.worker.restarts}x"
    )
    assert problems == [], "\n".join(problems)
    verify = subprocess.run(
        [_tuition_bin(), "--mode", "test", "ledger", "verify"],
        env=stack.api.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


async def _converged(stack: Stack, flows: list[Flow], *, within: float) -> list[str]:
    """Wait for the worker to converge; the invariants that still fail after ``within``."""
    deadline = time.monotonic() + within
    conn = await asyncpg.connect(
        stack.pg.libpq_url, server_settings={"search_path": TEST_MODE_SCHEMA}
    )
    try:
        while True:
            problems = await _invariants(conn, flows)
            if not problems or time.monotonic() > deadline:
                return problems
            await asyncio.sleep(1.0)
    finally:
        await conn.close()


async def _invariants(conn: asyncpg.Connection, flows: list[Flow]) -> list[str]:
    problems: list[str] = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    for flow in flows:
        for key, ids in flow.seen.items():
            check(len(ids) == 1, f"Idempotency-Key {key} answered with {sorted(ids)}")
    per_customer = await conn.fetch(
        "SELECT customer_id, count(*) AS n FROM orders GROUP BY customer_id HAVING count(*) > 1"
    )
    check(not per_customer, f"a key made two orders: {[dict(r) for r in per_customer]}")
    attempts = {f.order_id: f.attempts for f in flows if f.order_id}
    for row in await conn.fetch("SELECT order_id, count(*) AS n FROM payments GROUP BY order_id"):
        allowed = attempts.get(row["order_id"], 0)
        check(row["n"] <= allowed, f"order {row['order_id']}: {row['n']} attempts, keys {allowed}")

    paid = {p for f in flows for p in f.paid_at_gateway}
    rows = await conn.fetch(
        "SELECT id, status FROM payments WHERE id = ANY($1::text[])", list(paid)
    )
    stuck = [r["id"] for r in rows if r["status"] != "succeeded"]
    check(not stuck and len(rows) == len(paid), f"paid at the gateway, not here: {stuck}")

    twice = await conn.fetch(
        "SELECT order_id, count(*) AS n FROM payments WHERE status = 'succeeded' "
        "AND duplicate_of IS NULL GROUP BY order_id HAVING count(*) > 1"
    )
    check(not twice, f"orders paid twice: {[dict(r) for r in twice]}")
    unrefunded = await conn.fetch(
        "SELECT p.id FROM payments p WHERE p.status = 'succeeded' AND p.duplicate_of IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.payment_id = p.id "
        "AND r.status = 'succeeded' AND r.amount = p.amount)"
    )
    check(not unrefunded, f"extra payments not refunded: {[r['id'] for r in unrefunded]}")
    unbooked = await conn.fetch(
        "SELECT o.id FROM orders o WHERE o.status <> 'pending_payment' AND o.paid_at IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM payments p JOIN journal_entries j "
        "ON j.source = 'payment:' || p.id WHERE p.order_id = o.id AND p.status = 'succeeded')"
    )
    check(not unbooked, f"orders paid without their entry: {[r['id'] for r in unbooked]}")
    paid_no_order = await conn.fetch(
        "SELECT p.id FROM payments p JOIN orders o ON o.id = p.order_id "
        "WHERE p.status = 'succeeded' AND p.duplicate_of IS NULL AND o.paid_at IS NULL"
    )
    check(
        not paid_no_order, f"payments whose order is not paid: {[r['id'] for r in paid_no_order]}"
    )

    clearing = await conn.fetchval(
        "SELECT coalesce(sum(amount), 0) FROM postings WHERE account_key IN "
        "(SELECT key FROM ledger_accounts WHERE kind = 'channel_clearing')"
    )
    expected = await conn.fetchval(
        "SELECT (SELECT coalesce(sum(amount - coalesce(fee, 0)), 0) FROM payments "
        "WHERE status = 'succeeded' AND channel = 'sandbox') - "
        "(SELECT coalesce(sum(r.amount - coalesce(r.fee_returned, 0)), 0) FROM refunds r "
        "JOIN payments p ON p.id = r.payment_id WHERE r.status = 'succeeded' "
        "AND p.channel = 'sandbox' AND r.destination = 'original')"
    )
    check(
        clearing == expected, f"channel clearing {clearing} != payments - fees - refunds {expected}"
    )

    undelivered = await conn.fetchval(
        "SELECT count(*) FROM outbox_events WHERE dispatched_at IS NULL"
    )
    check(undelivered == 0, f"{undelivered} events not relayed")
    ids = {r["id"] for r in await conn.fetch("SELECT id FROM outbox_events")}
    with _Hook.lock:
        missing = ids - _Hook.received
    check(not missing, f"{len(missing)} events never reached the webhook endpoint")
    jobs = await conn.fetch(
        "SELECT kind, key, status, last_error FROM jobs WHERE status = 'failed' "
        "OR (status = 'queued' AND run_at < now() - interval '20 seconds')"
    )
    check(not jobs, f"jobs stuck or failed: {[dict(r) for r in jobs][:5]}")
    open_on_settled = await conn.fetch(
        "SELECT p.id, o.status FROM payments p JOIN orders o ON o.id = p.order_id "
        "WHERE p.status IN ('created', 'pending') AND o.status <> 'pending_payment'"
    )
    check(not open_on_settled, f"open attempts on settled orders: {open_on_settled[:5]}")
    return problems
