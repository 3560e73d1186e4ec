"""Earnings on both engines with the clock injected: held through the refund window,
released by the worker once, taken back by refunds from pending or from available, and
checked by ``ledger verify`` against the payee's accounts."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from tests.integration.shop import order_body, post
from tuition.clock import FrozenClock
from tuition.services.earnings import payee_problems, record_earnings, release_due, release_earnings
from tuition.services.ledger import verify_ledger
from tuition.simulator.app import Simulator
from tuition.store.tables import earnings, journal_entries
from tuition.store.uow import UnitOfWork
from tuition.worker.runner import Worker, WorkerConfig

SHARE = 6930  # 70 % of the 99.00 course "c1"
HOLD = timedelta(days=7)  # the default refund window


async def _paid(
    client: httpx.AsyncClient,
    gateway: Simulator,
    shop: dict[str, str],
    *names: str,
    customer: str = "u_1",
) -> dict[str, Any]:
    order = await post(client, "/v1/orders", order_body(shop, *names, customer_id=customer))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    paid = (await client.get(f"/v1/orders/{order['id']}")).json()
    assert paid["status"] == "paid", paid
    paid["payment_id"] = payment["id"]
    return paid  # type: ignore[no-any-return]


async def _refund(client: httpx.AsyncClient, gateway: Simulator, **body: Any) -> dict[str, Any]:
    made = await client.post("/v1/refunds", json=body)
    assert made.status_code == 201, made.text
    await gateway.drain()
    refund = (await client.get(f"/v1/refunds/{made.json()['id']}")).json()
    assert refund["status"] == "succeeded", refund
    return refund  # type: ignore[no-any-return]


async def _balance(client: httpx.AsyncClient, payee: str) -> dict[str, int]:
    got = await client.get(f"/v1/payees/{payee}/balance")
    assert got.status_code == 200, got.text
    [cny] = got.json()["balances"]
    return {"pending": cny["pending"], "available": cny["available"]}


async def _books_clean(uow: UnitOfWork) -> None:
    report = await verify_ledger(uow)
    assert report.ok, report.problems
    assert await payee_problems(uow) == []


async def _entries(uow: UnitOfWork, prefix: str) -> int:
    async with uow:
        query = select(func.count()).where(journal_entries.c.source.startswith(prefix))
        return int((await uow.conn.execute(query)).scalar_one())


def _worker(app: FastAPI) -> Worker:
    return Worker(app.state.modes.live, WorkerConfig(sweep_interval=timedelta(seconds=0)))


async def test_a_creators_share_is_pending_during_the_hold_then_the_worker_makes_it_available(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    paid_at = clock.now()
    order = await _paid(client, gateway, shop, "c1")
    creator = shop["creator"]
    assert await _balance(client, creator) == {"pending": SHARE, "available": 0}
    payee = (await client.get(f"/v1/payees/{creator}")).json()
    assert (payee["kind"], payee["name"], payee["tax_profile"]) == ("creator", "Ada", "individual")
    listed = (await client.get(f"/v1/payees/{creator}/earnings")).json()
    [earning] = listed["data"]
    assert listed["has_more"] is False
    assert earning["order_id"] == order["id"]
    assert (earning["base_amount"], earning["rate"], earning["amount"]) == (9900, "0.7", SHARE)
    assert earning["status"] == "pending"
    assert earning["release_at"].startswith((paid_at + HOLD).date().isoformat())
    await _books_clean(uow)

    clock.advance(HOLD - timedelta(seconds=1))
    await _worker(app).run_once()
    assert await _balance(client, creator) == {"pending": SHARE, "available": 0}

    clock.advance(timedelta(seconds=1))
    await _worker(app).run_once()
    assert await _balance(client, creator) == {"pending": 0, "available": SHARE}
    [released] = (await client.get(f"/v1/payees/{creator}/earnings")).json()["data"]
    assert released["status"] == "released"
    # Run again, by the job, the sweep or a second worker: nothing moves twice.
    await _worker(app).run_once()
    await release_earnings(uow, order["payment_id"], clock=clock)
    assert await release_due(uow, clock=clock) == 0
    assert await _entries(uow, "earnings_release:") == 1
    assert await _balance(client, creator) == {"pending": 0, "available": SHARE}
    await _books_clean(uow)


async def test_a_refund_during_the_hold_takes_the_share_back_pro_rata_from_pending(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    order = await _paid(client, gateway, shop, "c1")
    clock.advance(timedelta(days=3))
    refund = await _refund(client, gateway, order_id=order["id"], amount=3000)
    # 3000 of 9900 over creator 6930 / platform 2970, by largest remainder: 2100 / 900.
    assert refund["lines"][0]["creator_amount"] == 2100
    assert await _balance(client, shop["creator"]) == {"pending": SHARE - 2100, "available": 0}
    [earning] = (await client.get(f"/v1/payees/{shop['creator']}/earnings")).json()["data"]
    assert earning["clawed_back"] == 2100
    await _books_clean(uow)
    clock.advance(HOLD)
    await _worker(app).run_once()
    assert await _balance(client, shop["creator"]) == {"pending": 0, "available": SHARE - 2100}
    await _books_clean(uow)


async def test_a_full_refund_during_the_hold_leaves_nothing_to_release(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    order = await _paid(client, gateway, shop, "c1")
    await _refund(client, gateway, order_id=order["id"])
    assert await _balance(client, shop["creator"]) == {"pending": 0, "available": 0}
    clock.advance(HOLD)
    await _worker(app).run_once()
    assert await _entries(uow, "earnings_release:") == 0
    assert await _balance(client, shop["creator"]) == {"pending": 0, "available": 0}
    await _books_clean(uow)


async def test_a_refund_after_the_hold_takes_the_share_back_from_available(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    order = await _paid(client, gateway, shop, "c1")
    clock.advance(HOLD)
    await _worker(app).run_once()
    assert await _balance(client, shop["creator"]) == {"pending": 0, "available": SHARE}
    refund = await _refund(client, gateway, order_id=order["id"], amount=3000)
    assert refund["lines"][0]["creator_amount"] == 2100
    assert await _balance(client, shop["creator"]) == {"pending": 0, "available": SHARE - 2100}
    [earning] = (await client.get(f"/v1/payees/{shop['creator']}/earnings")).json()["data"]
    assert earning["clawed_back"] == 2100
    async with uow:
        row = (await uow.conn.execute(select(earnings))).one()
    assert (row.clawed_pending, row.clawed_available) == (0, 2100)
    await _books_clean(uow)


async def test_earnings_of_two_orders_release_on_their_own_dates_and_list_newest_first(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    first = await _paid(client, gateway, shop, "c1")
    clock.advance(timedelta(days=2))
    second = await _paid(client, gateway, shop, "c2")  # 199.00 at 70 %: 13930
    clock.advance(timedelta(days=5))
    await _worker(app).run_once()
    assert await _balance(client, shop["creator"]) == {"pending": 13930, "available": SHARE}
    page = (await client.get(f"/v1/payees/{shop['creator']}/earnings", params={"limit": 1})).json()
    assert [e["order_id"] for e in page["data"]] == [second["id"]]
    assert page["has_more"] is True
    rest = await client.get(
        f"/v1/payees/{shop['creator']}/earnings",
        params={"limit": 1, "starting_after": page["data"][0]["id"]},
    )
    assert [e["order_id"] for e in rest.json()["data"]] == [first["id"]]
    assert rest.json()["has_more"] is False
    clock.advance(timedelta(days=2))
    await _worker(app).run_once()
    assert await _balance(client, shop["creator"]) == {"pending": 0, "available": SHARE + 13930}
    await _books_clean(uow)


async def test_recording_a_payments_earnings_twice_holds_them_once(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    order = await _paid(client, gateway, shop, "c1")
    async with uow:
        payment = await uow.payments.get(order["payment_id"])
        record = await uow.orders.get(order["id"])
        assert payment is not None
        assert record is not None
        await record_earnings(
            uow, payment, record, [(shop["creator"], SHARE)], paid_at=clock.now(), at=clock.now()
        )
        await uow.commit()
    async with uow:
        count = (await uow.conn.execute(select(func.count()).select_from(earnings))).scalar_one()
    assert count == 1
    await _books_clean(uow)


async def test_a_release_that_crashes_before_commit_moves_nothing_and_the_retry_moves_it_once(
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order = await _paid(client, gateway, shop, "c1")
    clock.advance(HOLD)

    async def crash(*_args: object, **_kwargs: object) -> None:
        raise ConnectionError("killed between the hold's update and the entry")

    with monkeypatch.context() as patched:
        patched.setattr("tuition.store.events.EventRepository.emit", crash)
        with pytest.raises(ConnectionError):
            await release_earnings(uow, order["payment_id"], clock=clock)
    assert await _balance(client, shop["creator"]) == {"pending": SHARE, "available": 0}
    await _books_clean(uow)
    await release_earnings(uow, order["payment_id"], clock=clock)
    assert await _balance(client, shop["creator"]) == {"pending": 0, "available": SHARE}
    assert await _entries(uow, "earnings_release:") == 1
    await _books_clean(uow)


async def test_ledger_verify_reports_held_earnings_that_drift_from_the_pending_account(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    await _paid(client, gateway, shop, "c1")
    async with uow:
        await uow.conn.execute(update(earnings).values(clawed_pending=100))
        await uow.commit()
    problems = await payee_problems(uow)
    assert problems == [
        f"payee {shop['creator']}/CNY: held earnings {SHARE - 100}, creator_pending {SHARE}"
    ]


async def test_an_unknown_payee_is_404_and_a_malformed_id_422_naming_it(
    client: httpx.AsyncClient,
) -> None:
    missing = await client.get("/v1/payees/cre_01J9Z3K4QW8YV6T2N5B7C0D1EF/balance")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "payee_not_found"
    bad = await client.get("/v1/payees/not-an-id/earnings")
    assert bad.status_code == 422
    assert bad.json()["error"]["param"] == "payee_id"
    cursor = await client.get(
        "/v1/payees/cre_01J9Z3K4QW8YV6T2N5B7C0D1EF/earnings", params={"starting_after": "ord_1"}
    )
    assert cursor.status_code == 422
    assert cursor.json()["error"]["code"] == "cursor_invalid"


@pytest.mark.postgres_only
async def test_a_refund_racing_the_release_takes_back_from_exactly_one_place(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    orders = [await _paid(client, gateway, shop, "c1", customer=f"u_{n}") for n in range(6)]
    clock.advance(HOLD)  # the last moment a refund is allowed, the first the hold may end
    for order in orders:
        made = await client.post("/v1/refunds", json={"order_id": order["id"], "amount": 3000})
        assert made.status_code == 201, made.text
    engine = app.state.modes.live.engine
    # The refunds' notifications settle while the holds are being released.
    await asyncio.gather(
        gateway.drain(),
        *(release_earnings(UnitOfWork(engine), o["payment_id"], clock=clock) for o in orders),
    )
    for order in orders:
        refund = (await client.get("/v1/refunds", params={"order_id": order["id"]})).json()
        assert [r["status"] for r in refund["data"]] == ["succeeded"]
    assert await _balance(client, shop["creator"]) == {
        "pending": 0,
        "available": 6 * (SHARE - 2100),
    }
    assert await _entries(uow, "earnings_release:") == 6
    await _books_clean(uow)


@pytest.mark.postgres_only
async def test_two_workers_releasing_the_same_holds_at_once_move_each_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, str],
    gateway: Simulator,
    clock: FrozenClock,
    uow: UnitOfWork,
) -> None:
    orders = [await _paid(client, gateway, shop, "c1", customer=f"u_{n}") for n in range(5)]
    clock.advance(HOLD)
    engine = app.state.modes.live.engine
    await asyncio.gather(
        *(
            release_earnings(UnitOfWork(engine), o["payment_id"], clock=clock)
            for o in orders
            for _ in range(3)
        ),
        release_due(UnitOfWork(engine), clock=clock),
    )
    assert await _entries(uow, "earnings_release:") == 5
    assert await _balance(client, shop["creator"]) == {"pending": 0, "available": 5 * SHARE}
    await _books_clean(uow)
