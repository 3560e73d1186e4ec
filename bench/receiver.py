"""A local webhook receiver: the platform's endpoint, answering 200 and noting arrivals.

Tuition's worker POSTs each event with ``Tuition-Event-Id``; the receiver keeps the wall
clock time (UTC, this machine) of the first arrival of each id, and counts repeats. A
delivery's lag is that time minus the event's ``outbox_events.created_at``, both on this
machine's clock. Keep-alive HTTP/1.1 with ``Content-Length`` bodies (what httpx sends);
the signature is not checked here (tests/ check it), so the receiver costs little.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
_BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass
class Receiver:
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port, known once started
    first_seen: dict[str, datetime] = field(default_factory=dict)
    repeats: int = 0
    _server: asyncio.Server | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/webhooks"

    @property
    def received(self) -> int:
        return len(self.first_seen)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            # Deliveries in flight are abandoned (the run is over); don't wait for them.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    def note(self, event_id: str, at: datetime | None = None) -> None:
        if event_id in self.first_seen:
            self.repeats += 1
        else:
            self.first_seen[event_id] = at or datetime.now(UTC)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                length, event_id = 0, ""
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"tuition-event-id":
                        event_id = value.strip().decode()
                if length:
                    await reader.readexactly(length)
                if not event_id:
                    writer.write(_BAD)
                    await writer.drain()
                    return
                self.note(event_id)
                writer.write(_OK)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            writer.close()
