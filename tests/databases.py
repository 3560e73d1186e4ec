"""Test databases on both engines, each test on a fresh copy of a migrated template.

PostgreSQL comes from TUITION_TEST_DATABASE_URL (a server URL whose user may create
databases) or, when it is unset, from the ``pgserver`` wheel, started once per run.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import URL, make_url

from tuition.store import schema
from tuition.store.db import create_engine

_counter = itertools.count()
_RUN = f"{os.getpid()}"


class SqliteDatabases:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tuition-test-"))
        self.template = self.dir / "template.db"

    async def prepare(self) -> None:
        if self.template.exists():
            return
        engine = create_engine(f"sqlite+aiosqlite:///{self.template}")
        try:
            await schema.upgrade(engine)
        finally:
            await engine.dispose()

    @asynccontextmanager
    async def fresh(self) -> AsyncIterator[str]:
        await self.prepare()
        path = self.dir / f"t{next(_counter)}.db"
        shutil.copyfile(self.template, path)
        try:
            yield f"sqlite+aiosqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

    def empty_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.dir / f'empty{next(_counter)}.db'}"

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresDatabases:
    def __init__(self) -> None:
        self._server: object | None = None
        given = os.environ.get("TUITION_TEST_DATABASE_URL")
        if given:
            self.server_url = make_url(given).set(drivername="postgresql+asyncpg")
        else:
            import pgserver  # a test dependency; starts a private server

            self._server = pgserver.get_server(
                tempfile.mkdtemp(prefix="tuition-pg-"), cleanup_mode="stop"
            )
            uri = make_url(self._server.get_uri())  # type: ignore[attr-defined]
            self.server_url = uri.set(drivername="postgresql+asyncpg")
        self.template = f"tuition_tpl_{_RUN}"
        self._prepared = False

    def _url(self, database: str) -> URL:
        return self.server_url.set(database=database)

    async def _admin(self, sql: str) -> None:
        url = self.server_url
        conn = await asyncpg.connect(
            user=url.username,
            password=url.password or None,
            host=url.query.get("host") or url.host,
            port=url.port,
            database=url.database or "postgres",
        )
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def prepare(self) -> None:
        if self._prepared:
            return
        self._prepared = True
        await self._admin(f'DROP DATABASE IF EXISTS "{self.template}"')
        await self._admin(f'CREATE DATABASE "{self.template}"')
        engine = create_engine(self._url(self.template).render_as_string(hide_password=False))
        try:
            await schema.upgrade(engine)
        finally:
            await engine.dispose()

    @asynccontextmanager
    async def fresh(self) -> AsyncIterator[str]:
        await self.prepare()
        name = f"tuition_t_{_RUN}_{next(_counter)}"
        await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        try:
            yield self._url(name).render_as_string(hide_password=False)
        finally:
            await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @asynccontextmanager
    async def empty(self) -> AsyncIterator[str]:
        name = f"tuition_e_{_RUN}_{next(_counter)}"
        await self._admin(f'CREATE DATABASE "{name}"')
        try:
            yield self._url(name).render_as_string(hide_password=False)
        finally:
            await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        try:
            asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)'))
        finally:
            if self._server is not None:
                self._server.cleanup()  # type: ignore[attr-defined]
