"""The prebuilt statements of the payment flow behave as the statements they replaced."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tuition.clock import FrozenClock
from tuition.domain.payments import PaymentStatus
from tuition.services.api_keys import create_key
from tuition.store.db import columns_of
from tuition.store.tables import payments
from tuition.store.uow import UnitOfWork


def test_a_misspelt_column_is_refused_not_ignored() -> None:
    with pytest.raises(TypeError, match="'payments' has no column failure_mesage"):
        columns_of(payments, {"failure_code": "x", "failure_mesage": "y"})
    assert columns_of(payments, {"failure_code": "x"}) == {"failure_code": "x"}


async def test_a_status_change_with_a_misspelt_column_writes_nothing(
    uow: UnitOfWork, clock: FrozenClock
) -> None:
    async with uow:
        with pytest.raises(TypeError):
            await uow.payments.set_status(
                "pay_missing",
                expected=(PaymentStatus.CREATED,),
                target=PaymentStatus.FAILED,
                at=clock.now() + timedelta(seconds=1),
                failure_mesage="typo",
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
