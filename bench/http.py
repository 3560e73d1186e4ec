"""A minimal keep-alive HTTP/1.1 client on asyncio streams, for the load generator.

The load generator shares two cores with the servers it measures, so every microsecond
it spends is taken from them: this client costs a fraction of a general-purpose one
(no redirects, cookies, TLS or connection pool; one request at a time per connection).
It understands ``Content-Length`` and ``chunked`` responses and reconnects once when
the server closed an idle keep-alive connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass


class HttpError(Exception):
    """The connection failed or the response could not be read."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes


class Connection:
    def __init__(self, host: str, port: int, *, timeout: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._host_header = f"Host: {host}:{port}\r\n".encode()

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        head = [f"{method} {path} HTTP/1.1\r\n".encode(), self._host_header]
        for name, value in (headers or {}).items():
            head.append(f"{name}: {value}\r\n".encode())
        if body is not None:
            head.append(f"Content-Length: {len(body)}\r\n".encode())
        head.append(b"\r\n")
        payload = b"".join(head) + (body or b"")
        fresh = self._writer is None
        try:
            return await asyncio.wait_for(self._exchange(payload), self.timeout)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            self.close()
            if fresh:
                raise HttpError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        except (OSError, TimeoutError, ValueError) as exc:
            self.close()
            raise HttpError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        # The server closed an idle connection under us: one fresh attempt.
        try:
            return await asyncio.wait_for(self._exchange(payload), self.timeout)
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            self.close()
            raise HttpError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc

    async def _exchange(self, payload: bytes) -> Response:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(payload)
        status_line = await self._reader.readuntil(b"\r\n")
        if not status_line:
            raise ConnectionResetError("connection closed")
        status = int(status_line.split(b" ", 2)[1])
        length = -1
        chunked = close = False
        while True:
            line = await self._reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = b"close" in value.lower()
        if chunked:
            body = await self._read_chunked()
        elif length >= 0:
            body = await self._reader.readexactly(length)
        else:
            body = await self._reader.read()
            close = True
        if close:
            self.close()
        return Response(status, body)

    async def _read_chunked(self) -> bytes:
        assert self._reader is not None
        parts: list[bytes] = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
