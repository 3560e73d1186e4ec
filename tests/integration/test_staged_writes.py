"""Staged writes, statements run on the driver directly, and the unit of work's own
transactions on PostgreSQL (store/staged.py, store/direct.py, store/uow.py), both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from tuition.domain.orders import OrderStatus
from tuition.domain.payments import PaymentStatus
from tuition.store.direct import Direct
from tuition.store.orders import LineRecord, OrderRecord
from tuition.store.payments import PaymentRecord
from tuition.store.staged import Shape
from tuition.store.tables import jobs, order_lines, orders, outbox_events, payments
from tuition.store.uow import UnitOfWork

AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def _order(order_id: str, shop: dict[str, str], *, lines: int = 2) -> OrderRecord:
    return OrderRecord(
        id=order_id,
        customer_id="u_1",
        currency="CNY",
        status=OrderStatus.PENDING_PAYMENT,
        subtotal=1000 * lines,
        discount_total=0,
        tax_total=0,
        surcharge=0,
        total=1000 * lines,
        amount_refunded=0,
        coupon_code=None,
        tax_region=None,
        surface="web",
        payer=None,
        pricing={"fx": None},
        return_url=None,
        metadata={"k": "v"},
        expires_at=AT + timedelta(minutes=30),
        paid_at=None,
        closed_at=None,
        created_at=AT,
        updated_at=AT,
        referral_code=None,
        partner_id=None,
        lines=tuple(
            LineRecord(
                line_index=i,
                product_id=shop[f"c{i + 1}"],
                kind="course",
                title=f"Course {i + 1}",
                creator_id=shop["creator"],
                revenue_share=Decimal("0.7"),
                quantity=1,
                unit_price=1000,
                list_amount=1000,
                promotion_discount=0,
                coupon_discount=0,
                tax=0,
                surcharge=0,
                total=1000,
                components=[],
                refund_reserved=0,
                amount_refunded=0,
            )
            for i in range(lines)
        ),
    )


async def _place(uow: UnitOfWork, order: OrderRecord) -> None:
    """Store ``order`` in a unit of work of its own."""
    async with uow:
        await uow.orders.add(order)
        await uow.commit()


async def _count(engine: AsyncEngine, table: Any, **where: str) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).select_from(table)
        for name, value in where.items():
            query = query.where(table.c[name] == value)
        return int((await conn.execute(query)).scalar_one())


async def test_staged_writes_go_out_at_commit_and_are_dropped_by_a_rollback(
    engine: AsyncEngine, shop: dict[str, str]
) -> None:
    uow = UnitOfWork(engine)
    async with uow:
        await uow.orders.add(_order("ord_staged", shop))
        await uow.events.emit("order.created", "ord_staged", {"n": 1}, at=AT)
        assert uow.staged  # nothing sent yet
        assert await uow.orders.get("ord_staged") is None  # the rule: not read back
        await uow.commit()
    assert await _count(engine, orders, id="ord_staged") == 1
    assert await _count(engine, order_lines, order_id="ord_staged") == 2
    assert await _count(engine, outbox_events, object_id="ord_staged") == 1

    async with uow:
        await uow.orders.add(_order("ord_dropped", shop))
        await uow.events.emit("order.created", "ord_dropped", {}, at=AT)
        # leaving without commit(): nothing staged is written
    assert await _count(engine, orders, id="ord_dropped") == 0
    assert await _count(engine, outbox_events, object_id="ord_dropped") == 0


async def test_a_staged_write_refused_by_the_database_writes_none_of_its_batch(
    engine: AsyncEngine, shop: dict[str, str]
) -> None:
    uow = UnitOfWork(engine)
    await _place(uow, _order("ord_twice", shop, lines=1))
    async with uow:
        await uow.events.emit("order.created", "ord_twice", {}, at=AT)
        await uow.orders.add(_order("ord_twice", shop, lines=1))  # the same primary key
        with pytest.raises(IntegrityError):
            await uow.commit()
    assert await _count(engine, orders, id="ord_twice") == 1
    assert await _count(engine, outbox_events, object_id="ord_twice") == 0
    async with uow:  # the connection went back to the pool usable, outside a transaction
        assert (await uow.orders.get("ord_twice")) is not None


def _mark_paid(prefix: str, _dialect: str) -> Any:
    return (
        update(orders)
        .where(
            orders.c.id == bindparam(prefix + "where_id"),
            orders.c.status == "pending_payment",
        )
        .values(status="paid", updated_at=bindparam(prefix + "at", type_=orders.c.updated_at.type))
        .returning(orders.c.id)
    )


_MARK_PAID = Shape(_mark_paid, guarded=True)


async def test_a_guard_reports_the_rows_it_matched_beside_the_other_writes(
    engine: AsyncEngine, shop: dict[str, str]
) -> None:
    uow = UnitOfWork(engine)
    await _place(uow, _order("ord_guarded", shop, lines=1))
    for expected in (1, 0):  # the second time the order is no longer pending
        async with uow:
            for n in range(40):  # more than one combined statement holds
                await uow.events.emit("order.paid", "ord_guarded", {"n": n}, at=AT)
            uow.staged.guard(_MARK_PAID, {"where_id": "ord_guarded", "at": AT})
            assert await uow.staged.flush() == [expected]
            await uow.commit()
    assert await _count(engine, outbox_events, object_id="ord_guarded") == 80


async def test_a_direct_statement_reads_and_writes_as_sqlalchemy_does(
    engine: AsyncEngine, shop: dict[str, str]
) -> None:
    uow = UnitOfWork(engine)
    await _place(uow, _order("ord_direct", shop, lines=1))
    statement = select(orders).where(orders.c.id == bindparam("order_id"))
    async with uow:
        direct = await Direct(statement).first(uow.conn, {"order_id": "ord_direct"})
        row = (await uow.conn.execute(statement, {"order_id": "ord_direct"})).one()
    assert direct is not None
    assert dict(direct) == dict(row._mapping)
    assert direct["created_at"] == AT
    assert direct["created_at"].tzinfo is not None
    assert direct["metadata"] == {"k": "v"}
    assert direct["pricing"] == {"fx": None}

    # SET columns come from the parameters' names, as with execute(); a bind processor
    # (aware UTC datetimes only) still applies.
    touch = Direct(update(orders).where(orders.c.id == bindparam("where_id")))
    async with uow:
        assert await touch.rowcount(uow.conn, {"where_id": "ord_direct", "surface": "h5"}) == 1
        assert await touch.rowcount(uow.conn, {"where_id": "nope", "surface": "h5"}) == 0
        with pytest.raises(StatementError, match="naive datetime"):
            await touch.rowcount(
                uow.conn, {"where_id": "ord_direct", "updated_at": datetime(2026, 1, 1)}
            )
    async with uow:  # that unit of work never committed: its first update is gone too
        fresh = await uow.orders.get("ord_direct", with_lines=False)
    assert fresh is not None
    assert fresh.surface == "web"


async def test_direct_statements_share_the_unit_of_works_transaction(
    engine: AsyncEngine, shop: dict[str, str]
) -> None:
    uow = UnitOfWork(engine)
    await _place(uow, _order("ord_tx", shop, lines=1))
    async with uow:
        assert await uow.orders.set_status(
            "ord_tx",
            expected=OrderStatus.PENDING_PAYMENT,
            target=OrderStatus.CANCELLED,
            at=AT,
            closed_at=AT,
        )
        seen = await uow.orders.get("ord_tx", with_lines=False)  # its own write, uncommitted
        assert seen is not None
        assert seen.status is OrderStatus.CANCELLED
        # leave without commit
    async with uow:
        after = await uow.orders.get("ord_tx", with_lines=False)
    assert after is not None
    assert after.status is OrderStatus.PENDING_PAYMENT


async def test_a_payment_and_its_job_are_staged_together(
    engine: AsyncEngine, shop: dict[str, str]
) -> None:
    uow = UnitOfWork(engine)
    await _place(uow, _order("ord_pay", shop, lines=1))
    payment = PaymentRecord(
        id="pay_staged",
        order_id="ord_pay",
        customer_id="u_1",
        channel="sandbox",
        method="page",
        app_id="sandbox-app",
        status=PaymentStatus.PENDING,
        amount=1000,
        currency="CNY",
        fee=0,
        amount_refunded=0,
        refund_reserved=0,
        channel_trade_no=None,
        next_action=None,
        failure_code=None,
        failure_message=None,
        duplicate_of=None,
        wallet_part_id=None,
        succeeded_at=None,
        closed_at=None,
        created_at=AT,
        updated_at=AT,
    )
    async with uow:
        await uow.payments.add_with_job(payment, kind="reconcile_payment", run_at=AT)
        await uow.commit()
    async with uow:
        stored = await uow.payments.get("pay_staged")
    assert stored == payment
    assert await _count(engine, jobs, key="reconcile_payment:pay_staged") == 1
    assert await _count(engine, payments, id="pay_staged") == 1


async def test_a_connection_lost_inside_a_transaction_is_discarded_not_pooled(
    engine: AsyncEngine, backend: str, shop: dict[str, str]
) -> None:
    if backend != "postgresql":
        pytest.skip("the driver's own transactions are PostgreSQL's")
    uow = UnitOfWork(engine)
    for _ in range(2):  # the server drops the session mid-transaction, twice
        async with uow:
            pid = (await uow.conn.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one()
            async with engine.connect() as other:
                await other.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
            with pytest.raises(DBAPIError) as lost:
                await uow.orders.get("ord_none", with_lines=False)  # a Direct statement
            assert lost.value.connection_invalidated
    async with uow:  # what the pool hands out next works, outside any old transaction
        await uow.orders.add(_order("ord_after_loss", shop, lines=1))
        await uow.commit()
    assert await _count(engine, orders, id="ord_after_loss") == 1


async def test_after_a_database_restart_a_failed_begin_recycles_the_pool(
    engine: AsyncEngine, backend: str, shop: dict[str, str]
) -> None:
    if backend != "postgresql":
        pytest.skip("the driver's own transactions are PostgreSQL's")
    uows = [UnitOfWork(engine) for _ in range(3)]
    for uow in uows:  # three pooled connections, all in recent use
        await uow.__aenter__()
    for uow in uows:
        await uow.__aexit__(None, None, None)
    async with engine.connect() as other:  # as a restart would: every session dropped
        await other.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        await other.invalidate()
    with pytest.raises(DBAPIError) as lost:
        async with UnitOfWork(engine):  # BEGIN on a dead connection
            pass
    assert lost.value.connection_invalidated
    uow = UnitOfWork(engine)
    async with uow:  # not another dead one: the pool was recycled
        await uow.orders.add(_order("ord_after_restart", shop, lines=1))
        await uow.commit()
    assert await _count(engine, orders, id="ord_after_restart") == 1
