"""The PostgreSQL a benchmark runs on: the local server, or a private one from ``pgserver``.

The bench only talks to 127.0.0.1 (or, for the ``pgserver`` fallback, a Unix socket
that server made): the server URL comes from ``BENCH_PG_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``), and when nothing answers there the
``pgserver`` wheel (a test dependency) starts a throwaway server.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import URL, make_url

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class Server:
    """A PostgreSQL server the bench may create and drop databases on."""

    url: URL  # of the maintenance database, driver postgresql+asyncpg
    bin_dir: Path | None = None  # where its client programs (pgbench) live, if bundled
    handle: object | None = field(default=None, repr=False)  # the pgserver instance

    @property
    def host(self) -> str:
        return str(self.url.query.get("host") or self.url.host or "127.0.0.1")

    @property
    def port(self) -> int:
        return int(self.url.port or 5432)

    def database_url(self, name: str) -> str:
        """A SQLAlchemy URL for database ``name`` (what TUITION_DATABASE_URL takes)."""
        return self.url.set(database=name).render_as_string(hide_password=False)

    def libpq_args(self) -> list[str]:
        """``-h -p -U`` for libpq programs such as pgbench."""
        return ["-h", self.host, "-p", str(self.port), "-U", self.url.username or "postgres"]

    def libpq_env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.url.password:
            env["PGPASSWORD"] = self.url.password
        return env

    async def connect(
        self, database: str | None = None, *, schema: str | None = None
    ) -> asyncpg.Connection:
        """``schema``: the connection's ``search_path`` (``TEST_MODE_SCHEMA`` for what the
        bench's test-mode key wrote)."""
        return await asyncpg.connect(
            user=self.url.username,
            password=self.url.password or None,
            host=self.host,
            port=self.port,
            database=database or self.url.database or "postgres",
            server_settings={"search_path": schema} if schema else None,
        )

    async def recreate(self, name: str) -> str:
        """Drop (with FORCE) and create database ``name``; returns its SQLAlchemy URL."""
        conn = await self.connect()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.database_url(name)

    async def drop(self, name: str) -> None:
        conn = await self.connect()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    async def describe(self) -> dict[str, str]:
        """Version and the settings that decide how fast commits are."""
        conn = await self.connect()
        try:
            out = {"version": str(await conn.fetchval("SHOW server_version"))}
            for name in ("max_connections", "shared_buffers", "synchronous_commit", "fsync"):
                out[name] = str(await conn.fetchval(f"SHOW {name}"))
        finally:
            await conn.close()
        return out

    def close(self) -> None:
        if self.handle is not None:
            self.handle.cleanup()  # type: ignore[attr-defined]


async def find_server() -> Server:
    """The server at ``BENCH_PG_URL`` if it answers, else a private pgserver one."""
    url = make_url(os.environ.get("BENCH_PG_URL", DEFAULT_URL)).set(drivername="postgresql+asyncpg")
    server = Server(url)
    try:
        conn = await server.connect()
    except (OSError, asyncpg.PostgresError):
        return _start_pgserver()
    await conn.close()
    return server


def _start_pgserver() -> Server:
    import pgserver  # a test dependency; listens on a Unix socket only

    handle = pgserver.get_server(  # type: ignore[attr-defined]
        tempfile.mkdtemp(prefix="tuition-bench-pg-"), cleanup_mode="delete"
    )
    url = make_url(handle.get_uri()).set(drivername="postgresql+asyncpg")
    bin_dir = Path(pgserver.__file__).parent / "pginstall" / "bin"
    return Server(url, bin_dir=bin_dir, handle=handle)


def pgbench_path(server: Server) -> str | None:
    """pgbench: bundled with the server, on PATH, or in Debian's versioned directory."""
    if server.bin_dir is not None and (server.bin_dir / "pgbench").exists():
        return str(server.bin_dir / "pgbench")
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"))
    return candidates[-1] if candidates else None
