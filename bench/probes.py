"""Lost notifications and webhook lag, measured while the flow load runs.

**Lost notifications.** Every ``interval`` seconds a probe makes one more checkout (order
and payment through the API, on a connection of its own), then has the simulator take
the money (``POST /_control/payments/{id}/pay``) with the gateway's notification dropped
(``drop_next``, simulator/faults.py): only the recovery job (``reconcile_payment``, due
``TUITION_RECOVER_AFTER_SECONDS`` after the payment was created) can find it. Per probe:

* ``wait``: Tuition booked the payment (its journal entry's ``created_at``) minus the
  moment the gateway took the money — the buyer's wait for "paid";
* ``late``: booked minus ``payment.created_at + recovery delay`` — how late the job ran.

**Webhook lag.** An endpoint subscribed to every event points at a local
:class:`~bench.receiver.Receiver`; per event created in the measured window, lag is its
first arrival at the receiver minus ``outbox_events.created_at``. All times are this
machine's wall clock. PostgreSQL only (the queries use asyncpg parameters).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.flows import Target
from bench.http import Connection, HttpError
from bench.receiver import Receiver
from bench.stats import Summary

DROP_ALL = 10_000  # notifications the simulator drops (its most): all the probes cause


@dataclass
class Recovery:
    """What the lost-notification probes measured (seconds)."""

    recover_after: float
    probes: int = 0
    recovered: int = 0
    recovered_under_load: int = 0  # booked before the measured window ended
    wait_s: Summary | None = None
    late_s: Summary | None = None
    errors: list[str] = field(default_factory=list)
    recovered_orders: list[str] = field(default_factory=list)


@dataclass
class WebhookLag:
    """Event created → delivered to the local receiver, for the window's events (ms)."""

    events: int = 0  # created in the measured window
    delivered: int = 0  # of those, seen by the receiver
    repeats: int = 0  # arrivals of an event already seen (at-least-once delivery)
    lag_ms: Summary | None = None


async def post_json(
    conn: Connection, path: str, body: dict[str, Any], headers: dict[str, str], expect: int
) -> dict[str, Any]:
    response = await conn.request(
        "POST", path, json.dumps(body).encode(), {**headers, "Content-Type": "application/json"}
    )
    if response.status != expect:
        raise RuntimeError(f"POST {path}: HTTP {response.status} {response.body[:300]!r}")
    result: dict[str, Any] = json.loads(response.body)
    return result


async def drop_notifications(host: str, sim_port: int, count: int = DROP_ALL) -> None:
    """Have the simulator (control API on) drop the next ``count`` notifications it sends.
    The load generator signs its own, so only the probes' payments lose theirs."""
    sim = Connection(host, sim_port)
    try:
        await post_json(sim, "/_control/notifications", {"drop_next": count}, {}, 200)
    finally:
        sim.close()


async def register_endpoint(target: Target, url: str) -> str:
    """A webhook endpoint for every event type at ``url``; its id."""
    conn = Connection(target.host, target.port)
    try:
        endpoint = await post_json(
            conn,
            "/v1/webhook_endpoints",
            {"url": url, "events": ["*"], "description": "bench receiver"},
            {"Authorization": f"Bearer {target.api_key}"},
            201,
        )
    finally:
        conn.close()
    return str(endpoint["id"])


@dataclass
class LostNotifications:
    """Probes whose notification the gateway loses (see the module docstring)."""

    target: Target
    sim_port: int
    products: list[str]
    interval: float
    paid_at: dict[str, datetime] = field(default_factory=dict)  # payment id -> gateway paid
    order_of: dict[str, str] = field(default_factory=dict)  # payment id -> order id
    errors: list[str] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        """One probe every ``interval`` seconds until ``stop`` (at least one)."""
        api = Connection(self.target.host, self.target.port)
        sim = Connection(self.target.host, self.sim_port)
        headers = {"Authorization": f"Bearer {self.target.api_key}"}
        n = 0
        try:
            while True:
                tick = time.monotonic()
                try:
                    await self._probe(api, sim, headers, n)
                except (RuntimeError, HttpError) as exc:
                    if len(self.errors) < 10:
                        self.errors.append(str(exc)[:300])
                n += 1
                left = self.interval - (time.monotonic() - tick)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=max(0.0, left))
                    return
                except TimeoutError:
                    continue
        finally:
            api.close()
            sim.close()

    async def checkouts(self, count: int, *, users: int) -> None:
        """``count`` probes at once from ``users`` connections (a backlog, not a rate)."""
        numbers = iter(range(count))
        headers = {"Authorization": f"Bearer {self.target.api_key}"}

        async def user() -> None:
            api = Connection(self.target.host, self.target.port)
            sim = Connection(self.target.host, self.sim_port)
            try:
                for n in numbers:
                    await self._probe(api, sim, headers, n)
            finally:
                api.close()
                sim.close()

        await asyncio.gather(*(user() for _ in range(users)))

    async def _probe(
        self, api: Connection, sim: Connection, headers: dict[str, str], n: int
    ) -> None:
        ref = f"lost-{time.time_ns()}-{n}"
        order = await post_json(
            api,
            "/v1/orders",
            {
                "customer_id": f"cus_{ref}",
                "currency": "CNY",
                "items": [{"product_id": self.products[n % len(self.products)]}],
            },
            {**headers, "Idempotency-Key": f"{ref}-o"},
            201,
        )
        payment = await post_json(
            api,
            f"/v1/orders/{order['id']}/payments",
            {"channel": "sandbox", "method": "page"},
            {**headers, "Idempotency-Key": f"{ref}-p"},
            201,
        )
        await post_json(sim, f"/_control/payments/{payment['id']}/pay", {}, {}, 200)
        self.paid_at[payment["id"]] = datetime.now(UTC)
        self.order_of[payment["id"]] = order["id"]


async def booked(conn: Any, payment_ids: list[str]) -> list[Any]:
    """(id, created_at, recovered) of those payments Tuition has booked as succeeded."""
    return list(
        await conn.fetch(
            "SELECT p.id, p.created_at, j.created_at AS recovered FROM payments p "
            "JOIN journal_entries j ON j.source = 'payment:' || p.id "
            "WHERE p.id = ANY($1::text[]) AND p.status = 'succeeded'",
            payment_ids,
        )
    )


async def wait_booked(conn: Any, payment_ids: list[str], *, within: float) -> list[Any]:
    deadline = time.monotonic() + within
    while True:
        rows = await booked(conn, payment_ids)
        if len(rows) == len(payment_ids) or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.25)


def recovery_of(
    probes: LostNotifications, rows: list[Any], *, recover_after: float, window_end: datetime
) -> Recovery:
    delay = timedelta(seconds=recover_after)
    wait = [(r["recovered"] - probes.paid_at[r["id"]]).total_seconds() for r in rows]
    late = [(r["recovered"] - (r["created_at"] + delay)).total_seconds() for r in rows]
    return Recovery(
        recover_after=recover_after,
        probes=len(probes.paid_at),
        recovered=len(rows),
        recovered_under_load=sum(1 for r in rows if r["recovered"] <= window_end),
        wait_s=Summary.of(wait) if rows else None,
        late_s=Summary.of(late) if rows else None,
        errors=list(probes.errors),
        recovered_orders=[probes.order_of[r["id"]] for r in rows],
    )


async def wait_delivered(conn: Any, *, within: float) -> int:
    """Wait until no webhook delivery is pending; how many still are."""
    deadline = time.monotonic() + within
    while True:
        left = int(
            await conn.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
        )
        if left == 0 or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.25)


def lag_of(created: list[tuple[str, datetime]], receiver: Receiver) -> WebhookLag:
    """Lag per event (id, created_at) from what the receiver saw."""
    lags = [
        (receiver.first_seen[event_id] - at).total_seconds() * 1000
        for event_id, at in created
        if event_id in receiver.first_seen
    ]
    return WebhookLag(
        events=len(created),
        delivered=len(lags),
        repeats=receiver.repeats,
        lag_ms=Summary.of(lags) if lags else None,
    )


async def events_between(conn: Any, start: datetime, end: datetime) -> list[tuple[str, datetime]]:
    rows = await conn.fetch(
        "SELECT id, created_at FROM outbox_events WHERE created_at BETWEEN $1 AND $2", start, end
    )
    return [(str(r["id"]), r["created_at"]) for r in rows]
