"""Request context: a request id on every response and log line, an access log, and a
last-resort 500 envelope (so even a crash answers with the id to quote).

It is also where what holds for every route is enforced, once: a NUL in the URL is
refused (after the request id is assigned, so that answer carries one too), request
bodies are bounded (see body_limits.py), ``HEAD`` is answered wherever ``GET`` is, and
the trailing-slash redirect points at a relative URL rather than echoing ``Host``.
"""

from __future__ import annotations

import json
import re
import time
from urllib.parse import urlsplit

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tuition.api.body_limits import (
    DEFAULT_BODY_TIMEOUT_SECONDS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_NOTIFY_BODY_BYTES,
    LimitedReceive,
    declared_length,
    limit_for,
)
from tuition.domain.errors import InvalidRequest, TuitionError
from tuition.domain.ids import new_id
from tuition.logs import get_logger

log = get_logger("tuition.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_headers = dict(scope["headers"])
        incoming = request_headers.get(b"request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else new_id("req")
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        response_started = False
        is_head = scope.get("method") == "HEAD"
        host = request_headers.get(b"host", b"").decode("latin-1")

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                if status in (307, 308):
                    headers = _relative_location(headers, host)
                message["headers"] = [*headers, (b"request-id", request_id.encode())]
            elif is_head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        try:
            if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b""):
                # PostgreSQL cannot store NUL in text: refuse it here, for every route.
                raise InvalidRequest("the URL contains a NUL character", code="nul_character")
            if is_head:  # HEAD is GET without the body (RFC 9110 9.3.2); FastAPI has none
                scope = {**scope, "method": "GET"}
            await self.app(scope, _limited(scope, receive), send_with_id)
        except TuitionError as exc:
            # Raised outside any route's handlers (the URL check, or a body limit hit by a
            # mounted app): still the envelope with its own status.
            if exc.status >= 500:
                log.exception("unhandled_error", path=scope.get("path"))
            if not response_started:
                await _send_error(send_with_id, exc.status, exc.to_dict())
        except Exception:
            log.exception("unhandled_error", path=scope.get("path"))
            if not response_started:
                message = f"an internal error occurred; quote request id {request_id}"
                error = {"type": "api_error", "code": "internal_error", "message": message}
                await _send_error(send_with_id, 500, {**error, "param": None})
        finally:
            log.info(
                "request",
                method="HEAD" if is_head else scope.get("method"),
                path=scope.get("path"),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )


async def _send_error(send: Send, status: int, error: dict[str, str | None]) -> None:
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _limited(scope: Scope, receive: Receive) -> Receive:
    modes = getattr(getattr(scope.get("app"), "state", None), "modes", None)
    settings = getattr(getattr(modes, "live", None), "settings", None)  # both modes share them
    max_body = getattr(settings, "max_body_bytes", DEFAULT_MAX_BODY_BYTES)
    max_notify = getattr(settings, "max_notify_body_bytes", DEFAULT_MAX_NOTIFY_BODY_BYTES)
    timeout = getattr(settings, "body_timeout_seconds", DEFAULT_BODY_TIMEOUT_SECONDS)
    return LimitedReceive(
        receive,
        limit=limit_for(scope, max_body=max_body, max_notify_body=max_notify),
        timeout=timeout,
        declared=declared_length(scope),
    )


def _relative_location(headers: list[tuple[bytes, bytes]], host: str) -> list[tuple[bytes, bytes]]:
    """Starlette's trailing-slash redirect builds an absolute URL from the ``Host`` header,
    which the client controls (cache poisoning, open redirect): a Location on that host
    is made path-relative, which is right whatever the Host said."""
    out = []
    for name, value in headers:
        parts = urlsplit(value.decode("latin-1")) if name == b"location" else None
        if parts is not None and parts.netloc == host:
            path = "/" + parts.path.lstrip("/")  # never "//host": a scheme-relative URL
            value = (path + (f"?{parts.query}" if parts.query else "")).encode("latin-1")
        out.append((name, value))
    return out
