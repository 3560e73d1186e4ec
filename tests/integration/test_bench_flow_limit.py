"""The flow-limit script (bench/sql/flow_limit.sql) still fits the schema and still does
one whole payment flow: it is what docs/performance.md's "limit" measures."""

from __future__ import annotations

import pytest
from bench.flow_limit import SETUP, statements
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.postgres_only


async def test_the_flow_limit_script_runs_whole_flows_on_the_migrated_schema(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.execute(SETUP.read_text())
        for r, shard, client in ((11, 3, 0), (12, 3, 1), (13, 15, 0)):
            for sql in statements({"r": r, "shard": shard, "client_id": client}):
                await driver.execute(sql)

        async def one(sql: str) -> object:
            return (await conn.execute(text(sql))).scalar_one()

        assert await one("SELECT count(*) FROM orders WHERE status = 'paid'") == 3
        assert await one("SELECT count(*) FROM payments WHERE status = 'succeeded'") == 3
        assert await one("SELECT count(*) FROM entitlements") == 3
        assert await one("SELECT count(*) FROM outbox_events") == 3
        # Each entry balances, and so do the balances the postings moved.
        unbalanced = await one(
            "SELECT count(*) FROM (SELECT entry_seq FROM postings GROUP BY entry_seq "
            "HAVING sum(amount) <> 0) AS e"
        )
        assert unbalanced == 0
        assert await one("SELECT count(*) FROM postings") == 9
        assert await one("SELECT sum(balance) FROM ledger_balances") == 0
        assert await one("SELECT sum(amount) FROM postings") == 0
