"""The flow limit: the least SQL of one payment flow (bench/sql/flow_limit.sql) run by
``pgbench`` on Tuition's own, freshly migrated schema, in the same run as the load.

It is what this PostgreSQL can do per second for a flow when nothing but the database
costs anything: the ceiling Tuition's own flows/s is reported against (docs/performance.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bench.pgbench import _LATENCY, _TPS, _run
from bench.postgres import Server, pgbench_path
from tuition.store import schema
from tuition.store.db import create_engine

DATABASE = "tuition_bench_limit"
SQL = Path(__file__).parent / "sql"
SCRIPT = SQL / "flow_limit.sql"
SETUP = SQL / "flow_limit_setup.sql"


@dataclass(frozen=True)
class FlowLimit:
    flows_per_s: float
    latency_ms: float
    clients: int
    seconds: int


async def prepare(server: Server, database: str = DATABASE) -> None:
    """A fresh database with Tuition's schema (its migrations) and the script's setup."""
    url = await server.recreate(database)
    engine = create_engine(url)
    try:
        await schema.upgrade(engine)
    finally:
        await engine.dispose()
    conn = await server.connect(database)
    try:
        await conn.execute(SETUP.read_text())
    finally:
        await conn.close()


async def run_flow_limit(server: Server, *, clients: int, seconds: int) -> FlowLimit:
    """pgbench with the flow script, prepared statements (as asyncpg uses), ``clients``
    connections on 2 threads, for ``seconds``; one script run is one flow."""
    binary = pgbench_path(server)
    if binary is None:
        raise RuntimeError("pgbench not found (PATH, /usr/lib/postgresql/*/bin, pgserver)")
    await prepare(server)
    argv = [binary, *server.libpq_args(), "-n", "-M", "prepared", "-f", str(SCRIPT)]
    argv += ["-c", str(clients), "-j", "2", "-T", str(seconds), DATABASE]
    try:
        out = await _run(argv, server.libpq_env(), within=seconds + 60)
    finally:
        await server.drop(DATABASE)
    tps = _TPS.search(out)
    latency = _LATENCY.search(out)
    if tps is None:
        raise RuntimeError(f"could not read pgbench output:\n{out}")
    return FlowLimit(
        flows_per_s=float(tps.group(1)),
        latency_ms=float(latency.group(1)) if latency else 0.0,
        clients=clients,
        seconds=seconds,
    )


_VARIABLE = re.compile(r":(\w+)")


def statements(values: dict[str, int]) -> list[str]:
    """The script's SQL statements with its variables replaced by ``values``, without
    pgbench (for the test that keeps the script in step with the schema)."""
    lines = [
        line
        for line in SCRIPT.read_text().splitlines()
        if not line.startswith(("\\", "--")) and line.strip()
    ]
    # As pgbench does: a ``:name`` that is no variable (inside 'payment:pay_…') stays.
    body = _VARIABLE.sub(lambda m: str(values.get(m.group(1), m.group(0))), "\n".join(lines))
    return [part.strip() for part in body.split(";") if part.strip()]
