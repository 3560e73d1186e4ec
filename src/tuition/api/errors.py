"""One error envelope, ``{"error": {type, code, message, param}}``, for every 4xx/5xx.

A database that cannot be reached is a 503 with ``Retry-After`` (the request may be
retried), and on a channel's notify endpoint that channel's failure ACK, so the gateway
delivers the notification again; every other unexpected error is the middleware's 500.
"""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped]  # no stubs; used for isinstance only
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException
from starlette.routing import Match

from tuition.api.body_limits import NOTIFY_PREFIX
from tuition.channels.base import Ack
from tuition.channels.registry import ChannelRegistry
from tuition.domain.errors import InvalidRequest, TuitionError
from tuition.logs import get_logger

log = get_logger(__name__)

_HTTP_CODES = {
    404: ("invalid_request_error", "route_not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
}


def envelope(
    status: int, type_: str, code: str, message: str, param: str | None = None
) -> JSONResponse:
    body = {"error": {"type": type_, "code": code, "message": message, "param": param}}
    return JSONResponse(body, status_code=status)


def _param(loc: tuple[int | str, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or None


def answer_for(request: Request, exc: BaseException) -> JSONResponse | None:
    """The envelope ``exc`` is answered with, or None for an unexpected error (a 500).

    One mapping for the exception handlers and for Idempotency-Key, which stores it.
    """
    if isinstance(exc, TuitionError):
        return envelope(exc.status, exc.type, exc.code, exc.message, exc.param)
    if isinstance(exc, RequestValidationError):
        return _validation_answer(exc)
    if isinstance(exc, HTTPException):
        return _http_answer(request, exc)
    return None


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    answer = answer_for(request, exc)
    assert answer is not None  # installed only for the classes answer_for knows
    return answer


def _validation_answer(exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        return envelope(
            400,
            "invalid_request_error",
            "malformed_json",
            "the request body is not valid JSON: "
            f"{first.get('ctx', {}).get('error', 'parse error')}",
        )
    param = _param(tuple(first.get("loc", ())))
    message = first.get("msg", "invalid value")
    if param:
        message = f"{param}: {message}"
    return envelope(422, "invalid_request_error", "validation_failed", message, param)


def _http_answer(request: Request, exc: HTTPException) -> JSONResponse:
    type_, code = _HTTP_CODES.get(exc.status_code, ("invalid_request_error", "http_error"))
    response = envelope(exc.status_code, type_, code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    if exc.status_code == 405:
        response.headers["allow"] = ", ".join(allowed_methods(request))
    return response


_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path: Starlette's 405 names only those of
    the first route that matched the path, and GET and POST are often separate routes.
    Each method is probed through the routes' own matching (``Match.FULL``), which holds
    for included routers too."""
    routes = request.app.router.routes
    methods = {
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in routes)
    }
    if "GET" in methods:
        methods.add("HEAD")  # answered by the middleware wherever GET is
    return sorted(methods)


# --- the database unavailable ------------------------------------------------------------

RETRY_AFTER_SECONDS = 5
_DRIVER_MODULES = ("sqlalchemy.", "asyncpg.", "aiosqlite.", "sqlite3.")
# asyncpg's own errors that mean "no usable connection" (raised as they are while
# connecting; wrapped by SQLAlchemy while executing): the 08 class, the server shutting
# down or starting up, too many connections, a connection that was closed under us.
_ASYNCPG_UNAVAILABLE = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
)


# A transaction PostgreSQL aborted to break a deadlock or a serialization conflict: it
# was rolled back whole, so the request may be sent again like one that found the
# database down (and the idempotency key of a 5xx is free for it).
_ASYNCPG_CONTENTION = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)


def database_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says the database cannot be reached (refused, dropped, shutting
    down, pool exhausted) or aborted the transaction to break a deadlock, not that a
    statement was wrong: the request may be retried.

    SQLAlchemy's ``OperationalError``/``InterfaceError`` and any ``DBAPIError`` whose
    connection was invalidated; asyncpg's connection errors; and an ``OSError`` (refused,
    reset, timed out, unresolvable host) raised from inside the driver, as asyncpg's
    connect raises them unwrapped.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, sa_exc.OperationalError | sa_exc.InterfaceError):
            return True
        if isinstance(current, sa_exc.TimeoutError):  # no pooled connection came free
            return True
        if isinstance(current, (*_ASYNCPG_UNAVAILABLE, *_ASYNCPG_CONTENTION)):
            return True
        if isinstance(current, OSError) and _raised_in_driver(current):
            return True
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else current.__cause__ or current.__context__
        )
    return False


def _raised_in_driver(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if module.startswith(_DRIVER_MODULES):
            return True
        tb = tb.tb_next
    return False


async def _handle_database(request: Request, exc: Exception) -> Response:
    """503 with ``Retry-After`` (the error envelope; a channel's failure ACK on its
    notify endpoint, so the gateway sends it again); anything else is re-raised to the
    middleware's last-resort 500."""
    if not database_unavailable(exc):
        raise exc
    log.warning("database_unavailable", path=request.url.path, error=f"{type(exc).__name__}: {exc}")
    retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if request.url.path.startswith(NOTIFY_PREFIX):
        ack = _failure_ack(request)
        if ack is not None:
            return Response(ack.body, ack.status_code, headers=retry, media_type=ack.media_type)
    response = envelope(
        503,
        "api_error",
        "database_unavailable",
        "the database cannot be reached; retry later",
    )
    response.headers.update(retry)
    return response


def _failure_ack(request: Request) -> Ack | None:
    modes = getattr(request.app.state, "modes", None)
    mode = "test" if getattr(request.state, "mode", None) == "test" else "live"
    registry: ChannelRegistry | None = getattr(getattr(modes, mode, None), "registry", None)
    slug = str(request.path_params.get("channel", ""))
    if registry is None or not slug:
        return None
    try:
        return registry.get(slug).ack(False)
    except InvalidRequest:  # a channel not enabled here: the envelope then
        return None


def install(app: FastAPI) -> None:
    for exc_class in (TuitionError, RequestValidationError, HTTPException):
        app.add_exception_handler(exc_class, _handle)
    # Connection failures surface as these (checked by database_unavailable; the rest
    # are re-raised): SQLAlchemy's, asyncpg's unwrapped ones, and OSError from connect.
    database: tuple[type[Exception], ...] = (
        sa_exc.SQLAlchemyError,
        asyncpg.exceptions.PostgresError,
        asyncpg.exceptions.InterfaceError,
        OSError,
    )
    for db_class in database:
        app.add_exception_handler(db_class, _handle_database)
