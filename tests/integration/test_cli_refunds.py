"""`tuition refunds` on a real SQLite file, with a paid order and no gateway reachable."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tuition.channels.base import PaymentState
from tuition.cli import app
from tuition.clock import SystemClock
from tuition.config import get_settings
from tuition.domain.catalog import ProductKind
from tuition.domain.payments import PaymentStatus
from tuition.services import catalog
from tuition.services.orders import CreateOrder, ItemRequest, OrderPolicy, create_order
from tuition.services.settlement import apply_payment_state
from tuition.store.db import create_engine
from tuition.store.payments import new_attempt
from tuition.store.uow import UnitOfWork

runner = CliRunner()


@pytest.fixture
def paid_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    path = tmp_path / "cli.db"
    monkeypatch.setenv("TUITION_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    # Nothing answers here: a refund's submission cannot reach the gateway.
    monkeypatch.setenv("TUITION_SANDBOX_URL", "http://127.0.0.1:9/simulator")
    get_settings.cache_clear()
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    yield asyncio.run(_pay(f"sqlite+aiosqlite:///{path}"))
    get_settings.cache_clear()


async def _pay(url: str) -> str:
    engine = create_engine(url)
    clock = SystemClock()
    try:
        creator = await catalog.create_creator(
            catalog.NewCreator(name="Ada", default_revenue_share=Decimal("0.7")),
            UnitOfWork(engine),
            clock=clock,
        )
        product = await catalog.create_product(
            catalog.NewProduct(
                creator_id=creator.creator.id,
                kind=ProductKind.COURSE,
                title="Course",
                prices={"CNY": 9900},
            ),
            UnitOfWork(engine),
            clock=clock,
        )
        order = await create_order(
            CreateOrder("u_1", "CNY", (ItemRequest(product.product.id),)),
            UnitOfWork(engine),
            clock=clock,
            policy=OrderPolicy(timedelta(minutes=15), {"sandbox": Decimal("0.006")}),
        )
        now = clock.now()
        payment = new_attempt(
            payment_id="pay_01M8CL1REFUND0000000000000",
            order_id=order.id,
            customer_id="u_1",
            channel="sandbox",
            method="page",
            app_id="sandbox_app",
            amount=9900,
            currency="CNY",
            at=now,
        )
        uow = UnitOfWork(engine)
        async with uow:
            await uow.payments.add(payment)
            state = PaymentState(payment.id, PaymentStatus.SUCCEEDED, 9900, "CNY")
            await apply_payment_state(uow, payment, state, fee_rate=Decimal("0.006"), at=now)
            await uow.commit()
        return order.id
    finally:
        await engine.dispose()


def test_refunds_can_be_created_shown_and_listed_from_the_command_line(paid_order: str) -> None:
    too_much = runner.invoke(app, ["refunds", "create", "--order", paid_order, "--amount", "9901"])
    assert too_much.exit_code == 1
    assert "refund_exceeds_refundable" in too_much.output

    made = runner.invoke(
        app, ["refunds", "create", "--order", paid_order, "--amount", "1000", "--operator", "li"]
    )
    assert made.exit_code == 0, made.output
    assert "pending" in made.output  # the gateway did not answer: the worker asks again
    assert "cli:li" in made.output
    refund_id = next(w for w in made.output.split() if w.startswith("re_"))

    shown = runner.invoke(app, ["refunds", "show", refund_id])
    assert shown.exit_code == 0, shown.output
    assert "10.00 CNY" in shown.output
    listed = runner.invoke(app, ["refunds", "list", "--order", paid_order])
    assert refund_id in listed.output
    assert runner.invoke(app, ["refunds", "show", "re_nope"]).exit_code == 1


def test_a_wallet_is_shown_from_the_command_line(paid_order: str) -> None:
    empty = runner.invoke(app, ["wallet", "show", "u_1"])
    assert empty.exit_code == 0, empty.output
    assert "no wallet balance" in empty.output

    async def credit() -> None:
        from tuition.channels.registry import ChannelRegistry
        from tuition.services.payments import PaymentDeps
        from tuition.services.wallet import Adjustment, adjust

        engine = create_engine(get_settings().database_url)
        try:
            deps = PaymentDeps(ChannelRegistry(), SystemClock(), "http://localhost")
            await adjust(
                Adjustment("u_1", "CNY", 1234, "goodwill", "cli:test"),
                UnitOfWork(engine),
                deps=deps,
            )
        finally:
            await engine.dispose()

    asyncio.run(credit())
    shown = runner.invoke(app, ["wallet", "show", "u_1"])
    assert shown.exit_code == 0, shown.output
    assert "12.34 CNY" in shown.output
    assert "adjustment" in shown.output


def test_ledger_verify_finds_a_wallet_that_differs_from_its_liability(paid_order: str) -> None:
    assert runner.invoke(app, ["ledger", "verify"]).exit_code == 0

    async def tamper() -> None:
        from sqlalchemy import insert

        from tuition.store.tables import wallet_balances

        engine = create_engine(get_settings().database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    insert(wallet_balances).values(
                        customer_id="u_1",
                        currency="CNY",
                        balance=500,
                        updated_at=SystemClock().now(),
                    )
                )
        finally:
            await engine.dispose()

    asyncio.run(tamper())
    found = runner.invoke(app, ["ledger", "verify"])
    assert found.exit_code == 1
    assert "wallet_mismatch" in found.output


def test_top_ups_booked_as_sales_are_listed_then_corrected_from_the_command_line(
    paid_order: str,
) -> None:
    listed = runner.invoke(app, ["wallet", "correct-topups"])
    assert listed.exit_code == 0, listed.output
    assert "no top-up is booked as a sale" in listed.output
    applied = runner.invoke(app, ["wallet", "correct-topups", "--apply"])
    assert applied.exit_code == 0, applied.output
    assert "no top-up is booked as a sale" in applied.output
