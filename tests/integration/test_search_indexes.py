"""The console's search in any case is answered by indexes on both engines (migration
0025): each branch of a list's text search (the start of a customer id or a name, a
gateway number in any case) uses its ``lower()`` index, as EXPLAIN shows, and the
migration upgrades and downgrades on both engines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Select, inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.databases import PostgresDatabases, SqliteDatabases
from tuition.store import schema
from tuition.store.admin import AdminRepository, OrderSearch, PaymentSearch
from tuition.store.admin_lists import (
    AdminLists,
    InvoiceSearch,
    PayeeSearch,
    RefundSearch,
    SubscriptionSearch,
)
from tuition.store.db import create_engine

INDEXES = {
    "orders": ["ix_orders_customer_id_lower"],
    "payments": ["ix_payments_customer_id_lower", "ix_payments_channel_trade_no_lower"],
    "refunds": ["ix_refunds_customer_id_lower", "ix_refunds_channel_refund_no_lower"],
    "wallet_balances": ["ix_wallet_balances_customer_id_lower"],
    "subscriptions": ["ix_subscriptions_customer_id_lower"],
    "agreements": ["ix_agreements_agreement_no_lower"],
    "invoice_requests": [
        "ix_invoice_requests_customer_id_lower",
        "ix_invoice_requests_invoice_number_lower",
    ],
    "payees": ["ix_payees_name_lower"],
}


@pytest.fixture
async def empty_engine(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[AsyncEngine]:
    if backend == "sqlite":
        dbs: SqliteDatabases = request.getfixturevalue("sqlite_databases")
        eng = create_engine(dbs.empty_url())
        yield eng
        await eng.dispose()
    else:
        pg: PostgresDatabases = request.getfixturevalue("postgresql_databases")
        async with pg.empty() as url:
            eng = create_engine(url)
            yield eng
            await eng.dispose()


async def _plan(conn: AsyncConnection, query: Select[Any]) -> str:
    """The engine's plan for ``query`` with its parameters as literals (what the planner
    sees on a custom plan). PostgreSQL is told not to scan sequentially where it has any
    other way, so a plan still scanning has no index it can use."""
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    if conn.dialect.name == "sqlite":
        rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")
        return "\n".join(str(r[-1]) for r in rows)
    await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    rows = await conn.exec_driver_sql(f"EXPLAIN {sql}")
    return "\n".join(str(r[0]) for r in rows)


def _queries(conn: AsyncConnection) -> dict[str, tuple[Select[Any], list[str]]]:
    """Each list's search query and the indexes its branches should use."""
    admin = AdminRepository(conn)
    lists = AdminLists(conn)
    q = "Cust-Al"
    return {
        "orders": (
            admin._orders_query(OrderSearch(text=q)),
            INDEXES["orders"] + INDEXES["payments"][1:] + INDEXES["refunds"][1:],
        ),
        "payments": (
            admin._payments_query(PaymentSearch(text=q)),
            INDEXES["payments"] + INDEXES["refunds"][1:],
        ),
        "refunds": (lists.refunds(RefundSearch(text=q)).query, INDEXES["refunds"]),
        "subscriptions": (
            lists.subscriptions(SubscriptionSearch(text=q)).query,
            INDEXES["subscriptions"] + INDEXES["agreements"],
        ),
        "invoices": (lists.invoices(InvoiceSearch(text=q)).query, INDEXES["invoice_requests"]),
        "payees": (lists.payees(PayeeSearch(text=q)).query, INDEXES["payees"]),
    }


async def test_every_search_branch_uses_a_lower_index(empty_engine: AsyncEngine) -> None:
    await schema.upgrade(empty_engine)
    async with empty_engine.begin() as conn:
        for name, (query, wanted) in _queries(conn).items():
            plan = await _plan(conn, query)
            for index in wanted:
                assert index in plan, f"{name}: {index} unused in\n{plan}"
        customers = AdminRepository(conn)
        # The customer search's union reads both tables by index too.
        plan = await _plan(
            conn,
            select_customers(customers, "cust-"),
        )
        assert INDEXES["orders"][0] in plan, plan
        assert INDEXES["wallet_balances"][0] in plan, plan


def select_customers(repo: AdminRepository, prefix: str) -> Select[Any]:
    return repo.customers_query(prefix, limit=20)


async def _indexes(conn: AsyncConnection) -> set[str]:
    if conn.dialect.name == "sqlite":
        rows = await conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index'")
        return {str(r[0]) for r in rows}

    def names(sync: Any) -> set[str]:
        found = inspect(sync)
        return {i["name"] for t in INDEXES for i in found.get_indexes(t) if i["name"]}

    return await conn.run_sync(names)


async def test_the_index_migration_upgrades_and_downgrades(empty_engine: AsyncEngine) -> None:
    wanted = {index for names in INDEXES.values() for index in names}
    await schema.upgrade(empty_engine, "0024")
    async with empty_engine.connect() as conn:
        assert not wanted & await _indexes(conn)
    await schema.upgrade(empty_engine)
    async with empty_engine.connect() as conn:
        assert wanted <= await _indexes(conn)
        if conn.dialect.name == "postgresql":
            definition = (
                await conn.execute(
                    text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"),
                    {"n": "ix_orders_customer_id_lower"},
                )
            ).scalar_one()
            assert "lower((customer_id)::text) text_pattern_ops" in definition
    await schema.downgrade(empty_engine, "0024")
    async with empty_engine.connect() as conn:
        assert not wanted & await _indexes(conn)
    await schema.upgrade(empty_engine)
    assert await schema.current_revision(empty_engine) == schema.head_revision()
