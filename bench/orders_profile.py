"""``python -m bench.orders_profile``: one request type, POST /v1/orders, under load and
sampled by py-spy.

Deploys as ``python -m bench`` does, with one API process (``tuition serve --workers 1``)
and one worker, then ``--users`` connections send nothing but ``POST /v1/orders`` (an
``Idempotency-Key`` each, one course per order, as the flow's first step) for
``--warmup`` + ``--duration`` seconds. During the measured window py-spy (if installed:
``pip install 'py-spy>=0.4'``) samples the API process, pinned to core 0 with
everything else on core 1 (see ``bench/profile.py``). Reported: orders/s, the API's CPU
per order, latency, and where the API's busy time went by layer and by tuition function.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import profile as profile_mod
from bench.flows import Target, seed_catalog
from bench.http import Connection, HttpError
from bench.postgres import find_server
from bench.processes import cpu_seconds, loadavg
from bench.stack import APP_ID, HOST, Stack, deploy, make_stack
from bench.stats import Summary

DATABASE = "tuition_bench_orders"


@dataclass(frozen=True)
class Options:
    duration: int = 20
    warmup: int = 3
    users: int = 8
    creators: int = 20
    profile: bool = True
    database: str = DATABASE
    workdir: Path | None = None


@dataclass
class Result:
    options: dict[str, str]
    loadavg_start: str
    loadavg_end: str = ""
    orders: int = 0
    seconds: float = 0.0
    api_cpu_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    latency_ms: Summary | None = None
    profile: profile_mod.Profile | None = None
    workdir: str = ""

    @property
    def orders_per_s(self) -> float:
        return self.orders / self.seconds if self.seconds else 0.0


async def run(options: Options) -> Result:
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="tuition-bench-orders-"))
    workdir.mkdir(parents=True, exist_ok=True)
    result = Result({k: str(v) for k, v in vars(options).items()}, loadavg(), workdir=str(workdir))
    server = await find_server()
    try:
        url = await server.recreate(options.database)
        stack = make_stack(workdir, url, pool_size=None)
        try:
            print(f"deploying in {workdir} ...", flush=True)
            await deploy(stack, api_workers=1)
            await _measure(stack.api_workers(), stack, options, result)
        finally:
            stack.stop()
    finally:
        server.close()
    result.loadavg_end = loadavg()
    return result


async def _measure(api: list[int], stack: Stack, options: Options, result: Result) -> None:
    target = Target(HOST, stack.api_port, stack.api_key, APP_ID, stack.key_file)
    products = await seed_catalog(target, creators=options.creators)
    headers = {"Authorization": f"Bearer {target.api_key}", "Content-Type": "application/json"}
    measuring = False
    latencies: list[float] = []
    count = 0
    stop = asyncio.Event()

    async def user(u: int) -> None:
        nonlocal count
        conn = Connection(target.host, target.port)
        n = 0
        try:
            while not stop.is_set():
                n += 1
                ref = f"o-{os.getpid()}-{u}-{n}"
                body = {
                    "customer_id": f"cus_{ref}",
                    "currency": "CNY",
                    "items": [{"product_id": products[n % len(products)]}],
                }
                t0 = time.perf_counter()
                try:
                    answer = await conn.request(
                        "POST",
                        "/v1/orders",
                        json.dumps(body).encode(),
                        {**headers, "Idempotency-Key": ref},
                    )
                except HttpError as exc:
                    _note(result, str(exc))
                    await asyncio.sleep(0.05)
                    continue
                if answer.status != 201:
                    _note(result, f"HTTP {answer.status} {answer.body[:200]!r}")
                    await asyncio.sleep(0.05)
                    continue
                if measuring:
                    latencies.append((time.perf_counter() - t0) * 1000)
                    count += 1
        finally:
            conn.close()

    print(f"load: {options.users} users, POST /v1/orders only", flush=True)
    users = [asyncio.create_task(user(u)) for u in range(options.users)]
    await asyncio.sleep(options.warmup)
    spies = []
    raws = [stack.workdir / f"orders-profile-{pid}.txt" for pid in api]
    if options.profile and profile_mod.available():
        others = [p.pid for p in stack.procs if p.name != "api"] + [os.getpid()]
        profile_mod.pin(api, others)
        for pid, raw in zip(api, raws, strict=True):
            spies.append(await profile_mod.record(pid, options.duration, raw))
    before = sum(cpu_seconds(pid).total for pid in api)
    started = time.monotonic()
    measuring = True
    await asyncio.sleep(options.duration)
    measuring = False
    result.seconds = time.monotonic() - started
    result.api_cpu_s = sum(cpu_seconds(pid).total for pid in api) - before
    stop.set()
    await asyncio.gather(*users)
    result.orders = count
    result.latency_ms = Summary.of(latencies)
    if spies:
        await asyncio.gather(*(spy.wait() for spy in spies))
        result.profile = profile_mod.summarize(raws)


def _note(result: Result, error: str) -> None:
    if len(result.errors) < 10:
        result.errors.append(error[:300])


def markdown(r: Result) -> str:
    o = r.options
    per = r.api_cpu_s / r.orders * 1000 if r.orders else 0.0
    lat = r.latency_ms
    out = [
        "## POST /v1/orders alone, one API process",
        "",
        f"- load average: start `{r.loadavg_start}`, end `{r.loadavg_end}`"
        + (" — **a busy machine**" if float(r.loadavg_start.split()[0]) >= 1.0 else ""),
        f"- {o['users']} users, {o['warmup']} s warm-up, {o['duration']} s measured; logs and "
        f"raw stacks in `{r.workdir}`",
        "",
        "| metric | value |",
        "| --- | ---: |",
        f"| orders/s ({r.orders} in {r.seconds:.1f} s) | {r.orders_per_s:.1f} |",
        f"| API CPU per order | {per:.2f} ms |",
    ]
    if lat is not None and lat.count:
        out.append(
            f"| latency p50 / p99 / max | {lat.p50:.1f} / {lat.p99:.1f} / {lat.max:.1f} ms |"
        )
    out.append(f"| errors | {len(r.errors)} |")
    if r.errors:
        out += ["", *(f"- `{e}`" for e in r.errors)]
    p = r.profile
    if p is None:
        out += ["", "No profile (py-spy not installed, or --no-profile)."]
    else:
        out += [
            "",
            f"{p.samples} busy samples of the API process.",
            "",
            "| layer (leaf frame) | share of busy CPU |",
            "| --- | ---: |",
            *(f"| {name} | {share:.1f} % |" for name, share in p.by_layer),
            "",
            "| function (inclusive) | share |",
            "| --- | ---: |",
            *(f"| `{name}` | {share:.1f} % |" for name, share in p.inclusive),
        ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.orders_profile", description=__doc__)
    d = Options()
    parser.add_argument("--duration", type=int, default=d.duration)
    parser.add_argument("--warmup", type=int, default=d.warmup)
    parser.add_argument("--users", type=int, default=d.users)
    parser.add_argument("--creators", type=int, default=d.creators)
    parser.add_argument("--no-profile", action="store_true", help="load only, no py-spy")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    options = Options(
        duration=args.duration,
        warmup=args.warmup,
        users=args.users,
        creators=args.creators,
        profile=not args.no_profile,
        workdir=args.workdir,
    )
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    result = asyncio.run(run(options))
    print()
    print(markdown(result))
    return 0 if result.orders and not result.errors else 1


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwind through the finally blocks that stop servers


if __name__ == "__main__":
    raise SystemExit(main())
