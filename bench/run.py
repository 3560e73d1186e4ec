"""One bench run: pgbench, deploy, warm up, measure, drain, check, report."""

from __future__ import annotations

import asyncio
import os
import platform
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import checks as checks_mod
from bench import probes as probes_mod
from bench import profile as profile_mod
from bench.flow_limit import FlowLimit, run_flow_limit
from bench.flows import LoadGenerator, Target, seed_catalog
from bench.pgbench import PgbenchResult, run_pgbench
from bench.postgres import find_server
from bench.probes import Recovery, WebhookLag
from bench.processes import (
    CpuSample,
    CpuTime,
    cpu_between,
    cpu_seconds,
    load_1min,
    loadavg,
    machine_busy,
    memory_kib,
    sample,
)
from bench.receiver import Receiver
from bench.stack import APP_ID, HOST, Stack, deploy, make_stack, tuition_bin
from bench.stats import Recorder, Summary
from tuition.config import TEST_MODE_SCHEMA

DATABASE = "tuition_bench"


@dataclass(frozen=True)
class Options:
    duration: int = 30
    warmup: int = 5
    users: int = 32
    api_workers: int = 2
    creators: int = 20
    pool_size: int | None = None
    pgbench_seconds: int = 15
    pgbench_scale: int = 8
    profile: bool = False
    wait_idle: int = 0  # seconds to wait for the 1-minute load average to drop below 1
    # "sqlite": the embedded default, one API process running the worker, no PostgreSQL
    # (and so no pgbench or flow limit).
    engine: str = "postgresql"
    workdir: Path | None = None
    database: str = DATABASE  # dropped and created afresh every run
    workers: int = 1  # tuition worker processes
    # While the load runs (PostgreSQL): a webhook endpoint for every event at a local
    # receiver (delivery lag), and one checkout every ``lost_every`` seconds whose
    # notification the gateway loses (recovery latency; 0 turns it off), recovered by the
    # job due ``recover_after`` seconds after the payment (TUITION_RECOVER_AFTER_SECONDS).
    webhooks: bool = True
    lost_every: float = 1.0
    recover_after: float = 10.0


@dataclass
class Result:
    options: dict[str, Any]
    machine: dict[str, str]
    loadavg_start: str
    loadavg_end: str = ""
    seconds: float = 0.0
    flows: int = 0
    flows_per_s: float = 0.0
    latency_ms: dict[str, Summary] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    measured_errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    cpu_s: dict[str, CpuTime] = field(default_factory=dict)  # per role, over the window
    machine_busy_pct: float = 0.0  # all CPUs, over the window
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    pgbench: PgbenchResult | None = None
    limit: FlowLimit | None = None  # bench/sql/flow_limit.sql at the load's concurrency
    checks: list[checks_mod.Check] = field(default_factory=list)
    profile: profile_mod.Profile | None = None
    recovery: Recovery | None = None  # lost notifications, recovered under load
    webhook: WebhookLag | None = None  # event created -> delivered, under load
    workdir: str = ""
    total_seconds: float = 0.0

    @property
    def ratio(self) -> float | None:
        return self.flows_per_s / self.pgbench.tps if self.pgbench and self.pgbench.tps else None

    @property
    def limit_ratio(self) -> float | None:
        """Tuition's flows/s as a share of what this PostgreSQL does for a flow's SQL."""
        return self.flows_per_s / self.limit.flows_per_s if self.limit else None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def machine_info(pg: dict[str, str]) -> dict[str, str]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "cpu": f"{os.cpu_count()} x {model}",
        "memory": f"{int(mem) // 1024 // 1024} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": pg.get("version", "?"),
        "pg_settings": ", ".join(f"{k}={v}" for k, v in pg.items() if k != "version"),
    }


async def run(options: Options) -> Result:
    started = time.monotonic()
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="tuition-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    await wait_for_idle(options.wait_idle)
    if options.engine == "sqlite":
        result = await _run_sqlite(options, workdir)
    else:
        result = await _run_postgresql(options, workdir)
    result.total_seconds = time.monotonic() - started
    return result


async def _run_postgresql(options: Options, workdir: Path) -> Result:
    server = await find_server()
    try:
        result = Result(
            options={k: str(v) for k, v in vars(options).items()},
            machine=machine_info(await server.describe()),
            loadavg_start=loadavg(),
            workdir=str(workdir),
        )
        if options.pgbench_seconds > 0:
            print(f"pgbench: TPC-B, 8 clients, {options.pgbench_seconds} s ...", flush=True)
            result.pgbench = await run_pgbench(
                server, seconds=options.pgbench_seconds, scale=options.pgbench_scale
            )
            print(
                f"flow limit: bench/sql/flow_limit.sql, {options.users} clients, "
                f"{options.pgbench_seconds} s ...",
                flush=True,
            )
            result.limit = await run_flow_limit(
                server, clients=options.users, seconds=options.pgbench_seconds
            )
        database = options.database
        url = await server.recreate(database)
        stack = make_stack(workdir, url, pool_size=options.pool_size)
        if options.lost_every > 0:
            stack.env["BENCH_SIMULATOR_CONTROL"] = "1"
            stack.env["TUITION_RECOVER_AFTER_SECONDS"] = str(options.recover_after)
        receiver = Receiver(HOST)
        try:
            await receiver.start()
            print(f"deploying in {workdir} ...", flush=True)
            await deploy(stack, api_workers=options.api_workers, workers=options.workers)
            conn = await server.connect(database, schema=TEST_MODE_SCHEMA)

            async def backends() -> list[int]:
                rows = await conn.fetch(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()",
                    database,
                )
                return [int(r[0]) for r in rows]

            try:
                await _load(stack, conn, backends, options, result, receiver=receiver)
            finally:
                await conn.close()
        finally:
            stack.stop()
            await receiver.stop()
        print("checking ...", flush=True)
        result.checks += [checks_mod.ledger_verify(tuition_bin(), stack.env, timeout=120)]
        result.loadavg_end = loadavg()
    finally:
        server.close()
    return result


async def _run_sqlite(options: Options, workdir: Path) -> Result:
    """The embedded default: one ``tuition serve`` process on a SQLite file, running the
    worker itself. Test mode's store is the sibling file ``bench.test.db``."""
    result = Result(
        options={k: str(v) for k, v in vars(options).items()},
        machine=machine_info({"version": "not used (SQLite)"}),
        loadavg_start=loadavg(),
        workdir=str(workdir),
    )
    stack = make_stack(
        workdir,
        f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
        pool_size=options.pool_size,
        embedded_worker=True,
    )
    try:
        print(f"deploying in {workdir} (SQLite, one process) ...", flush=True)
        await deploy(stack, api_workers=1)
        queries = checks_mod.SqliteQueries(workdir / "bench.test.db")
        await _load(stack, queries, _no_backends, options, result)
    finally:
        stack.stop()
    print("checking ...", flush=True)
    result.checks += [checks_mod.ledger_verify(tuition_bin(), stack.env, timeout=120)]
    result.loadavg_end = loadavg()
    return result


async def wait_for_idle(seconds: int) -> None:
    """Other work on a 2-core machine skews every number: wait for it to settle."""
    deadline = time.monotonic() + seconds
    if load_1min() >= 1.0 and seconds > 0:
        print(f"waiting up to {seconds} s for the load average to drop below 1.0", flush=True)
    while time.monotonic() < deadline:
        if load_1min() < 1.0:
            break
        await asyncio.sleep(5)


async def _load(
    stack: Stack,
    conn: checks_mod.Queries,
    backends: Callable[[], Awaitable[list[int]]],
    options: Options,
    result: Result,
    *,
    receiver: Receiver | None = None,
) -> None:
    """Warm up, measure, drain; ``conn`` reads test mode's store (the bench's key is a
    test key), ``backends()`` the database's server processes once loaded (SQLite: none).
    With a ``receiver`` (PostgreSQL only) webhooks and lost notifications are measured."""
    target = Target(HOST, stack.api_port, stack.api_key, APP_ID, stack.key_file)
    products = await seed_catalog(target, creators=options.creators)
    hooked_at = datetime.now(UTC)  # events from here on go to the receiver
    if receiver is not None and options.webhooks:
        await probes_mod.register_endpoint(target, receiver.url)
    lost: probes_mod.LostNotifications | None = None
    if receiver is not None and options.lost_every > 0:
        await probes_mod.drop_notifications(HOST, stack.sim_port)
        lost = probes_mod.LostNotifications(target, stack.sim_port, products, options.lost_every)
    recorder = Recorder()
    load = LoadGenerator(target, products, recorder)
    stop = asyncio.Event()
    print(
        f"load: {options.users} users, {options.warmup} s warm-up, {options.duration} s measured",
        flush=True,
    )
    users = asyncio.create_task(load.run(options.users, stop))
    await asyncio.sleep(options.warmup)
    roles = _roles(stack, await backends())
    spies = []
    if options.profile and profile_mod.available():
        profile_mod.pin(roles["api"], [pid for r, ps in roles.items() if r != "api" for pid in ps])
        for pid in roles["api"]:
            raw = stack.workdir / f"profile-{pid}.txt"
            spies.append(await profile_mod.record(pid, options.duration, raw))
    first, self_cpu, busy = sample(_all(roles)), cpu_seconds(os.getpid()), machine_busy()
    window_start = datetime.now(UTC)
    recorder.measuring = True
    probing: asyncio.Task[None] | None = None
    stop_probes = asyncio.Event()
    if lost is not None:
        probing = asyncio.create_task(lost.run(stop_probes))
        # Probes stop early enough to be recovered while the load still runs.
        probe_for = max(1.0, options.duration - options.recover_after - 3)
        await asyncio.sleep(min(probe_for, options.duration))
        stop_probes.set()
        await asyncio.sleep(max(0.0, options.duration - probe_for))
    else:
        await asyncio.sleep(options.duration)
    recorder.measuring = False
    window_end = datetime.now(UTC)
    last, self_cpu = sample(_all(roles)), cpu_seconds(os.getpid()).since(self_cpu)
    busy_end = machine_busy()
    result.machine_busy_pct = 100 * (busy_end[0] - busy[0]) / (busy_end[1] - busy[1])
    elapsed = last.at - first.at
    stop.set()
    await asyncio.wait_for(users, timeout=60)
    if spies:
        await asyncio.gather(*(spy.wait() for spy in spies))
        raws = [stack.workdir / f"profile-{pid}.txt" for pid in roles["api"]]
        result.profile = profile_mod.summarize(raws)
    result.seconds = elapsed
    result.flows = recorder.flows_measured
    result.flows_per_s = recorder.flows_measured / elapsed
    result.latency_ms = recorder.summaries()
    result.errors = dict(recorder.errors)
    result.measured_errors = recorder.measured_errors
    result.error_samples = recorder.error_samples
    result.cpu_s = _cpu_by_role(roles, first, last)
    result.cpu_s["load generator"] = self_cpu
    for role, pids in roles.items():
        if role == "postgres":
            continue
        for n, pid in enumerate(pids):
            name = role if len(pids) == 1 else f"{role} {n + 1}"
            result.peak_rss_mib[name] = memory_kib(pid).get("VmHWM", 0) / 1024
    recovered_orders: list[str] = []
    if lost is not None and probing is not None:
        await probing
        rows = await probes_mod.wait_booked(
            conn, list(lost.paid_at), within=options.recover_after + 60
        )
        result.recovery = probes_mod.recovery_of(
            lost, rows, recover_after=options.recover_after, window_end=window_end
        )
        recovered_orders = result.recovery.recovered_orders
        result.checks.append(
            checks_mod.Check(
                "every lost notification recovered",
                bool(lost.paid_at) and len(rows) == len(lost.paid_at),
                f"{len(rows)} of {len(lost.paid_at)} probes"
                + (f"; probe errors: {lost.errors[0]}" if lost.errors else ""),
            )
        )
    left, waited = await checks_mod.wait_for_outbox(conn, within=60)
    print(f"outbox drained in {waited:.1f} s ({left} left)", flush=True)
    if receiver is not None and options.webhooks:
        pending = await probes_mod.wait_delivered(conn, within=60)
        everything = await probes_mod.events_between(conn, hooked_at, datetime.now(UTC))
        missing = sum(1 for event_id, _ in everything if event_id not in receiver.first_seen)
        result.webhook = probes_mod.lag_of(
            await probes_mod.events_between(conn, window_start, window_end), receiver
        )
        result.checks.append(
            checks_mod.Check(
                "every event delivered to the webhook receiver",
                bool(everything) and missing == 0 and pending == 0,
                f"{len(everything) - missing} of {len(everything)} events; "
                f"{pending} deliveries pending; {receiver.repeats} repeats",
            )
        )
    found = await checks_mod.database_checks(conn, load.paid_orders, recovered=recovered_orders)
    result.checks += found.items


async def _no_backends() -> list[int]:
    return []


def _roles(stack: Stack, backends: list[int]) -> dict[str, list[int]]:
    roles = {"api": stack.api_workers(), "simulator": [stack.simulator.pid]}
    if stack.workers:
        roles["worker"] = [w.pid for w in stack.workers]
    if backends:
        roles["postgres"] = backends
    return roles


def _all(roles: dict[str, list[int]]) -> list[int]:
    return [pid for pids in roles.values() for pid in pids]


def _cpu_by_role(
    roles: dict[str, list[int]], first: CpuSample, last: CpuSample
) -> dict[str, CpuTime]:
    """CPU time per role, and per API worker (``api 1``, ...) to show the balance."""
    out = {}
    for role, pids in roles.items():
        out[role] = _cpu_of(pids, first, last)
        if role == "api" and len(pids) > 1:
            for n, pid in enumerate(pids):
                out[f"api {n + 1}"] = _cpu_of([pid], first, last)
    return out


def _cpu_of(pids: list[int], first: CpuSample, last: CpuSample) -> CpuTime:
    mine = set(pids)
    return cpu_between(
        CpuSample(first.at, {p: t for p, t in first.by_pid.items() if p in mine}), last
    )
