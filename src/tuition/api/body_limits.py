"""Request bodies are bounded in size and in time while they are read, not after.

``LimitedReceive`` wraps the ASGI ``receive`` of one request. It refuses a body whose
declared ``Content-Length`` is over the limit before reading any of it, counts a chunked
one as it arrives, and gives up on a body that has not fully arrived within the timeout
(uvicorn has no such timeout: a client that sends headers and then stalls would hold the
handler forever). Nothing is checked until the application asks for the body, so a
route that authenticates first answers 401 without reading a byte of it.

The errors raised here are ``TuitionError``s, so the app's handler turns them into the
usual envelope (413 ``body_too_large``, 408 ``request_timeout``).
"""

from __future__ import annotations

import asyncio

from starlette.types import Message, Receive, Scope

from tuition.domain.errors import PayloadTooLarge, RequestTimeout

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_NOTIFY_BODY_BYTES = 64 * 1024
DEFAULT_BODY_TIMEOUT_SECONDS = 30.0
NOTIFY_PREFIX = "/v1/notify/"


class LimitedReceive:
    def __init__(self, receive: Receive, *, limit: int, timeout: float, declared: int | None):
        self._receive = receive
        self._limit = limit
        self._timeout = timeout
        self._declared = declared
        self._seen = 0
        self._deadline: float | None = None
        self._done = False

    async def __call__(self) -> Message:
        if self._done:  # after the body: e.g. waiting for http.disconnect, unbounded
            return await self._receive()
        if self._declared is not None and self._declared > self._limit:
            raise self._too_large()
        loop = asyncio.get_running_loop()
        if self._deadline is None:
            self._deadline = loop.time() + self._timeout
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self._receive()
        except TimeoutError:
            self._done = True
            raise RequestTimeout(
                f"the request body did not arrive within {self._timeout:g} seconds"
            ) from None
        if message["type"] != "http.request":
            self._done = True
            return message
        self._seen += len(message.get("body", b""))
        if self._seen > self._limit:
            self._done = True
            raise self._too_large()
        if not message.get("more_body", False):
            self._done = True
        return message

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"the request body is over the limit of {self._limit} bytes")


def limit_for(scope: Scope, *, max_body: int, max_notify_body: int) -> int:
    """Notifications come from anyone and are small: they get the smaller bound."""
    path: str = scope.get("path", "")
    return max_notify_body if path.startswith(NOTIFY_PREFIX) else max_body


def declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed one before we run
    return None
