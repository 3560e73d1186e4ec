"""``python -m bench.hordak``: Tuition's ledger against django-hordak's, on the same
PostgreSQL, at the same concurrency, in the same run (docs/performance.md, "Targets").

Both post two-posting entries between the same two accounts (the hot case every payment
is: channel clearing and revenue), first one entry per transaction, then ``--batch``
entries per transaction, from ``--concurrency`` concurrent transactions for ``--seconds``
each: hordak from that many processes (bench/hordak_django/poster.py, in a virtualenv of
its own made on first use under ``--venv``; Django and django-hordak are not Tuition's
dependencies), Tuition from that many tasks of one process (bench.ledger's phases).
Targets: Tuition at least 3 times hordak one entry per transaction, 20 times batched.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.ledger import run_phase
from bench.postgres import Server, find_server
from bench.processes import loadavg
from tuition.store import schema
from tuition.store.db import create_engine

POSTER = Path(__file__).parent / "hordak_django" / "poster.py"
HORDAK_DATABASE = "tuition_bench_hordak"
TUITION_DATABASE = "tuition_bench_ledger"
REQUIREMENTS = ("django>=4.2,<6", "django-hordak==2.0.0", "psycopg2-binary>=2.9")
TARGET_SINGLE = 3.0
TARGET_BATCHED = 20.0
_LINE = re.compile(r"postings=(\d+) transactions=(\d+) seconds=([0-9.]+)")


@dataclass(frozen=True)
class Rate:
    postings: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.postings / self.seconds if self.seconds else 0.0


def ensure_venv(venv: Path) -> Path:
    """The virtualenv with Django and django-hordak; made (from the package registry) once."""
    python = venv / "bin" / "python"
    if (
        python.exists()
        and subprocess.run(  # noqa: S603 - our own interpreter
            [str(python), "-c", "import hordak, psycopg2"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return python
    print(f"making {venv} with {', '.join(REQUIREMENTS)} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # noqa: S603
    subprocess.run(  # noqa: S603
        [str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS], check=True
    )
    return python


def _env(server: Server) -> dict[str, str]:
    return {
        **os.environ,
        "BENCH_PG_DATABASE": HORDAK_DATABASE,
        "BENCH_PG_HOST": server.host,
        "BENCH_PG_PORT": str(server.port),
        "BENCH_PG_USER": server.url.username or "postgres",
        "BENCH_PG_PASSWORD": server.url.password or "",
    }


async def hordak_rate(
    python: Path, server: Server, *, processes: int, seconds: float, batch: int
) -> Rate:
    env = _env(server)
    procs = [
        await asyncio.create_subprocess_exec(
            str(python),
            str(POSTER),
            "post",
            str(seconds),
            str(batch),
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    outputs = [(await p.communicate())[0].decode() for p in procs]
    postings, took = 0, 0.0
    for out in outputs:
        found = _LINE.search(out)
        if found is None:
            raise RuntimeError(f"poster.py printed no result:\n{out}")
        postings += int(found.group(1))
        took = max(took, float(found.group(3)))
    return Rate(postings, took)


async def main(args: argparse.Namespace) -> int:
    python = ensure_venv(args.venv)
    print(f"load average at start: {loadavg()}", flush=True)
    server = await find_server()
    try:
        await server.recreate(HORDAK_DATABASE)
        env = _env(server)
        for step in ("migrate", "setup"):
            done = await asyncio.create_subprocess_exec(str(python), str(POSTER), step, env=env)
            if await done.wait() != 0:
                raise RuntimeError(f"poster.py {step} failed")
        hordak = {
            "one entry per transaction": await hordak_rate(
                python, server, processes=args.concurrency, seconds=args.seconds, batch=1
            ),
            f"batches of {args.batch}": await hordak_rate(
                python,
                server,
                processes=args.concurrency,
                seconds=args.seconds,
                batch=args.batch,
            ),
        }
        url = await server.recreate(TUITION_DATABASE)
        engine = create_engine(url, pool_size=max(args.concurrency, 4))
        try:
            await schema.upgrade(engine)
            ours = {}
            for name, batch in (
                ("one entry per transaction", 1),
                (f"batches of {args.batch}", args.batch),
            ):
                phase = await run_phase(
                    engine,
                    f"hot, {name}",
                    hot=True,
                    batch=batch,
                    tasks=args.concurrency,
                    seconds=args.seconds,
                    budget=int(args.seconds * (5_000 if batch == 1 else 60_000)),
                )
                ours[name] = Rate(phase.postings, phase.seconds)
        finally:
            await engine.dispose()
        await server.drop(HORDAK_DATABASE)
    finally:
        server.close()
    print(f"load average at end:   {loadavg()}")
    print()
    print(markdown(ours, hordak, args))
    return 0


def markdown(ours: dict[str, Rate], hordak: dict[str, Rate], args: argparse.Namespace) -> str:
    out = [
        f"Ledger against django-hordak 2.0.0: two-posting entries on two hot accounts, "
        f"{args.concurrency} concurrent transactions (hordak: processes; Tuition: tasks of "
        f"one process), {args.seconds:g} s each",
        "",
        "| phase | Tuition postings/s | hordak postings/s | ratio | target | met |",
        "| --- | ---: | ---: | ---: | ---: | :---: |",
    ]
    for name, theirs in hordak.items():
        mine = ours[name]
        ratio = mine.per_s / theirs.per_s if theirs.per_s else 0.0
        target = TARGET_SINGLE if name.startswith("one") else TARGET_BATCHED
        met = "yes" if ratio >= target else "**no**"
        out.append(
            f"| {name} | {mine.per_s:,.0f} | {theirs.per_s:,.0f} | {ratio:.1f} x | ≥ {target:g} x "
            f"| {met} |"
        )
    return "\n".join(out)


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.hordak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument(
        "--venv", type=Path, default=Path.home() / ".cache" / "tuition-bench" / "hordak-venv"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(_args(sys.argv[1:]))))
