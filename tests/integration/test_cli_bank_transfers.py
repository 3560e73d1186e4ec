"""`tuition bank-transfers` on a real SQLite file: a statement imported twice pays once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tuition.cli import app
from tuition.config import get_settings
from tuition.domain.catalog import ProductKind
from tuition.services import catalog
from tuition.services.orders import CreateOrder, ItemRequest, OrderPolicy, create_order
from tuition.services.payments import CreatePayment, create_payment

runner = CliRunner()


@pytest.fixture
def reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("TUITION_DATABASE_URL", url)
    monkeypatch.setenv("TUITION_CHANNELS", '["bank_transfer"]')
    monkeypatch.setenv("TUITION_BANK_TRANSFER_ACCOUNT_NAME", "某某教育科技有限公司")
    monkeypatch.setenv("TUITION_BANK_TRANSFER_BANK_NAME", "招商银行北京分行")
    monkeypatch.setenv("TUITION_BANK_TRANSFER_ACCOUNT_NUMBER", "110912345610001")
    get_settings.cache_clear()
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    yield asyncio.run(_attempt())
    get_settings.cache_clear()


async def _attempt() -> tuple[str, str]:
    from datetime import timedelta

    from tuition.app import build_runtime

    runtime = build_runtime(get_settings(), host_simulator=False)
    container = runtime.container
    try:
        creator = await catalog.create_creator(
            catalog.NewCreator(name="Ada", default_revenue_share=Decimal("0.7")),
            container.uow(),
            clock=container.clock,
        )
        product = await catalog.create_product(
            catalog.NewProduct(
                creator_id=creator.creator.id,
                kind=ProductKind.COURSE,
                title="Course",
                prices={"CNY": 9900},
            ),
            container.uow(),
            clock=container.clock,
        )
        order = await create_order(
            CreateOrder(
                customer_id="u_1", currency="CNY", items=(ItemRequest(product.product.id),)
            ),
            container.uow(),
            clock=container.clock,
            policy=OrderPolicy(order_ttl=timedelta(minutes=15), channel_fee_rates={}),
        )
        payment = await create_payment(
            CreatePayment(order_id=order.id, channel="bank_transfer", method="transfer"),
            container.uow(),
            deps=container.payment_deps(),
        )
        assert payment.channel_trade_no is not None
        return payment.channel_trade_no, order.id
    finally:
        await runtime.aclose()


def test_a_statement_imported_twice_pays_once(reference: tuple[str, str], tmp_path: Path) -> None:
    ref, _order = reference
    statement = tmp_path / "statement.csv"
    statement.write_text(
        "date,amount,currency,reference,serial,payer\n"
        f"2026-11-02,99.00,CNY,货款 {ref},B1,某某公司\n",
        encoding="utf-8",
    )
    first = runner.invoke(app, ["bank-transfers", "import", str(statement)])
    assert first.exit_code == 0, first.output
    assert "paid" in first.output
    second = runner.invoke(app, ["bank-transfers", "import", str(statement)])
    assert second.exit_code == 0, second.output
    assert "duplicate" in second.output
    extra = runner.invoke(app, ["bank-transfers", "receive", ref, "1.00", "--serial", "B2"])
    assert extra.exit_code == 0, extra.output
    assert "overpaid" in extra.output
