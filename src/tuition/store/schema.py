"""Schema management: Alembic migrations are the only way the schema is made."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaOutOfDate(Exception):
    pass


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def upgrade(engine: AsyncEngine, target: str = "head") -> None:
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await _create_own_schema(conn)
        await conn.run_sync(lambda sync: command.upgrade(_config(sync), target))


async def downgrade(engine: AsyncEngine, target: str) -> None:
    """Step the schema back to ``target`` (for operators undoing a release, and tests)."""
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: command.downgrade(_config(sync), target))


async def _create_own_schema(conn: AsyncConnection) -> None:
    """Create the engine's own schema (its ``search_path``, test mode's store) if it
    is not there yet; an engine on ``public`` has nothing to create."""
    path = (await conn.execute(text("SHOW search_path"))).scalar_one()
    first = str(path).split(",")[0].strip().strip('"')
    if first and first not in ("$user", "public"):
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{first}"'))


async def autogenerate(engine: AsyncEngine, message: str, rev_id: str) -> None:
    """Write a new migration from the difference between tables.py and the database."""
    async with engine.begin() as conn:
        await conn.run_sync(
            lambda sync: command.revision(
                _config(sync), message=message, autogenerate=True, rev_id=rev_id
            )
        )


async def ensure_current(engine: AsyncEngine) -> None:
    current, head = await current_revision(engine), head_revision()
    if current != head:
        raise SchemaOutOfDate(
            f"the database schema is at revision {current or 'none (empty database)'} "
            f"but this version of Tuition needs {head}; run `tuition migrate` first"
        )
