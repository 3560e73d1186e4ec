"""Migrations are the only way the schema is made, on both engines."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.databases import PostgresDatabases, SqliteDatabases
from tuition.store import schema
from tuition.store.db import create_engine
from tuition.store.tables import metadata


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


async def test_migrations_build_every_table_from_an_empty_database(
    empty_engine: AsyncEngine,
) -> None:
    assert await schema.current_revision(empty_engine) is None
    with pytest.raises(schema.SchemaOutOfDate, match="tuition migrate"):
        await schema.ensure_current(empty_engine)

    await schema.upgrade(empty_engine)

    async with empty_engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    assert set(metadata.tables) <= tables
    assert await schema.current_revision(empty_engine) == schema.head_revision()
    await schema.ensure_current(empty_engine)


async def test_the_migrations_build_exactly_what_tables_py_describes(
    empty_engine: AsyncEngine,
) -> None:
    await schema.upgrade(empty_engine)
    async with empty_engine.connect() as conn:
        differences = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    assert differences == [], "tables.py changed without a migration: see store/schema.py"


async def test_migrating_twice_is_a_no_op(empty_engine: AsyncEngine) -> None:
    await schema.upgrade(empty_engine)
    await schema.upgrade(empty_engine)
    assert await schema.current_revision(empty_engine) == schema.head_revision()


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_databases: SqliteDatabases) -> None:
    eng = create_engine(sqlite_databases.empty_url())
    try:
        async with eng.connect() as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
            fks = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar()
    finally:
        await eng.dispose()
    assert mode == "wal"
    assert fks == 1
