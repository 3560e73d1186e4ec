"""Idempotency-Key is exactly-once across a lost database connection (issue 15).

The PostgreSQL tests terminate the API's own database connection at each point of an
order creation and of a payment creation: a second connection holds a lock on a row the
operation needs next, the test waits until the API's backend is blocked on it
(``pg_stat_activity.wait_event_type = 'Lock'``), then ``pg_terminate_backend`` drops it.
The client gets a 503; its retry with the same key must then either replay the first
outcome or run against a database in which the first run left nothing: one order, one
payment, a one-per-customer coupon spent once and held by that one order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.gateway import _no_wait
from tests.integration.shop import order_body, post
from tuition.channels.sandbox.client import SandboxChannel, SandboxConfig
from tuition.clock import FrozenClock
from tuition.domain.errors import IdempotencyKeyInUse
from tuition.services import orders as order_service
from tuition.services.api_keys import authenticate
from tuition.simulator.app import Simulator, create_simulator
from tuition.simulator.config import DEFAULT_APP_ID, DEFAULT_SECRET, SimulatorConfig
from tuition.store.access import IdempotencyClaim, IdempotencyRepository, holding
from tuition.store.tables import coupon_redemptions, idempotency_keys, orders, payments
from tuition.store.uow import UnitOfWork

KEY = "retry-me"
LEASE_AND_A_BIT = timedelta(seconds=61)


class GatedTransport(httpx.AsyncBaseTransport):
    """The simulator's transport, with a gate the test may close to hold a gateway call."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.open = asyncio.Event()
        self.open.set()
        self.waiting = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.open.is_set():
            self.waiting.set()
            await self.open.wait()
        return await self.inner.handle_async_request(request)


@pytest.fixture
async def gate(app: FastAPI, clock: FrozenClock) -> AsyncIterator[GatedTransport]:
    sim: Simulator = create_simulator(SimulatorConfig(clock=clock, sleep=_no_wait))
    transport = GatedTransport(sim.transport)
    channel = SandboxChannel(
        SandboxConfig(
            base_url=sim.config.public_base_url,
            app_id=DEFAULT_APP_ID,
            secret=DEFAULT_SECRET,
            gateway_public_key_pem=sim.public_key_pem,
            gateway_serial=sim.serial,
        ),
        transport=transport,
        clock=clock,
    )
    app.state.modes.live.registry.add(channel)
    yield transport
    await sim.aclose()
    await channel.aclose()


@pytest.fixture
async def coupon(client: httpx.AsyncClient, shop: dict[str, str]) -> str:
    await post(client, "/v1/coupons", {"code": "ONCE", "percent_off": "0.1", "max_per_customer": 1})
    return "ONCE"


async def _count(engine: AsyncEngine, table: Any, *where: Any) -> int:
    async with engine.connect() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one()
        )


# --- on both engines: a lost answer, a lost lease ---------------------------------------


async def test_an_order_whose_answer_was_lost_is_replayed_not_created_again(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    coupon: str,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_finish = IdempotencyRepository.finish
    lost: list[bool] = []

    async def finish_lost_once(self: IdempotencyRepository, *args: Any, **kw: Any) -> bool:
        if not lost:
            lost.append(True)
            raise sa_exc.DBAPIError("UPDATE", {}, Exception("gone"), connection_invalidated=True)
        return await real_finish(self, *args, **kw)

    monkeypatch.setattr(IdempotencyRepository, "finish", finish_lost_once)
    body = order_body(shop, "c1", coupon_code=coupon)
    first = await client.post("/v1/orders", json=body, headers={"Idempotency-Key": KEY})
    assert first.status_code == 503, first.text

    retry = await client.post("/v1/orders", json=body, headers={"Idempotency-Key": KEY})
    assert retry.status_code == 201, retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    order = retry.json()
    assert (order["coupon_code"], order["status"]) == (coupon, "pending_payment")
    assert await _count(engine, orders) == 1
    assert await _count(engine, coupon_redemptions) == 1
    again = await client.post("/v1/orders", json=body, headers={"Idempotency-Key": KEY})
    assert again.json()["id"] == order["id"]


async def test_a_route_that_cannot_render_its_outcome_still_never_runs_twice(
    client: httpx.AsyncClient, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mechanism is the unit of work's, so every POST that writes is exactly once;
    a route without a replay answers the retry 409 instead of creating a second one."""
    from tuition.store.tables import creators

    async def finish_lost(self: IdempotencyRepository, *args: Any, **kw: Any) -> bool:
        raise sa_exc.DBAPIError("UPDATE", {}, Exception("gone"), connection_invalidated=True)

    monkeypatch.setattr(IdempotencyRepository, "finish", finish_lost)
    body = {"name": "Ada", "default_revenue_share": "0.7"}
    first = await client.post("/v1/creators", json=body, headers={"Idempotency-Key": KEY})
    assert first.status_code == 503, first.text
    retry = await client.post("/v1/creators", json=body, headers={"Idempotency-Key": KEY})
    assert retry.status_code == 409, retry.text
    assert retry.json()["error"]["code"] == "idempotency_answer_lost"
    assert await _count(engine, creators) == 1


async def test_a_run_whose_lease_was_taken_over_writes_nothing(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    engine: AsyncEngine,
    clock: FrozenClock,
    api_key: str,
) -> None:
    """A slow first run cannot commit after a retry took its key over: the holder token
    fences the commit, so the two runs never both write."""
    async with engine.connect() as conn:
        key_id = (await conn.execute(select(idempotency_keys.c.id).limit(1))).scalar()
    assert key_id is None
    record = await authenticate(UnitOfWork(engine), api_key)
    async with UnitOfWork(engine).autocommit() as single:
        record_id = await single.idempotency.claim(
            api_key_id=record.id,
            key=KEY,
            request_hash="h",
            method="POST",
            path="/v1/orders",
            now=clock.now(),
            locked_until=clock.now() + timedelta(seconds=60),
            expires_at=clock.now() + timedelta(days=1),
            holder="first",
        )
        assert record_id is not None
        assert await single.idempotency.take_over(
            record_id,
            now=clock.now() + LEASE_AND_A_BIT,
            request_hash="h",
            locked_until=clock.now() + timedelta(seconds=121),
            expires_at=clock.now() + timedelta(days=1),
            holder="second",
        )
        await single.commit()
    cmd = order_service.CreateOrder(
        customer_id="u_1", currency="CNY", items=(order_service.ItemRequest(shop["c1"]),)
    )
    policy = order_service.OrderPolicy(order_ttl=timedelta(minutes=15), channel_fee_rates={})
    with holding(IdempotencyClaim(record_id, "first")), pytest.raises(IdempotencyKeyInUse):
        await order_service.create_order(cmd, UnitOfWork(engine), clock=clock, policy=policy)
    assert await _count(engine, orders) == 0
    with holding(IdempotencyClaim(record_id, "second")):
        made = await order_service.create_order(cmd, UnitOfWork(engine), clock=clock, policy=policy)
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(idempotency_keys.c.state, idempotency_keys.c.outcome_id).where(
                    idempotency_keys.c.id == record_id
                )
            )
        ).one()
    assert tuple(row) == ("committed", made.id)
    assert await _count(engine, orders) == 1


# --- PostgreSQL: terminate the API's connection at each point ---------------------------


@dataclass
class Postgres:
    """Direct connections to the test database: lock holders and an observer."""

    url: str
    observer: asyncpg.Connection
    held: list[asyncpg.Connection]

    async def holder(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(self.url)
        self.held.append(conn)
        await conn.execute("BEGIN")
        return conn

    async def ours(self) -> set[int]:
        pids = {self.observer.get_server_pid()}
        return pids | {c.get_server_pid() for c in self.held if not c.is_closed()}

    async def blocked(self, table: str, *, timeout: float = 20.0) -> int:
        """The pid of the API's backend once it waits for a lock in a statement on
        ``table``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            rows = await self.observer.fetch(
                "SELECT pid, query FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND NOT (pid = ANY($1::int[]))",
                list(await self.ours()),
            )
            for row in rows:
                if table in row["query"]:
                    return int(row["pid"])
            await asyncio.sleep(0.02)
        raise AssertionError(f"the API never blocked on {table}")

    async def waiting(self, conn: asyncpg.Connection, *, timeout: float = 20.0) -> None:
        """Until ``conn`` (a lock holder of ours) waits for a lock."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            state = await self.observer.fetchval(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1",
                conn.get_server_pid(),
            )
            if state == "Lock":
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the lock request never queued")

    async def terminate(self, pid: int) -> None:
        assert await self.observer.fetchval("SELECT pg_terminate_backend($1)", pid)

    async def idempotency_row(self) -> int:
        """The key's record id, once the API's claim committed it."""
        for _ in range(1000):
            found = await self.observer.fetchval(
                "SELECT id FROM idempotency_keys WHERE key = $1", KEY
            )
            if found is not None:
                return int(found)
            await asyncio.sleep(0.02)
        raise AssertionError("the key was never claimed")


@pytest.fixture
async def pg(db_url: str, backend: str) -> AsyncIterator[Postgres]:
    url = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    observer = await asyncpg.connect(url)
    state = Postgres(url, observer, [])
    yield state
    for conn in state.held:
        if not conn.is_closed():
            await conn.close()
    await observer.close()


async def _lock_row(conn: asyncpg.Connection, table: str, column: str, value: object) -> None:
    found = await conn.fetchval(f"SELECT 1 FROM {table} WHERE {column} = $1 FOR UPDATE", value)
    assert found == 1


async def _hold_the_key_row(pg: Postgres) -> asyncpg.Connection:
    conn = await pg.holder()
    await _lock_row(conn, "idempotency_keys", "id", await pg.idempotency_row())
    return conn


async def _queue_behind_the_api(pg: Postgres) -> tuple[asyncpg.Connection, asyncio.Task[Any]]:
    """A lock request on the key's row queued behind the API (which waits for it): when
    the API's transaction commits, this one gets the row before the API's next statement."""
    conn = await pg.holder()
    record_id = await pg.idempotency_row()
    task = asyncio.ensure_future(
        conn.fetchval("SELECT 1 FROM idempotency_keys WHERE id = $1 FOR UPDATE", record_id)
    )
    await pg.waiting(conn)
    return conn, task


@dataclass
class Shop:
    client: httpx.AsyncClient
    engine: AsyncEngine
    clock: FrozenClock
    ids: dict[str, str]
    coupon: str

    def order_request(self) -> Awaitable[httpx.Response]:
        body = order_body(self.ids, "c1", coupon_code=self.coupon)
        return self.client.post("/v1/orders", json=body, headers={"Idempotency-Key": KEY})


@pytest.fixture
def shop_state(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    clock: FrozenClock,
    shop: dict[str, str],
    coupon: str,
) -> Shop:
    return Shop(client, engine, clock, shop, coupon)


async def _interrupted(
    request: Awaitable[httpx.Response], cut: Callable[[], Awaitable[None]]
) -> None:
    """Run ``request`` while ``cut`` terminates its connection; the client sees a 503."""
    task = asyncio.ensure_future(request)
    try:
        await cut()
    finally:
        response = await asyncio.wait_for(task, 30)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "database_unavailable"


async def _assert_one_order(shop: Shop, retry: httpx.Response, *, replayed: bool) -> None:
    assert retry.status_code == 201, retry.text
    assert (retry.headers.get("idempotent-replayed") == "true") is replayed
    order = retry.json()
    assert await _count(shop.engine, orders) == 1
    redemptions = await _count(shop.engine, coupon_redemptions)
    held_by_it = await _count(
        shop.engine, coupon_redemptions, coupon_redemptions.c.order_id == order["id"]
    )
    assert (redemptions, held_by_it) == (1, 1), "the coupon is spent once, by that order"
    assert order["coupon_code"] == shop.coupon
    replay = await shop.order_request()
    assert (replay.status_code, replay.json()["id"]) == (201, order["id"])


async def _retry_order(shop: Shop) -> httpx.Response:
    # Past the lease, so even a key left `running` (the old code) could be taken over.
    shop.clock.advance(LEASE_AND_A_BIT)
    return await shop.order_request()


@pytest.mark.postgres_only
async def test_an_order_claim_cut_off_leaves_nothing_and_the_retry_creates_it(
    pg: Postgres, shop_state: Shop, api_key: str
) -> None:
    blocker = await pg.holder()
    key_id = await pg.observer.fetchval("SELECT id FROM api_keys LIMIT 1")
    now = shop_state.clock.now()
    await blocker.execute(
        "INSERT INTO idempotency_keys (api_key_id, key, request_hash, method, path, state, "
        "created_at, locked_until, expires_at) VALUES ($1, $2, 'x', 'POST', '/v1/orders', "
        "'running', $3, $3, $3)",
        key_id,
        KEY,
        now,
    )

    async def cut() -> None:
        await pg.terminate(await pg.blocked("idempotency_keys"))
        await blocker.execute("ROLLBACK")

    await _interrupted(shop_state.order_request(), cut)
    assert await _count(shop_state.engine, orders) == 0
    await _assert_one_order(shop_state, await _retry_order(shop_state), replayed=False)


@pytest.mark.postgres_only
async def test_an_order_transaction_cut_off_leaves_nothing_and_the_retry_creates_it(
    pg: Postgres, shop_state: Shop
) -> None:
    blocker = await pg.holder()
    await _lock_row(blocker, "coupons", "code", shop_state.coupon)

    async def cut() -> None:
        await pg.terminate(await pg.blocked("coupons"))
        await blocker.execute("ROLLBACK")

    await _interrupted(shop_state.order_request(), cut)
    assert await _count(shop_state.engine, orders) == 0
    assert await _count(shop_state.engine, idempotency_keys) == 0, "the key was released"
    await _assert_one_order(shop_state, await _retry_order(shop_state), replayed=False)


@pytest.mark.postgres_only
async def test_a_connection_lost_while_the_key_is_written_leaves_one_order_and_one_coupon_use(
    pg: Postgres, shop_state: Shop
) -> None:
    """The issue's reproduction: the API's connection drops when it writes the key after
    the order. The old code had committed the order already, left the key `running`, and
    after the lease the retry ran again: a second order, or (one-per-customer coupon) a
    refusal stored for the key while an orphan order held the coupon. Now the key's write
    is part of the order's transaction, so both are gone and the retry creates it once."""
    coupon_lock = await pg.holder()
    await _lock_row(coupon_lock, "coupons", "code", shop_state.coupon)

    async def cut() -> None:
        await pg.blocked("coupons")  # the order's transaction is under way
        key_lock = await _hold_the_key_row(pg)
        await coupon_lock.execute("ROLLBACK")
        await pg.terminate(await pg.blocked("idempotency_keys"))
        await key_lock.execute("ROLLBACK")

    await _interrupted(shop_state.order_request(), cut)
    await _assert_one_order(shop_state, await _retry_order(shop_state), replayed=False)


@pytest.mark.postgres_only
async def test_an_order_answer_cut_off_after_commit_is_replayed_to_the_retry(
    pg: Postgres, shop_state: Shop
) -> None:
    coupon_lock = await pg.holder()
    await _lock_row(coupon_lock, "coupons", "code", shop_state.coupon)
    api_pid: list[int] = []

    async def cut() -> None:
        await pg.blocked("coupons")
        key_lock = await _hold_the_key_row(pg)
        await coupon_lock.execute("ROLLBACK")
        api_pid.append(await pg.blocked("idempotency_keys"))  # the outcome, in its tx
        queued, got_row = await _queue_behind_the_api(pg)
        await key_lock.execute("ROLLBACK")
        assert await asyncio.wait_for(got_row, 20) == 1  # the order committed first
        assert await pg.blocked("idempotency_keys") == api_pid[0]  # now storing the answer
        await pg.terminate(api_pid[0])
        await queued.execute("ROLLBACK")

    await _interrupted(shop_state.order_request(), cut)
    assert await _count(shop_state.engine, orders) == 1
    await _assert_one_order(shop_state, await _retry_order(shop_state), replayed=True)


# --- payment creation -------------------------------------------------------------------


@dataclass
class PaymentCase:
    shop: Shop
    order_id: str
    gate: GatedTransport

    def request(self) -> Awaitable[httpx.Response]:
        return self.shop.client.post(
            f"/v1/orders/{self.order_id}/payments",
            json={"channel": "sandbox", "method": "qr"},
            headers={"Idempotency-Key": KEY},
        )

    async def retry(self) -> httpx.Response:
        self.shop.clock.advance(LEASE_AND_A_BIT)
        return await self.request()

    async def assert_one_payment(self, retry: httpx.Response, *, replayed: bool) -> dict[str, Any]:
        assert retry.status_code == 201, retry.text
        assert (retry.headers.get("idempotent-replayed") == "true") is replayed
        payment = retry.json()
        assert payment["order_id"] == self.order_id
        assert await _count(self.shop.engine, payments) == 1, "no orphan attempt"
        replay = await self.request()
        assert (replay.status_code, replay.json()["id"]) == (201, payment["id"])
        return payment  # type: ignore[no-any-return]


@pytest.fixture
async def payment_case(shop_state: Shop, gate: GatedTransport) -> PaymentCase:
    body = order_body(shop_state.ids, "c1", coupon_code=shop_state.coupon)
    order = await post(shop_state.client, "/v1/orders", body)
    return PaymentCase(shop_state, order["id"], gate)


@pytest.mark.postgres_only
async def test_a_payment_claim_cut_off_leaves_nothing_and_the_retry_creates_it(
    pg: Postgres, payment_case: PaymentCase
) -> None:
    blocker = await pg.holder()
    key_id = await pg.observer.fetchval("SELECT id FROM api_keys LIMIT 1")
    now = payment_case.shop.clock.now()
    await blocker.execute(
        "INSERT INTO idempotency_keys (api_key_id, key, request_hash, method, path, state, "
        "created_at, locked_until, expires_at) VALUES ($1, $2, 'x', 'POST', '/x', "
        "'running', $3, $3, $3)",
        key_id,
        KEY,
        now,
    )

    async def cut() -> None:
        await pg.terminate(await pg.blocked("idempotency_keys"))
        await blocker.execute("ROLLBACK")

    await _interrupted(payment_case.request(), cut)
    assert await _count(payment_case.shop.engine, payments) == 0
    paid = await payment_case.assert_one_payment(await payment_case.retry(), replayed=False)
    assert paid["status"] == "pending"
    assert paid["next_action"] is not None


@pytest.mark.postgres_only
async def test_a_payment_transaction_cut_off_leaves_nothing_and_the_retry_creates_it(
    pg: Postgres, payment_case: PaymentCase
) -> None:
    blocker = await pg.holder()
    await _lock_row(blocker, "orders", "id", payment_case.order_id)

    async def cut() -> None:
        await pg.terminate(await pg.blocked("orders"))
        await blocker.execute("ROLLBACK")

    await _interrupted(payment_case.request(), cut)
    assert await _count(payment_case.shop.engine, payments) == 0
    paid = await payment_case.assert_one_payment(await payment_case.retry(), replayed=False)
    assert paid["status"] == "pending"


@pytest.mark.postgres_only
async def test_a_connection_lost_while_the_payment_key_is_written_leaves_one_attempt(
    pg: Postgres, payment_case: PaymentCase
) -> None:
    """As the issue's order reproduction, for a payment: the old code left an attempt
    behind and the retry after the lease opened a second one."""
    order_lock = await pg.holder()
    await _lock_row(order_lock, "orders", "id", payment_case.order_id)

    async def cut() -> None:
        await pg.blocked("orders")
        key_lock = await _hold_the_key_row(pg)
        await order_lock.execute("ROLLBACK")
        await pg.terminate(await pg.blocked("idempotency_keys"))
        await key_lock.execute("ROLLBACK")

    await _interrupted(payment_case.request(), cut)
    paid = await payment_case.assert_one_payment(await payment_case.retry(), replayed=False)
    assert paid["status"] == "pending"


@pytest.mark.postgres_only
async def test_a_payment_cut_off_while_storing_the_gateways_answer_is_replayed(
    pg: Postgres, payment_case: PaymentCase
) -> None:
    """Committed, then the gateway called, then the connection lost while the gateway's
    answer is written: the retry gets the one attempt (still `created`; its recovery
    job asks the gateway), never a second one."""
    payment_case.gate.open.clear()

    async def cut() -> None:
        await asyncio.wait_for(payment_case.gate.waiting.wait(), 20)
        payment_id = await pg.observer.fetchval("SELECT id FROM payments")
        row_lock = await pg.holder()
        await _lock_row(row_lock, "payments", "id", payment_id)
        payment_case.gate.open.set()
        await pg.terminate(await pg.blocked("payments"))
        await row_lock.execute("ROLLBACK")

    await _interrupted(payment_case.request(), cut)
    paid = await payment_case.assert_one_payment(await payment_case.retry(), replayed=True)
    assert paid["status"] == "created"


@pytest.mark.postgres_only
async def test_a_payment_answer_cut_off_is_replayed_with_its_next_action(
    pg: Postgres, payment_case: PaymentCase
) -> None:
    payment_case.gate.open.clear()

    async def cut() -> None:
        await asyncio.wait_for(payment_case.gate.waiting.wait(), 20)
        key_lock = await _hold_the_key_row(pg)  # committed already: this holds the answer
        payment_case.gate.open.set()
        await pg.terminate(await pg.blocked("idempotency_keys"))
        await key_lock.execute("ROLLBACK")

    await _interrupted(payment_case.request(), cut)
    paid = await payment_case.assert_one_payment(await payment_case.retry(), replayed=True)
    assert paid["status"] == "pending"
    assert paid["next_action"] is not None
