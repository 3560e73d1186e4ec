"""``python -m bench.recovery``: time from a lost notification to paid, under a backlog.

Deploys Tuition as ``python -m bench`` does (simulator process, ``tuition serve``, one
``tuition worker``, PostgreSQL) with a short recovery delay, then:

1. **Backlog**: ``--backlog`` abandoned checkouts, each an order and a payment attempt
   the simulator opened and nobody ever pays. Each has its ``reconcile_payment`` job;
   they are queried at their recovery delay and again at 1, 2, 4, ... minutes while
   their orders wait, so they stay in the queue for the whole run.
2. **Probes**: every ``--probe-interval`` seconds for ``--probe-seconds``, one more
   order and payment, paid at the simulator at once (``/_control/payments/{id}/pay``)
   with its notification dropped (``drop_next``): only the recovery query can find it.
3. **Measure** per probe, with ``recovered`` the moment Tuition booked the payment (its
   journal entry's ``created_at``; ``succeeded_at`` is the gateway's own payment time):
   ``recovered - (created_at + recovery delay)``, how late the recovery came after the
   delay, and ``recovered -`` the moment the gateway took the money (the buyer's wait).
   All on this machine's clock.

Checks: every probe paid, no backlog attempt paid, ``tuition ledger verify`` clean.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import checks as checks_mod
from bench.flows import Target, seed_catalog
from bench.http import Connection
from bench.postgres import find_server
from bench.processes import loadavg
from bench.stack import APP_ID, HOST, Stack, deploy, make_stack, tuition_bin
from bench.stats import Summary
from tuition.config import TEST_MODE_SCHEMA

DATABASE = "tuition_bench_recovery"


@dataclass(frozen=True)
class Options:
    backlog: int = 2000
    users: int = 16
    recover_after: float = 5.0
    probe_seconds: float = 75.0
    probe_interval: float = 1.0
    workdir: Path | None = None


@dataclass
class Result:
    options: dict[str, str]
    loadavg_start: str
    loadavg_end: str = ""
    backlog_seconds: float = 0.0
    open_at_end: int = 0
    backlog_queried: int = 0  # backlog attempts asked about while the probes ran
    probes: int = 0
    late_s: Summary | None = None  # after created_at + recovery delay
    wait_s: Summary | None = None  # after the gateway took the money
    checks: list[checks_mod.Check] = field(default_factory=list)
    workdir: str = ""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


class Api:
    def __init__(self, target: Target) -> None:
        self.conn = Connection(target.host, target.port)
        self.headers = {
            "Authorization": f"Bearer {target.api_key}",
            "Content-Type": "application/json",
        }

    async def post(self, path: str, body: dict[str, Any], key: str) -> dict[str, Any]:
        headers = {**self.headers, "Idempotency-Key": key}
        response = await self.conn.request("POST", path, json.dumps(body).encode(), headers)
        if response.status != 201:
            raise RuntimeError(f"POST {path}: HTTP {response.status} {response.body[:300]!r}")
        result: dict[str, Any] = json.loads(response.body)
        return result

    async def checkout(self, product: str, ref: str) -> dict[str, Any]:
        """An order and its payment attempt: what a buyer who then walks away leaves."""
        order = await self.post(
            "/v1/orders",
            {"customer_id": f"cus_{ref}", "currency": "CNY", "items": [{"product_id": product}]},
            f"{ref}-o",
        )
        return await self.post(
            f"/v1/orders/{order['id']}/payments",
            {"channel": "sandbox", "method": "page"},
            f"{ref}-p",
        )

    def close(self) -> None:
        self.conn.close()


async def run(options: Options) -> Result:
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="tuition-bench-recovery-"))
    workdir.mkdir(parents=True, exist_ok=True)
    server = await find_server()
    result = Result({k: str(v) for k, v in vars(options).items()}, loadavg(), workdir=str(workdir))
    try:
        url = await server.recreate(DATABASE)
        stack = make_stack(workdir, url, pool_size=None)
        stack.env["TUITION_RECOVER_AFTER_SECONDS"] = str(options.recover_after)
        stack.env["BENCH_SIMULATOR_CONTROL"] = "1"
        try:
            print(f"deploying in {workdir} ...", flush=True)
            await deploy(stack, api_workers=1)
            conn = await server.connect(DATABASE, schema=TEST_MODE_SCHEMA)
            try:
                await _measure(stack, conn, options, result)
            finally:
                await conn.close()
        finally:
            stack.stop()
        result.checks.append(checks_mod.ledger_verify(tuition_bin(), stack.env, timeout=120))
        result.loadavg_end = loadavg()
    finally:
        server.close()
    return result


async def _measure(stack: Stack, conn: Any, options: Options, result: Result) -> None:
    target = Target(HOST, stack.api_port, stack.api_key, APP_ID, stack.key_file)
    products = await seed_catalog(target, creators=5)
    sim = Connection(HOST, stack.sim_port)
    try:
        faults = json.dumps({"drop_next": 10_000}).encode()
        answer = await sim.request(
            "POST", "/_control/notifications", faults, {"Content-Type": "application/json"}
        )
        if answer.status != 200:
            raise RuntimeError(f"simulator control: HTTP {answer.status} {answer.body[:200]!r}")

        print(f"backlog: {options.backlog} abandoned checkouts, {options.users} users", flush=True)
        started = time.monotonic()
        backlog_ids = await _backlog(target, products, options)
        result.backlog_seconds = time.monotonic() - started

        probe_count = int(options.probe_seconds / options.probe_interval)
        print(f"probes: {probe_count}, one every {options.probe_interval} s", flush=True)
        api = Api(target)
        paid_at: dict[str, datetime] = {}
        try:
            for n in range(probe_count):
                tick = time.monotonic()
                payment = await api.checkout(products[n % len(products)], f"probe-{n}")
                paid = await sim.request("POST", f"/_control/payments/{payment['id']}/pay", b"")
                if paid.status != 200:
                    raise RuntimeError(f"simulator pay: HTTP {paid.status} {paid.body[:200]!r}")
                paid_at[payment["id"]] = datetime.now(UTC)
                await asyncio.sleep(max(0.0, options.probe_interval - (time.monotonic() - tick)))
        finally:
            api.close()
    finally:
        sim.close()

    rows = await _wait_paid(conn, list(paid_at), within=options.recover_after + 300)
    delay = timedelta(seconds=options.recover_after)
    late = [(r["recovered"] - (r["created_at"] + delay)).total_seconds() for r in rows]
    wait = [(r["recovered"] - paid_at[r["id"]]).total_seconds() for r in rows]
    result.probes = len(paid_at)
    result.late_s, result.wait_s = Summary.of(late), Summary.of(wait)
    result.open_at_end = int(
        await conn.fetchval("SELECT count(*) FROM payments WHERE status IN ('created', 'pending')")
    )
    if rows:
        result.backlog_queried = int(
            await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE kind = 'reconcile_payment' "
                "AND key = ANY($1::text[]) AND updated_at BETWEEN $2 AND $3",
                [f"reconcile_payment:{p}" for p in backlog_ids],
                min(r["created_at"] for r in rows),
                max(r["recovered"] for r in rows),
            )
        )
    stray = int(
        await conn.fetchval(
            "SELECT count(*) FROM payments WHERE id = ANY($1::text[]) AND status = 'succeeded'",
            backlog_ids,
        )
    )
    result.checks.append(
        checks_mod.Check(
            "every probe recovered", len(rows) == len(paid_at), f"{len(rows)}/{len(paid_at)}"
        )
    )
    result.checks.append(checks_mod.Check("no abandoned attempt paid", stray == 0, str(stray)))


async def _backlog(target: Target, products: list[str], options: Options) -> list[str]:
    ids: list[str] = []
    counter = iter(range(options.backlog))

    async def user() -> None:
        api = Api(target)
        try:
            for n in counter:
                payment = await api.checkout(products[n % len(products)], f"abandoned-{n}")
                ids.append(payment["id"])
        finally:
            api.close()

    await asyncio.gather(*(user() for _ in range(options.users)))
    return ids


async def _wait_paid(conn: Any, ids: list[str], *, within: float) -> list[Any]:
    deadline = time.monotonic() + within
    while True:
        rows = await conn.fetch(
            "SELECT p.id, p.created_at, j.created_at AS recovered FROM payments p "
            "JOIN journal_entries j ON j.source = 'payment:' || p.id "
            "WHERE p.id = ANY($1::text[]) AND p.status = 'succeeded'",
            ids,
        )
        if len(rows) == len(ids) or time.monotonic() > deadline:
            return list(rows)
        await asyncio.sleep(0.2)


def markdown(result: Result) -> str:
    o = result.options

    def row(name: str, s: Summary | None) -> str:
        if s is None:
            return f"| {name} | - | - | - | - |"
        return f"| {name} | {s.p50:.2f} | {s.p95:.2f} | {s.p99:.2f} | {s.max:.2f} |"

    lines = [
        "## Recovery of lost notifications under a backlog",
        "",
        f"Backlog: {o['backlog']} abandoned checkouts created in {result.backlog_seconds:.1f} s "
        f"({o['users']} users); recovery delay {o['recover_after']} s; {result.probes} "
        f"probes paid at the gateway with the notification lost, one every "
        f"{o['probe_interval']} s; {result.backlog_queried} backlog attempts asked about "
        f"(again) while the probes ran; {result.open_at_end} attempts still open at the end.",
        "",
        "| seconds | p50 | p95 | p99 | max |",
        "|---|---|---|---|---|",
        row("recovered after created_at + recovery delay", result.late_s),
        row("recovered after the gateway took the money", result.wait_s),
        "",
        f"Load average: {result.loadavg_start} → {result.loadavg_end}. Work directory: "
        f"{result.workdir}",
        "",
        "| check | ok | detail |",
        "|---|---|---|",
        *(f"| {c.name} | {'yes' if c.ok else 'NO'} | {c.detail} |" for c in result.checks),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recovery", description=__doc__)
    parser.add_argument("--backlog", type=int, default=2000, help="abandoned checkouts")
    parser.add_argument("--users", type=int, default=16, help="concurrent backlog creators")
    parser.add_argument("--recover-after", type=float, default=5.0, help="recovery delay, s")
    parser.add_argument("--probe-seconds", type=float, default=75.0)
    parser.add_argument("--probe-interval", type=float, default=1.0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    options = Options(
        backlog=args.backlog,
        users=args.users,
        recover_after=args.recover_after,
        probe_seconds=args.probe_seconds,
        probe_interval=args.probe_interval,
        workdir=args.workdir,
    )
    result = asyncio.run(run(options))
    print()
    print(markdown(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
