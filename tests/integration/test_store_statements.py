"""The prebuilt statements of the payment flow behave as the statements they replaced."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.shop import order_body, post
from tuition.clock import FrozenClock
from tuition.domain.payments import PaymentStatus
from tuition.services.api_keys import create_key
from tuition.simulator.app import Simulator
from tuition.store.catalog import ProductRecord
from tuition.store.db import columns_of
from tuition.store.events import NotificationRecord
from tuition.store.orders import EntitlementRecord, LineRecord, OrderRecord
from tuition.store.payments import PaymentRecord
from tuition.store.tables import entitlements, notifications, order_lines, orders, payments
from tuition.store.uow import UnitOfWork


def test_a_misspelt_or_reserved_column_is_refused_not_ignored() -> None:
    with pytest.raises(TypeError, match="'payments' has no column failure_mesage"):
        columns_of(payments, {"failure_code": "x", "failure_mesage": "y"})
    with pytest.raises(TypeError, match="status is set by the caller"):
        columns_of(payments, {"status": "succeeded"}, reserved=("status",))
    assert columns_of(payments, {"failure_code": "x"}) == {"failure_code": "x"}


@pytest.mark.parametrize(
    ("record", "table", "extra"),
    [
        (OrderRecord, orders, set()),
        (LineRecord, order_lines, {"order_id"}),
        (EntitlementRecord, entitlements, set()),
        (PaymentRecord, payments, set()),
        (NotificationRecord, notifications, set()),
    ],
)
def test_every_field_a_prebuilt_insert_writes_has_a_column(
    record: type, table: Table, extra: set[str]
) -> None:
    # A prebuilt INSERT ignores a parameter with no column; .values() refused it.
    fields = set(record.__dataclass_fields__) - {"lines"}
    assert fields <= set(table.c.keys()), fields - set(table.c.keys())
    assert extra <= set(table.c.keys())


async def test_a_compare_and_set_writes_its_extra_columns_and_needs_a_status(
    client: httpx.AsyncClient, shop: dict[str, str], gateway: Simulator, uow: UnitOfWork
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "c1"))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    async with uow:
        with pytest.raises(TypeError):
            await uow.payments.set_status(
                payment["id"],
                expected=(PaymentStatus.PENDING,),
                target=PaymentStatus.FAILED,
                at=datetime.now(UTC),
                failure_mesage="typo",
            )
        with pytest.raises(ValueError, match="at least one expected status"):
            await uow.payments.set_status(
                payment["id"], expected=(), target=PaymentStatus.FAILED, at=datetime.now(UTC)
            )
        assert not await uow.payments.set_status(
            payment["id"],
            expected=(PaymentStatus.CREATED, PaymentStatus.SUCCEEDED),
            target=PaymentStatus.FAILED,
            at=datetime.now(UTC),
        )
        assert await uow.payments.set_status(
            payment["id"],
            expected=(PaymentStatus.CREATED, PaymentStatus.PENDING),
            target=PaymentStatus.FAILED,
            at=datetime.now(UTC),
            failure_code="card_declined",
            failure_message="declined by the bank",
        )
        await uow.commit()
    async with uow:
        stored = await uow.payments.get(payment["id"])
    assert stored is not None
    assert (stored.status, stored.failure_code, stored.failure_message) == (
        PaymentStatus.FAILED,
        "card_declined",
        "declined by the bank",
    )


async def test_an_autocommit_unit_of_work_keeps_what_it_wrote(
    uow: UnitOfWork, clock: FrozenClock
) -> None:
    key = (await create_key(uow, name="t", mode="test", clock=clock)).record
    async with uow.autocommit() as single:
        record_id = await single.idempotency.claim(
            api_key_id=key.id,
            key="k",
            request_hash="h",
            method="POST",
            path="/v1/orders",
            now=clock.now(),
            locked_until=clock.now() + timedelta(seconds=60),
            expires_at=clock.now() + timedelta(days=1),
        )
        await single.commit()
    assert record_id is not None
    async with uow:
        found = await uow.idempotency.get(key.id, "k")
    assert found is not None
    assert (found.id, found.state) == (record_id, "running")


async def test_a_product_locked_for_update_is_read_after_the_lock(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """A writer that waited for the lock sees the prices the lock holder committed."""
    creator = await post(client, "/v1/creators", {"name": "Ada", "default_revenue_share": "0.7"})
    product = await post(
        client,
        "/v1/products",
        {"creator_id": creator["id"], "title": "c", "kind": "course", "prices": {"CNY": 100}},
    )

    async def second_writer() -> ProductRecord | None:
        # Blocks on the row lock (PostgreSQL) or on BEGIN IMMEDIATE (SQLite).
        async with UnitOfWork(engine) as uow:
            return await uow.catalog.get_product(product["id"], for_update=True)

    async with UnitOfWork(engine) as first:
        held = await first.catalog.get_product(product["id"], for_update=True)
        assert held is not None
        second = asyncio.create_task(second_writer())
        await asyncio.sleep(0.3)  # the second writer is now queued behind the first
        repriced = replace(held.product, title="c2", prices={"CNY": 200})
        await first.catalog.update_product(replace(held, product=repriced))
        await first.commit()
    seen = await asyncio.wait_for(second, 30)
    assert seen is not None
    assert (seen.product.title, dict(seen.product.prices)) == ("c2", {"CNY": 200})
