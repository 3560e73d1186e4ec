"""Engine construction: one place that knows SQLite and PostgreSQL differ."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Column, String, Table, event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

# A pooled connection unused for longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 5.0
_CHECKED_IN = "tuition_checked_in"
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


# Prebuilt statements. Building a Core statement (``select(t).where(t.c.id == x)``,
# ``insert(t).values(**row)``) and computing its cache key costs 0.1-0.3 ms of CPU per
# call here, about as much as the round trip itself. The payment flow's repositories
# therefore build their statements once, at import, with ``bindparam()`` placeholders,
# and pass the values to ``execute()``: SQLAlchemy then reuses the statement's memoized
# cache key and compiled form. See docs/performance.md.


def columns_of(
    table: Table, values: Mapping[str, Any], *, reserved: Collection[str] = ()
) -> Mapping[str, Any]:
    """``values`` after checking each key names a column of ``table`` and none is one
    the caller sets itself (``reserved``).

    A prebuilt UPDATE takes its SET columns from the parameters named after columns: a
    misspelt key would be silently ignored and a reserved one would silently win, where
    ``.values(status=…, **values)`` raised in both cases.
    """
    unknown = values.keys() - table.c.keys()
    if unknown:
        raise TypeError(f"table {table.name!r} has no column {', '.join(sorted(unknown))}")
    clashing = values.keys() & set(reserved)
    if clashing:
        raise TypeError(f"{', '.join(sorted(clashing))} is set by the caller, not by values")
    return values


def status_change(
    table: Table, status: str, at: datetime, values: Mapping[str, Any]
) -> dict[str, Any]:
    """The SET parameters of a prebuilt status compare-and-set on ``table``: the new
    ``status``, ``updated_at`` and the caller's other columns (checked by
    :func:`columns_of`, which refuses a second status or timestamp among them)."""
    return {
        "status": status,
        "updated_at": at,
        **columns_of(table, values, reserved=("status", "updated_at")),
    }


def dialect_insert(conn: AsyncConnection, table: Any) -> Any:
    """An INSERT that knows ``ON CONFLICT`` in the connection's dialect."""
    return _dialect(conn.dialect.name).insert(table)


class comma_joined(FunctionElement[str]):
    """The group's strings joined by commas: ``string_agg(x, ',')`` on PostgreSQL,
    ``group_concat(x, ',')`` on SQLite. Unlike ``func.aggregate_strings`` the separator
    is part of the SQL text, not a value rendered at each execution, so a statement
    using it compiles once for good (store/direct.py)."""

    type = String()
    inherit_cache = True


@compiles(comma_joined, "postgresql")
def _string_agg(element: comma_joined, compiler: Any, **kw: Any) -> str:
    return f"string_agg({compiler.process(element.clauses, **kw)}, ',')"


@compiles(comma_joined, "sqlite")
def _group_concat(element: comma_joined, compiler: Any, **kw: Any) -> str:
    return f"group_concat({compiler.process(element.clauses, **kw)}, ',')"


def insert_ignoring_conflicts(conn: AsyncConnection, table: Table, *returning: Column[Any]) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING [RETURNING …]`` in the connection's dialect,
    built once per dialect, table and returned columns; pass the row(s) to ``execute()``."""
    return _insert_ignoring_conflicts(conn.dialect.name, table, returning)


@functools.cache
def _insert_ignoring_conflicts(
    dialect_name: str, table: Table, returning: tuple[Column[Any], ...]
) -> Any:
    stmt = _dialect(dialect_name).insert(table).on_conflict_do_nothing()
    return stmt.returning(*returning) if returning else stmt


def _dialect(name: str) -> Any:
    """The SQLAlchemy dialect module whose INSERT knows ``ON CONFLICT``."""
    return postgresql if name == "postgresql" else sqlite


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(
    url: str, *, pool_size: int = 10, echo: bool = False, schema: str | None = None
) -> AsyncEngine:
    """An async engine with the settings each backend needs.

    SQLite runs in WAL mode with foreign keys on, and every transaction starts with
    ``BEGIN IMMEDIATE``: our transactions read then write, and a deferred transaction
    that upgrades to a writer fails at once with SQLITE_BUSY instead of waiting.

    ``schema`` (PostgreSQL only) is the one schema every statement of this engine reads
    and writes (its ``search_path``): how test mode keeps a store of its own inside the
    live database (docs/api.md, "Test and live modes").
    """
    parsed = make_url(url)
    if schema is not None and (
        parsed.get_backend_name() == "sqlite" or not _SCHEMA_NAME.fullmatch(schema)
    ):
        raise ValueError(f"a schema needs PostgreSQL and a plain name, not {schema!r}")
    # Bound values never go into an error message or an echo line: they include webhook
    # secrets, key hashes and personal data (see _scrub_driver_errors for the rest).
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(
            url, echo=echo, hide_parameters=True, connect_args={"timeout": 30}
        )
        _configure_sqlite(engine)
        _scrub_driver_errors(engine)
        return engine
    engine = create_async_engine(
        url,
        echo=echo,
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args={
            "server_settings": {
                "application_name": "tuition",
                **({"search_path": schema} if schema else {}),
            }
        },
    )
    _ping_when_idle(engine)
    _scrub_driver_errors(engine)
    return engine


# Parts of a driver's error message that quote a value: PostgreSQL's DETAIL ("Key
# (secret)=(whsec_…) already exists", "Failing row contains (…)") and HINT lines,
# asyncpg's "invalid input for query argument $1: 'whsec_…'", and PostgreSQL's
# 'invalid input syntax for type integer: "…"'.
_DETAIL_LINES = re.compile(r"\n?(DETAIL|HINT):.*", re.DOTALL)
_QUERY_ARGUMENT = re.compile(r"(query argument \$\d+: ).*?( \(|$)", re.DOTALL)
_QUOTED_INPUT = re.compile(r'((?:for type|for enum|for encoding) [^:]*: )(".*?"|\S+)')


def scrub_message(message: str) -> str:
    """``message`` without the values a database error may quote."""
    message = _DETAIL_LINES.sub("", message)
    message = _QUERY_ARGUMENT.sub(r"\1[value hidden]\2", message)
    return _QUOTED_INPUT.sub(r"\1[value hidden]", message)


def _scrub_driver_errors(engine: AsyncEngine) -> None:
    """Make every database error safe to log, whatever statement failed.

    ``hide_parameters`` keeps the bound values out of SQLAlchemy's own message, but the
    driver's message (and asyncpg's exception, chained below it and printed in every
    traceback) still quotes them. So the DBAPI error's message is scrubbed and the
    driver's chain is cut; its SQLSTATE stays on the DBAPI error (``.sqlstate``).
    """

    @event.listens_for(engine.sync_engine, "handle_error")
    def _on_error(context: Any) -> None:
        for error in (context.original_exception, context.sqlalchemy_exception):
            if error is not None and error.args and isinstance(error.args[0], str):
                error.args = (scrub_message(error.args[0]), *error.args[1:])
        if context.original_exception is not None:
            context.original_exception.__cause__ = None
            context.original_exception.__suppress_context__ = True


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Check a connection before use only if it sat idle in the pool for a while.

    ``pool_pre_ping`` pings on every checkout, and with asyncpg a ping is three round
    trips (BEGIN, ``;``, ROLLBACK): a third of a payment flow's round trips. A connection
    in steady use was known good milliseconds ago; one idle for longer than
    :data:`PING_AFTER_IDLE_SECONDS` (a database restart or an idle timeout may have
    closed it) is pinged, and replaced if the ping fails. A connection that dies while
    in steady use fails one statement, and SQLAlchemy then recycles every connection
    that was opened before the failure.
    """
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get(_CHECKED_IN)
        if checked_in is None or time.monotonic() - checked_in < PING_AFTER_IDLE_SECONDS:
            return
        try:
            sync_engine.dialect.do_ping(dbapi_conn)
        except Exception as error:
            # The pool discards this connection and checks out another (or a new one).
            raise exc.DisconnectionError(f"stale pooled connection: {error}") from error


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the driver so "begin" below decides.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
