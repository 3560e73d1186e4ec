"""What must hold after a run: every order paid once, ledger clean, no outbox row lost."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class Queries(Protocol):
    """What the checks ask of a database: an asyncpg connection, or :class:`SqliteQueries`.
    The checks' SQL is the same on both engines and takes no parameters."""

    async def fetchval(self, sql: str) -> Any: ...

    async def fetch(self, sql: str) -> list[Any]: ...


class SqliteQueries:
    """The checks' two calls on a SQLite file (read in a thread; the API keeps writing)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _rows(self, sql: str) -> list[Any]:
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    async def fetch(self, sql: str) -> list[Any]:
        return await asyncio.to_thread(self._rows, sql)

    async def fetchval(self, sql: str) -> Any:
        rows = await self.fetch(sql)
        return rows[0][0] if rows else None

    async def close(self) -> None:
        return None


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Checks:
    items: list[Check] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.items.append(Check(name, ok, detail))

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.items)


async def wait_for_outbox(conn: Queries, within: float) -> tuple[int, float]:
    """Wait until the worker has dispatched every outbox event; (left over, seconds waited)."""
    started = time.monotonic()
    while True:
        left = int(
            await conn.fetchval("SELECT count(*) FROM outbox_events WHERE dispatched_at IS NULL")
        )
        waited = time.monotonic() - started
        if left == 0 or waited >= within:
            return left, waited
        await asyncio.sleep(0.5)


async def database_checks(
    conn: Queries, paid_by_client: list[str], *, recovered: list[str] | None = None
) -> Checks:
    """``recovered``: orders paid without a notification (lost ones, found by the
    recovery job): paid, but with no notification row."""
    lost = list(recovered or [])
    paid_by_client = [*paid_by_client, *lost]
    checks = Checks()
    # Every other check holds vacuously when nothing was paid: a run that paid nothing fails.
    checks.add("the load paid orders", bool(paid_by_client), f"{len(paid_by_client)} seen paid")
    paid_ids = {str(r[0]) for r in await conn.fetch("SELECT id FROM orders WHERE status = 'paid'")}
    confirmed = len(paid_ids & set(paid_by_client))
    checks.add(
        "orders the client saw paid are paid",
        confirmed == len(paid_by_client),
        f"{confirmed} of {len(paid_by_client)}",
    )
    paid = int(await conn.fetchval("SELECT count(*) FROM orders WHERE status = 'paid'"))
    unpaid = int(await conn.fetchval("SELECT count(*) FROM orders WHERE status <> 'paid'"))
    checks.add(
        "no order paid that the client did not see paid",
        paid == len(paid_by_client),
        f"{paid} paid in the database; {unpaid} left unpaid by failed flows",
    )
    twice = int(
        await conn.fetchval(
            "SELECT count(*) FROM (SELECT order_id FROM payments WHERE status = 'succeeded' "
            "GROUP BY order_id HAVING count(*) > 1) AS t"
        )
    )
    succeeded = int(await conn.fetchval("SELECT count(*) FROM payments WHERE status='succeeded'"))
    checks.add(
        "every order paid once",
        twice == 0 and succeeded == paid,
        f"{succeeded} succeeded payments, {twice} orders with more than one",
    )
    entries = int(
        await conn.fetchval("SELECT count(*) FROM journal_entries WHERE source LIKE 'payment:%'")
    )
    checks.add("one journal entry per payment", entries == succeeded, f"{entries} entries")
    grants = int(await conn.fetchval("SELECT count(*) FROM entitlements"))
    checks.add("one entitlement per paid order", grants == paid, f"{grants} entitlements")
    verdicts = dict(
        await conn.fetch("SELECT verdict, count(*) FROM notifications GROUP BY verdict")
    )
    checks.add(
        "every notification applied",
        verdicts.get("applied", 0) == paid - len(lost) and len(verdicts) <= 1,
        ", ".join(f"{v}={n}" for v, n in sorted(verdicts.items())) or "none",
    )
    events = dict(await conn.fetch("SELECT type, count(*) FROM outbox_events GROUP BY type"))
    checks.add(
        "outbox: order.paid and payment.succeeded once per payment",
        events.get("order.paid", 0) == paid and events.get("payment.succeeded", 0) == succeeded,
        ", ".join(f"{t}={n}" for t, n in sorted(events.items())) or "none",
    )
    undispatched = int(
        await conn.fetchval("SELECT count(*) FROM outbox_events WHERE dispatched_at IS NULL")
    )
    checks.add("no outbox row lost (all dispatched)", undispatched == 0, f"{undispatched} left")
    return checks


def ledger_verify(tuition: str, env: Mapping[str, str], timeout: float) -> Check:
    """``tuition ledger verify`` (seals what the worker has not, then checks everything)."""
    started = time.monotonic()
    try:
        result = subprocess.run(  # noqa: S603 - our own argv
            [tuition, "--mode", "test", "ledger", "verify"],  # the bench's key is a test key
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Check("tuition ledger verify", False, f"timed out after {timeout:.0f} s")
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    took = time.monotonic() - started
    return Check(
        "tuition ledger verify",
        result.returncode == 0,
        f"{' / '.join(lines[-2:])} ({took:.1f} s)",
    )
