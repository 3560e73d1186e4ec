"""``pgbench`` TPC-B on the same server in the same run: the yardstick for flows/s."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from bench.postgres import Server, pgbench_path

DATABASE = "tuition_bench_pgbench"
_TPS = re.compile(r"tps = ([0-9.]+) \(without initial connection time\)")
_LATENCY = re.compile(r"latency average = ([0-9.]+) ms")


@dataclass(frozen=True)
class PgbenchResult:
    tps: float
    latency_ms: float
    clients: int
    scale: int
    seconds: int


async def run_pgbench(
    server: Server, *, clients: int = 8, seconds: int = 15, scale: int = 8
) -> PgbenchResult:
    """Initialise a fresh ``tuition_bench_pgbench`` at ``scale`` and run TPC-B against it.

    Scale >= clients, so the clients do not all queue on one branch row.
    """
    binary = pgbench_path(server)
    if binary is None:
        raise RuntimeError("pgbench not found (PATH, /usr/lib/postgresql/*/bin, pgserver)")
    await server.recreate(DATABASE)
    base = [binary, *server.libpq_args()]
    env = server.libpq_env()
    try:
        await _run([*base, "-i", "-q", "-s", str(scale), DATABASE], env, within=120)
        out = await _run(
            [*base, "-c", str(clients), "-j", "2", "-T", str(seconds), DATABASE],
            env,
            within=seconds + 60,
        )
    finally:
        await server.drop(DATABASE)
    tps = _TPS.search(out)
    latency = _LATENCY.search(out)
    if tps is None:
        raise RuntimeError(f"could not read pgbench output:\n{out}")
    return PgbenchResult(
        tps=float(tps.group(1)),
        latency_ms=float(latency.group(1)) if latency else 0.0,
        clients=clients,
        scale=scale,
        seconds=seconds,
    )


async def _run(argv: list[str], env: dict[str, str], *, within: float) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        raise RuntimeError(f"{argv[0]} did not finish within {within} s") from None
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{text}")
    return text
