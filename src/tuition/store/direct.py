"""Hot-path statements run on the asyncpg connection itself.

SQLAlchemy Core builds and compiles a statement once (the statements of the payment
flow are module constants), but each ``execute()`` still costs the API process about
120 µs of CPU on top of the driver's own 70 (an execution context, the parameters
processed through the compiled form, a cursor adapter, a result object): on this
machine that is more than the round trip itself. :class:`Direct` compiles its statement
once for PostgreSQL into the SQL text, the order of its ``$n`` parameters with each
one's bind processor, and each result column's processor, and then runs it with
``asyncpg.Connection.fetch``. The driver prepares and caches the statement per
connection, as SQLAlchemy's adapter does.

SQLite keeps SQLAlchemy's path (the same statement, ``conn.execute``): both engines run
the same use cases, and the tests run both.

A :class:`Direct` statement runs inside the caller's transaction only because the unit
of work opens PostgreSQL transactions itself on the driver (store/uow.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement, visitors
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter

from tuition.store.db import scrub_message

Processor = Callable[[Any], Any]
Row = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    # Each $n in order: (the bound parameter's name, its processor, its value if fixed).
    params: tuple[tuple[str, Processor | None, Any], ...]
    # Each result column in order: (its key, its processor).
    columns: tuple[tuple[str, Processor | None], ...]


_REQUIRED = object()
_MAX_FORMS = 32  # compiled forms kept per statement (one per set of parameter names)


class Direct:
    """One Core statement whose PostgreSQL executions skip SQLAlchemy's execution layer.

    As with ``execute()``, an INSERT's or UPDATE's columns may come from the parameters'
    names; each set of names is compiled once. The statement must not use expanding
    ``IN`` parameters (their SQL changes with each execution), and its result columns
    must have distinct names. ``sqlite`` is the statement SQLite runs instead, where the
    two dialects need different ones (``ON CONFLICT``).
    """

    __slots__ = ("_forms", "sqlite", "statement")

    def __init__(self, statement: Any, *, sqlite: Any = None) -> None:
        self.statement = statement
        self.sqlite = statement if sqlite is None else sqlite
        self._forms: dict[tuple[str, ...], _Compiled] = {}

    async def rows(self, conn: AsyncConnection, params: Mapping[str, Any]) -> Sequence[Row]:
        """Run with ``params`` (by bound parameter name); the rows as mappings."""
        if conn.dialect.name != "postgresql":
            result = await conn.execute(self.sqlite, dict(params))
            return [cast(Row, row._mapping) for row in result]
        compiled = self._form(conn.dialect, params)
        records = await _on_driver(conn, compiled, params, fetch=True)
        columns = compiled.columns
        return [
            {
                key: value if process is None else process(value)
                for (key, process), value in zip(columns, record, strict=True)
            }
            for record in records
        ]

    async def first(self, conn: AsyncConnection, params: Mapping[str, Any]) -> Row | None:
        rows = await self.rows(conn, params)
        return rows[0] if rows else None

    async def rowcount(self, conn: AsyncConnection, params: Mapping[str, Any]) -> int:
        """Run a statement without ``RETURNING``; the number of rows it wrote."""
        if conn.dialect.name != "postgresql":
            return max((await conn.execute(self.sqlite, dict(params))).rowcount, 0)
        compiled = self._form(conn.dialect, params)
        status: str = await _on_driver(conn, compiled, params, fetch=False)
        return int(status.rsplit(" ", 1)[-1])  # "UPDATE 1", "INSERT 0 1", "DELETE 0"

    def _form(self, dialect: Dialect, params: Mapping[str, Any]) -> _Compiled:
        names = tuple(params)
        compiled = self._forms.get(names)
        if compiled is None:
            compiled = _compile(self.statement, dialect, names)
            if len(self._forms) < _MAX_FORMS:
                self._forms[names] = compiled
        return compiled


async def _on_driver(
    conn: AsyncConnection, compiled: _Compiled, params: Mapping[str, Any], *, fetch: bool
) -> Any:
    """Run on the asyncpg connection; a failure is raised as SQLAlchemy raises it from
    ``execute()`` (a ``DBAPIError`` subclass such as ``IntegrityError``, its message
    scrubbed of values, the connection invalidated if the failure says it is lost), so
    callers and the API's error handling see one kind of error whichever path ran."""
    fairy = await conn.get_raw_connection()
    driver = fairy.driver_connection
    assert driver is not None
    try:
        args = _args(compiled, params)
    except Exception as error:  # a bind processor refused a value, as execute() reports it
        raise sa_exc.StatementError(
            str(error), compiled.sql, None, error, hide_parameters=True
        ) from error
    try:
        if fetch:
            return await driver.fetch(compiled.sql, *args)
        return await driver.execute(compiled.sql, *args)
    except BaseException as error:  # a cancellation too: its connection may be gone
        raise await as_sqlalchemy_error(conn, fairy, compiled.sql, error) from None


async def as_sqlalchemy_error(
    conn: AsyncConnection, fairy: Any, sql: str, error: BaseException
) -> BaseException:
    """``error``, raised by the asyncpg connection behind ``fairy`` (the pool's proxy of
    ``conn``'s connection), as SQLAlchemy would raise it from ``execute()``: a
    ``DBAPIError`` subclass, its message scrubbed of values. A lost connection (its
    error says so, or the driver closed it) is invalidated, and so is every pooled
    connection opened before it (a database restart drops them all), as SQLAlchemy does
    on a disconnect. Anything else (a cancellation, a bug) comes back unchanged."""
    dialect = conn.dialect
    adapter, driver = fairy.dbapi_connection, fairy.driver_connection
    translated: BaseException = error
    if isinstance(error, Exception):
        try:
            # SQLAlchemy's asyncpg adapter raises the DBAPI (PEP 249) error for a driver's.
            adapter._handle_exception(error)
        except Exception as dbapi_error:
            translated = dbapi_error
    dbapi = dialect.loaded_dbapi
    closed = driver is None or driver.is_closed()
    is_dbapi = isinstance(translated, dbapi.Error)
    lost = closed or (is_dbapi and dialect.is_disconnect(cast(Any, translated), adapter, None))
    if lost:
        cast(Any, conn.sync_engine.pool)._invalidate(fairy, translated, _checkin=False)
        await conn.invalidate(translated if isinstance(translated, Exception) else None)
    if not is_dbapi:
        return translated
    wrapped = sa_exc.DBAPIError.instance(
        sql,
        None,
        cast(Exception, translated),
        dbapi.Error,
        hide_parameters=True,
        connection_invalidated=lost,
        dialect=dialect,
    )
    for scrubbed in (wrapped, translated):
        if scrubbed.args and isinstance(scrubbed.args[0], str):
            scrubbed.args = (scrub_message(scrubbed.args[0]), *scrubbed.args[1:])
    translated.__cause__, translated.__suppress_context__ = None, True
    return wrapped


def _args(compiled: _Compiled, params: Mapping[str, Any]) -> list[Any]:
    args = []
    for name, process, fixed in compiled.params:
        value = params[name] if fixed is _REQUIRED else params.get(name, fixed)
        args.append(value if process is None else process(value))
    return args


def _compile(statement: Any, dialect: Dialect, names: tuple[str, ...]) -> _Compiled:
    assert not any(getattr(bind, "expanding", False) for bind in _binds(statement)), (
        "a Direct statement cannot expand IN lists"
    )
    # Literal-execute values (a separator given to string_agg) go into the SQL text.
    compiled = cast(
        SQLCompiler,
        cast(ClauseElement, statement).compile(
            dialect=dialect, column_keys=names, compile_kwargs={"render_postcompile": True}
        ),
    )
    sql = str(compiled)
    # Python-side column defaults are filled in by execute(), not here: name every column.
    prefetched = [c.key for c in (*compiled.insert_prefetch, *compiled.update_prefetch)]
    assert not prefetched, f"a Direct statement must give {prefetched} itself"
    params = []
    for name in compiled.positiontup or ():
        bind: BindParameter[Any] = compiled.binds[name]
        fixed = _REQUIRED if bind.required or bind.callable else bind.value
        params.append((name, bind.type.dialect_impl(dialect).bind_processor(dialect), fixed))
    columns = []
    for column in statement.exported_columns:
        process = column.type.dialect_impl(dialect).result_processor(dialect, None)
        columns.append((column.key, process))
    keys = [key for key, _ in columns]
    assert len(set(keys)) == len(keys), f"result columns share names: {keys}"
    return _Compiled(sql, tuple(params), tuple(columns))


def _binds(statement: Any) -> list[BindParameter[Any]]:
    found: list[BindParameter[Any]] = []
    visitors.traverse(statement, {}, {"bindparam": found.append})
    return found
