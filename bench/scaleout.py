"""``python -m bench.scaleout``: API and worker processes on one PostgreSQL, scaled.

1. **API processes**: the flow load of ``python -m bench`` (same users, warm-up, checks)
   against ``tuition serve --workers N`` for each N of ``--api`` (default 1, 2, 4), each
   on a fresh database; ``serve`` gives every process its own ``SO_REUSEPORT`` socket, so
   the kernel spreads the load generator's keep-alive connections over them. Reported:
   flows/s, speed-up over one process, per-process efficiency (flows/s / (N x flows/s
   of one process)), API CPU per flow, worst p99 and the busiest and idlest process.
2. **Worker processes**: for each K of ``--workers`` (default 1, 3), a fresh database is
   loaded with no worker running: ``--backlog-flows`` paid flows (their events wait in
   the outbox for a webhook endpoint at a local receiver) and ``--backlog-lost``
   payments the gateway took with the notification lost (each waits for its recovery
   job). Then K ``tuition worker`` processes start together, and the report gives
   webhook deliveries/s and recoveries/s (first to last arrival, so start-up is not
   counted), per-process efficiency, and the time from start until both backlogs were
   empty.

One PostgreSQL (``BENCH_PG_URL``) throughout; the flow limit (``bench/sql/flow_limit.sql``
at the load's concurrency) is measured once first for scale. On a 2-core machine more
processes than cores cannot scale: the table shows where that sets in.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import checks as checks_mod
from bench import run as run_mod
from bench.flow_limit import run_flow_limit
from bench.flows import LoadGenerator, Target, seed_catalog
from bench.postgres import find_server
from bench.probes import LostNotifications, drop_notifications, register_endpoint, wait_booked
from bench.processes import CpuTime, cpu_seconds, loadavg
from bench.receiver import Receiver
from bench.stack import APP_ID, HOST, Stack, deploy, make_stack, start_workers, tuition_bin
from bench.stats import Recorder
from tuition.config import TEST_MODE_SCHEMA

DATABASE = "tuition_bench_scaleout"


@dataclass(frozen=True)
class Options:
    api: tuple[int, ...] = (1, 2, 4)
    workers: tuple[int, ...] = (1, 3)
    duration: int = 15
    warmup: int = 3
    users: int = 32
    creators: int = 20
    backlog_flows: int = 300
    backlog_lost: int = 150
    backlog_users: int = 16
    limit_seconds: int = 5  # 0: no flow limit
    drain_within: float = 300.0
    database: str = DATABASE
    workdir: Path | None = None


@dataclass
class ApiRow:
    processes: int
    flows_per_s: float
    api_cpu_ms_per_flow: float
    worst_p99_ms: float
    busiest_cpu_s: float
    idlest_cpu_s: float
    machine_busy_pct: float
    ok: bool
    failed: list[str] = field(default_factory=list)


@dataclass
class WorkerRow:
    processes: int
    events: int  # webhook deliveries due (one endpoint, every event)
    delivered: int
    deliveries_per_s: float
    lost: int  # payments with a lost notification
    recovered: int
    recoveries_per_s: float
    drained_s: float  # workers started -> both backlogs empty
    worker_cpu_s: float  # from the first delivery to drained, all workers
    ok: bool
    failed: list[str] = field(default_factory=list)


@dataclass
class Result:
    options: dict[str, str]
    loadavg_start: str
    loadavg_end: str = ""
    limit_flows_per_s: float | None = None
    api: list[ApiRow] = field(default_factory=list)
    workers: list[WorkerRow] = field(default_factory=list)
    workdir: str = ""
    total_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.api) and all(r.ok for r in self.workers)


def efficiency(rate: float, processes: int, base: float) -> float | None:
    """``rate`` as a share of ``processes`` times the one-process ``base`` rate."""
    return rate / (processes * base) if base > 0 and processes > 0 else None


def rate_between(times: list[datetime]) -> float:
    """Arrivals per second from the first to the last arrival (0 for fewer than two)."""
    if len(times) < 2:
        return 0.0
    span = (max(times) - min(times)).total_seconds()
    return (len(times) - 1) / span if span > 0 else 0.0


async def run(options: Options) -> Result:
    started = time.monotonic()
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="tuition-bench-scaleout-"))
    for k in options.workers:
        (workdir / f"workers-{k}").mkdir(parents=True, exist_ok=True)
    result = Result({k: str(v) for k, v in vars(options).items()}, loadavg(), workdir=str(workdir))
    if options.limit_seconds > 0:
        server = await find_server()
        try:
            print(f"flow limit: {options.users} clients, {options.limit_seconds} s ...", flush=True)
            limit = await run_flow_limit(
                server, clients=options.users, seconds=options.limit_seconds
            )
            result.limit_flows_per_s = limit.flows_per_s
        finally:
            server.close()
    for n in options.api:
        print(f"--- {n} API process(es)", flush=True)
        result.api.append(await _api_row(options, n, workdir / f"api-{n}"))
    for k in options.workers:
        print(f"--- {k} worker process(es)", flush=True)
        result.workers.append(await _worker_row(options, k, workdir / f"workers-{k}"))
    result.loadavg_end = loadavg()
    result.total_seconds = time.monotonic() - started
    return result


async def _api_row(options: Options, processes: int, workdir: Path) -> ApiRow:
    r = await run_mod.run(
        run_mod.Options(
            duration=options.duration,
            warmup=options.warmup,
            users=options.users,
            api_workers=processes,
            creators=options.creators,
            pgbench_seconds=0,
            webhooks=False,
            lost_every=0,
            workdir=workdir,
            database=options.database,
        )
    )
    per_process = [cpu.total for role, cpu in r.cpu_s.items() if role.startswith("api ")]
    api_cpu = r.cpu_s.get("api", CpuTime()).total
    return ApiRow(
        processes=processes,
        flows_per_s=r.flows_per_s,
        api_cpu_ms_per_flow=api_cpu / r.flows * 1000 if r.flows else 0.0,
        worst_p99_ms=max((s.p99 for k, s in r.latency_ms.items() if k != "flow"), default=0.0),
        busiest_cpu_s=max(per_process, default=api_cpu),
        idlest_cpu_s=min(per_process, default=api_cpu),
        machine_busy_pct=r.machine_busy_pct,
        ok=r.ok,
        failed=[f"{c.name}: {c.detail}" for c in r.checks if not c.ok],
    )


async def _worker_row(options: Options, processes: int, workdir: Path) -> WorkerRow:
    server = await find_server()
    receiver = Receiver(HOST)
    try:
        url = await server.recreate(options.database)
        stack = make_stack(workdir, url, pool_size=None)
        # Every lost payment is due for its recovery query by the time the workers start.
        stack.env["TUITION_RECOVER_AFTER_SECONDS"] = "1"
        stack.env["BENCH_SIMULATOR_CONTROL"] = "1"
        await receiver.start()
        try:
            await deploy(stack, api_workers=2, workers=0)
            conn = await server.connect(options.database, schema=TEST_MODE_SCHEMA)
            try:
                row = await _drain(stack, conn, receiver, options, processes)
            finally:
                await conn.close()
        finally:
            stack.stop()
        verify = checks_mod.ledger_verify(tuition_bin(), stack.env, timeout=120)
        if not verify.ok:
            row.ok = False
            row.failed.append(f"{verify.name}: {verify.detail}")
        return row
    finally:
        await receiver.stop()
        server.close()


async def _drain(
    stack: Stack, conn: Any, receiver: Receiver, options: Options, processes: int
) -> WorkerRow:
    target = Target(HOST, stack.api_port, stack.api_key, APP_ID, stack.key_file)
    products = await seed_catalog(target, creators=options.creators)
    hooked_at = datetime.now(UTC)
    await register_endpoint(target, receiver.url)
    await drop_notifications(HOST, stack.sim_port)

    print(
        f"backlog: {options.backlog_flows} paid flows, {options.backlog_lost} lost "
        "notifications, no worker running ...",
        flush=True,
    )
    load = LoadGenerator(target, products, Recorder())
    stop = asyncio.Event()
    users = asyncio.create_task(load.run(options.backlog_users, stop))
    while len(load.paid_orders) < options.backlog_flows and not users.done():  # noqa: ASYNC110
        await asyncio.sleep(0.05)  # a count another task raises: polled, not signalled
    stop.set()
    await users
    lost = LostNotifications(target, stack.sim_port, products, interval=0)
    await lost.checkouts(options.backlog_lost, users=options.backlog_users)
    await asyncio.sleep(1.5)  # past TUITION_RECOVER_AFTER_SECONDS for the last one

    waiting = await _event_ids(conn, hooked_at)
    lost_ids = list(lost.paid_at)
    print(
        f"starting {processes} worker(s): {len(waiting)} events, {len(lost_ids)} lost", flush=True
    )
    began = time.monotonic()
    procs = start_workers(stack, processes)
    # CPU from the first delivery on: a worker's start-up (imports, app) is not its work.
    cpu_before: dict[int, CpuTime] | None = None
    deadline = began + options.drain_within
    # Drained: every lost payment booked, and every event (those its booking wrote too)
    # relayed and delivered.
    while time.monotonic() < deadline and all(p.alive() for p in procs):
        if cpu_before is None and receiver.received:
            cpu_before = {p.pid: cpu_seconds(p.pid) for p in procs}
        if len(await wait_booked(conn, lost_ids, within=0)) == len(lost_ids):
            left = await conn.fetchval(
                "SELECT (SELECT count(*) FROM outbox_events WHERE dispatched_at IS NULL) + "
                "(SELECT count(*) FROM webhook_deliveries WHERE status = 'pending')"
            )
            if left == 0:
                break
        await asyncio.sleep(0.1)
    drained = time.monotonic() - began
    cpu = sum(cpu_seconds(pid).since(before).total for pid, before in (cpu_before or {}).items())
    rows = await wait_booked(conn, lost_ids, within=0)
    events = await _event_ids(conn, hooked_at)
    delivered = [receiver.first_seen[e] for e in events if e in receiver.first_seen]
    failed = []
    if len(delivered) < len(events):
        failed.append(f"{len(events) - len(delivered)} events not delivered")
    if len(rows) < len(lost_ids):
        failed.append(f"{len(lost_ids) - len(rows)} lost payments not recovered")
    if lost.errors:
        failed.append(f"checkout errors: {lost.errors[0]}")
    found = await checks_mod.database_checks(
        conn, load.paid_orders, recovered=[lost.order_of[r["id"]] for r in rows]
    )
    failed += [f"{c.name}: {c.detail}" for c in found.items if not c.ok]
    return WorkerRow(
        processes=processes,
        events=len(events),
        delivered=len(delivered),
        deliveries_per_s=rate_between(delivered),
        lost=len(lost_ids),
        recovered=len(rows),
        recoveries_per_s=rate_between([r["recovered"] for r in rows]),
        drained_s=drained,
        worker_cpu_s=cpu,
        ok=not failed,
        failed=failed,
    )


async def _event_ids(conn: Any, since: datetime) -> list[str]:
    rows = await conn.fetch("SELECT id FROM outbox_events WHERE created_at >= $1", since)
    return [str(r[0]) for r in rows]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f} %"


def markdown(r: Result) -> str:
    o = r.options
    out = [
        "## Scale-out on one PostgreSQL",
        "",
        f"- load average: start `{r.loadavg_start}`, end `{r.loadavg_end}`"
        + (
            " — **above 1.0 at the start: a busy machine**"
            if float(r.loadavg_start.split()[0]) >= 1.0
            else ""
        ),
        f"- run took {r.total_seconds:.0f} s; logs in `{r.workdir}`",
    ]
    if r.limit_flows_per_s is not None:
        out.append(
            f"- flow limit (bench/sql/flow_limit.sql, {o['users']} clients, "
            f"{o['limit_seconds']} s): {r.limit_flows_per_s:.0f} flows/s"
        )
    base = r.api[0].flows_per_s if r.api and r.api[0].processes == 1 else 0.0
    out += [
        "",
        f"API processes ({o['users']} users, {o['warmup']} s warm-up, {o['duration']} s "
        "measured, one `tuition worker`):",
        "",
        "| API processes | flows/s | speed-up | per-process efficiency | API CPU ms/flow "
        "| worst p99 ms | API CPU s, busiest / idlest process | machine busy | checks |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for a in r.api:
        speed = f"{a.flows_per_s / base:.2f} x" if base else "-"
        out.append(
            f"| {a.processes} | {a.flows_per_s:.1f} | {speed} "
            f"| {_pct(efficiency(a.flows_per_s, a.processes, base))} "
            f"| {a.api_cpu_ms_per_flow:.1f} | {a.worst_p99_ms:.0f} "
            f"| {a.busiest_cpu_s:.1f} / {a.idlest_cpu_s:.1f} | {a.machine_busy_pct:.0f} % "
            f"| {'ok' if a.ok else '**failed**'} |"
        )
    w0 = r.workers[0] if r.workers and r.workers[0].processes == 1 else None
    out += [
        "",
        f"Worker processes (backlog: {o['backlog_flows']} paid flows' events to a local "
        f"webhook receiver, {o['backlog_lost']} lost notifications; rates from first to "
        "last arrival):",
        "",
        "| workers | webhook deliveries/s | efficiency | recoveries/s | efficiency "
        "| drained in (from start) | worker CPU s (from first delivery) | checks |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for w in r.workers:
        d_eff = efficiency(w.deliveries_per_s, w.processes, w0.deliveries_per_s if w0 else 0)
        r_eff = efficiency(w.recoveries_per_s, w.processes, w0.recoveries_per_s if w0 else 0)
        out.append(
            f"| {w.processes} | {w.deliveries_per_s:.0f} ({w.delivered}/{w.events}) "
            f"| {_pct(d_eff)} | {w.recoveries_per_s:.0f} ({w.recovered}/{w.lost}) "
            f"| {_pct(r_eff)} | {w.drained_s:.1f} s | {w.worker_cpu_s:.1f} "
            f"| {'ok' if w.ok else '**failed**'} |"
        )
    failures = [(f"API {a.processes}", a.failed) for a in r.api if a.failed]
    failures += [(f"workers {w.processes}", w.failed) for w in r.workers if w.failed]
    if failures:
        out += ["", "Failed checks:", ""]
        out += [f"- {name}: {'; '.join(items)}" for name, items in failures]
    return "\n".join(out) + "\n"


def _counts(text: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in text.split(","))
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("a comma-separated list of positive counts")
    return values


def _api_counts(text: str) -> tuple[int, ...]:
    """``0`` skips the API phase (the worker phase alone); otherwise as ``_counts``."""
    return () if text.strip() == "0" else _counts(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__)
    d = Options()
    parser.add_argument(
        "--api", type=_api_counts, default=d.api, help="API process counts: 1,2,4 (0: skip)"
    )
    parser.add_argument("--workers", type=_counts, default=d.workers, help="worker counts: 1,3")
    parser.add_argument("--duration", type=int, default=d.duration, help="measured seconds")
    parser.add_argument("--warmup", type=int, default=d.warmup)
    parser.add_argument("--users", type=int, default=d.users)
    parser.add_argument("--creators", type=int, default=d.creators)
    parser.add_argument("--backlog-flows", type=int, default=d.backlog_flows)
    parser.add_argument("--backlog-lost", type=int, default=d.backlog_lost)
    parser.add_argument("--backlog-users", type=int, default=d.backlog_users)
    parser.add_argument("--limit-seconds", type=int, default=d.limit_seconds, help="0: skip")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write results as JSON")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    options = Options(
        api=args.api,
        workers=args.workers,
        duration=args.duration,
        warmup=args.warmup,
        users=args.users,
        creators=args.creators,
        backlog_flows=args.backlog_flows,
        backlog_lost=args.backlog_lost,
        backlog_users=args.backlog_users,
        limit_seconds=args.limit_seconds,
        workdir=args.workdir,
    )
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    result = asyncio.run(run(options))
    print()
    print(markdown(result))
    if args.json is not None:
        args.json.write_text(json.dumps(dataclasses.asdict(result), default=str, indent=2))
    return 0 if result.ok else 1


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwind through the finally blocks that stop servers


if __name__ == "__main__":
    raise SystemExit(main())
