"""``python -m bench.ledger``: postings/s through ``LedgerRepository.post_many``.

Four phases on a fresh ``tuition_bench_ledger`` database, each posting pre-built
two-posting entries for at most ``--seconds``:

* ``batched, random accounts``: batches of ``--batch`` entries, each moving money
  between two of 10,000 customer wallets, from ``--concurrency`` concurrent tasks;
* ``batched, hot accounts``: the same, but every entry debits channel clearing and
  credits platform revenue, the two house accounts every payment touches;
* ``one entry per transaction, hot``: how a payment posts (16 concurrent transactions);
* the same with balance sharding off (``SHARDS = 1``): every posting updates one row,
  the row-lock ceiling DESIGN.md §4 warns about;
* sealing: hash-chaining the posted entries in batches of 5,000, as the worker does.

Afterwards stored balances must equal the sum of postings. Entries are built before
the clock starts: the numbers are the store's, not the domain's.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

import tuition.store.ledger as ledger_store
from bench.postgres import find_server
from bench.processes import loadavg
from bench.run import wait_for_idle
from tuition.domain.ledger import AccountKind, AccountRef, JournalEntry, Posting, build_entry
from tuition.store import schema
from tuition.store.db import create_engine
from tuition.store.uow import UnitOfWork

DATABASE = "tuition_bench_ledger"
WALLETS = 10_000
CLEARING = AccountRef(AccountKind.CHANNEL_CLEARING, "CNY", "sandbox")
REVENUE = AccountRef(AccountKind.PLATFORM_REVENUE, "CNY")
TARGET_BATCHED = 20_000.0
TARGET_HOT = 3_000.0


@dataclass(frozen=True)
class Phase:
    name: str
    postings: int
    entries: int
    transactions: int
    seconds: float
    client_cpu: float = 0.0  # CPU seconds of this (the posting) process

    @property
    def postings_per_s(self) -> float:
        return self.postings / self.seconds


_WALLETS = [AccountRef(AccountKind.CUSTOMER_WALLET, "CNY", f"cus_{n:05d}") for n in range(WALLETS)]


def build_entries(phase: str, count: int, *, hot: bool, rng: random.Random) -> list[JournalEntry]:
    now = datetime.now(UTC)
    entries = []
    for n in range(count):
        amount = rng.randrange(1, 100_000)
        if hot:
            debit, credit = CLEARING, REVENUE
        else:
            a, b = rng.sample(range(WALLETS), 2)
            debit, credit = _WALLETS[a], _WALLETS[b]
        entries.append(
            build_entry(
                f"bench:{phase}:{n}",
                "bench",
                (Posting(debit, amount), Posting(credit, -amount)),
                now,
            )
        )
    return entries


async def post_batches(
    engine: AsyncEngine, entries: Sequence[JournalEntry], *, batch: int, tasks: int, limit: float
) -> tuple[int, int, float]:
    """Post ``entries`` in batches from ``tasks`` concurrent tasks, stopping at ``limit`` s.

    Returns (entries posted, transactions, seconds).
    """
    batches = [entries[i : i + batch] for i in range(0, len(entries), batch)]
    queue: asyncio.Queue[Sequence[JournalEntry]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)
    started = time.perf_counter()
    deadline = started + limit
    posted = transactions = 0

    async def worker() -> None:
        nonlocal posted, transactions
        while not queue.empty() and time.perf_counter() < deadline:
            chunk = queue.get_nowait()
            async with UnitOfWork(engine) as uow:
                new = await uow.ledger.post_many(chunk, at=datetime.now(UTC))
                await uow.commit()
            # Not "posted += await ...": that reads posted before the await.
            posted += new
            transactions += 1

    await asyncio.gather(*(worker() for _ in range(tasks)))
    return posted, transactions, time.perf_counter() - started


async def run_phase(
    engine: AsyncEngine,
    name: str,
    *,
    hot: bool,
    batch: int,
    tasks: int,
    seconds: float,
    budget: int,
) -> Phase:
    rng = random.Random(name)  # noqa: S311 - benchmark data
    entries = build_entries(name.replace(" ", "_"), budget, hot=hot, rng=rng)
    cpu = time.process_time()
    posted, transactions, took = await post_batches(
        engine, entries, batch=batch, tasks=tasks, limit=seconds
    )
    phase = Phase(name, posted * 2, posted, transactions, took, time.process_time() - cpu)
    print(
        f"{name:42} {phase.postings_per_s:9,.0f} postings/s "
        f"({posted:,} entries, {transactions:,} transactions, {took:.1f} s, "
        f"client CPU {100 * phase.client_cpu / took:.0f} %)",
        flush=True,
    )
    return phase


async def seal_for(engine: AsyncEngine, seconds: float) -> Phase:
    """Hash-chain posted entries (what the worker's sweep does) for up to ``seconds``."""
    started, cpu = time.perf_counter(), time.process_time()
    sealed = transactions = 0
    while time.perf_counter() - started < seconds:
        async with UnitOfWork(engine) as uow:
            count = await uow.ledger.seal(limit=5000)
            await uow.commit()
        sealed += count
        transactions += 1
        if count == 0:
            break
    phase = Phase("sealing (hash chain), entries/s", sealed, sealed, transactions, 0.0)
    phase = dataclasses.replace(
        phase, seconds=time.perf_counter() - started, client_cpu=time.process_time() - cpu
    )
    print(f"{phase.name:42} {phase.postings_per_s:9,.0f} entries/s ({sealed:,} entries)")
    return phase


async def check_balances(engine: AsyncEngine) -> bool:
    async with UnitOfWork(engine) as uow:
        stored = await uow.ledger.balances()
        computed = await uow.ledger.posted_balances()
    return {k: v for k, v in stored.items() if v} == {k: v for k, v in computed.items() if v}


async def main(args: argparse.Namespace) -> int:
    await wait_for_idle(args.wait_idle)
    print(f"load average at start: {loadavg()}", flush=True)
    server = await find_server()
    try:
        url = await server.recreate(DATABASE)
        engine = create_engine(url, pool_size=16)
        try:
            await schema.upgrade(engine)
            phases = await _phases(engine, args)
            phases.append(await seal_for(engine, args.seconds))
            balanced = await check_balances(engine)
        finally:
            await engine.dispose()
    finally:
        server.close()
    print(f"load average at end:   {loadavg()}")
    print("stored balances equal the sum of postings:", "yes" if balanced else "NO")
    print()
    print(markdown(phases, args))
    return 0 if balanced else 1


async def _phases(engine: AsyncEngine, args: argparse.Namespace) -> list[Phase]:
    seconds, batch, tasks = args.seconds, args.batch, args.concurrency
    # Enough entries that a phase ends by time, not by running out (up to 120k postings/s).
    budget = int(seconds * 60_000)
    phases = [
        await run_phase(
            engine,
            "batched, random accounts",
            hot=False,
            batch=batch,
            tasks=tasks,
            seconds=seconds,
            budget=budget,
        ),
        await run_phase(
            engine,
            "batched, hot accounts",
            hot=True,
            batch=batch,
            tasks=tasks,
            seconds=seconds,
            budget=budget,
        ),
    ]
    single = int(seconds * 5_000)
    phases.append(
        await run_phase(
            engine,
            "one entry per transaction, hot",
            hot=True,
            batch=1,
            tasks=16,
            seconds=seconds,
            budget=single,
        )
    )
    sharded = ledger_store.SHARDS
    ledger_store.SHARDS = 1
    try:
        phases.append(
            await run_phase(
                engine,
                "one entry per transaction, hot, unsharded",
                hot=True,
                batch=1,
                tasks=16,
                seconds=seconds,
                budget=single,
            )
        )
    finally:
        ledger_store.SHARDS = sharded
    return phases


def markdown(phases: list[Phase], args: argparse.Namespace) -> str:
    targets = {
        "batched, random accounts": TARGET_BATCHED,
        "batched, hot accounts": TARGET_HOT,
    }
    out = [
        f"Ledger: 2-posting entries, batches of {args.batch} from {args.concurrency} tasks; "
        "single entries from 16 tasks",
        "",
        "| phase | postings/s | entries | transactions | seconds | client CPU | target | met |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for p in phases:
        target = targets.get(p.name)
        met = "" if target is None else ("yes" if p.postings_per_s >= target else "**no**")
        out.append(
            f"| {p.name} | {p.postings_per_s:,.0f} | {p.entries:,} | {p.transactions:,} | "
            f"{p.seconds:.1f} | {100 * p.client_cpu / p.seconds:.0f} % | "
            f"{'' if target is None else f'≥ {target:,.0f}'} | {met} |"
        )
    return "\n".join(out) + "\n"


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="limit per phase")
    parser.add_argument("--batch", type=int, default=1000, help="entries per post_many")
    parser.add_argument("--concurrency", type=int, default=2, help="concurrent batches")
    parser.add_argument(
        "--wait-idle",
        type=int,
        default=0,
        metavar="SECONDS",
        help="first wait up to this long for the 1-minute load average to drop below 1",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main(args))
    return uvloop.run(main(args))


if __name__ == "__main__":
    raise SystemExit(cli())
