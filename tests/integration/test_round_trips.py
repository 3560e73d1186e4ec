"""How many database round trips a payment flow costs on PostgreSQL.

A count, not a timing: each round trip costs the API process a few hundred microseconds
of CPU (docs/performance.md), so a change that adds one to the main road should be a
decision. When a change lowers a count, lower the budget here and in the docs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from asyncpg.connection import Connection
from asyncpg.prepared_stmt import PreparedStatement

from tests.integration.shop import order_body
from tuition.simulator.app import Simulator

# Per request, with an Idempotency-Key on both POSTs, as the API asks platforms to. Each
# POST's writes go out in one statement with the key's outcome, inside the operation's
# own transaction (store/staged.py; exactly once across a lost connection, docs/api.md):
# the order with its lines, the payment with its recovery job. The notification's
# outbox events, entitlement and audit record are one statement too.
BUDGET = {"create order": 7, "create payment": 8, "notification": 11}


class RoundTrips:
    """Counts what the asyncpg driver sends: simple queries (BEGIN, COMMIT), executions
    of prepared statements and statements run on the connection directly
    (store/direct.py). Preparing a statement is not counted: asyncpg caches it per
    connection, so only a connection's first use of a statement pays for it."""

    def __init__(self) -> None:
        self.by_step: Counter[str] = Counter()
        self.step = ""

    def wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            if self.step:
                self.by_step[self.step] += 1
            return await method(*args, **kwargs)

        return counted


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch, backend: str) -> RoundTrips:
    if backend != "postgresql":
        pytest.skip("round trips are a PostgreSQL cost; SQLite runs in the process")
    counter = RoundTrips()
    for cls, name in (
        (Connection, "execute"),
        (Connection, "executemany"),
        (Connection, "fetch"),
        (Connection, "fetchrow"),
        (Connection, "fetchval"),
        (PreparedStatement, "fetch"),
        (PreparedStatement, "fetchrow"),
        (PreparedStatement, "fetchval"),
        (PreparedStatement, "executemany"),
    ):
        monkeypatch.setattr(cls, name, counter.wrap(getattr(cls, name)))
    return counter


async def test_a_payment_flow_stays_within_its_round_trip_budget(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    round_trips: RoundTrips,
) -> None:
    # The second flow is the one counted: the first warms the API key cache.
    for n in range(2):
        round_trips.by_step.clear()
        round_trips.step = "create order"
        order = await client.post(
            "/v1/orders",
            json=order_body(shop, "c1", customer_id=f"u_{n}"),
            headers={"Idempotency-Key": f"order-{n}"},
        )
        assert order.status_code == 201, order.text
        round_trips.step = "create payment"
        payment = await client.post(
            f"/v1/orders/{order.json()['id']}/payments",
            json={"channel": "sandbox", "method": "page"},
            headers={"Idempotency-Key": f"payment-{n}"},
        )
        assert payment.status_code == 201, payment.text
        round_trips.step = "notification"
        await gateway.pay(payment.json()["id"])
        await gateway.drain()
        round_trips.step = ""
        paid = await client.get(f"/v1/orders/{order.json()['id']}")
        assert paid.json()["status"] == "paid"

    counted = {step: round_trips.by_step[step] for step in BUDGET}
    assert all(counted.values()), f"no round trip seen in {counted}: is the counter wired?"
    print(f"round trips: {counted}")
    over = {step: n for step, n in counted.items() if n > BUDGET[step]}
    assert not over, f"round trips over budget {BUDGET}: {counted}"
