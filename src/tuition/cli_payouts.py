"""``tuition payouts run``: pay every payee due on the schedule; ``tuition payouts
release``: make every ended hold's earnings available now (the worker also does both)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tuition.cli_base import load_settings, store_engine
from tuition.clock import SystemClock
from tuition.domain.money import format_amount, get_currency
from tuition.services import earnings as earnings_service
from tuition.services import payouts as payout_service
from tuition.store import schema
from tuition.store.uow import UnitOfWork

payouts_app = typer.Typer(help="Payees' payouts.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


@payouts_app.command("run")
def payouts_run(
    schedule: Annotated[
        str | None,
        typer.Option(help="weekly or monthly; default TUITION_PAYOUT_SCHEDULE"),
    ] = None,
) -> None:
    """Pay every payee with payout details all it has available, once per period."""
    settings = load_settings()
    chosen: Literal["weekly", "monthly"] | str = schedule or settings.payout_schedule
    if chosen not in ("weekly", "monthly"):
        err.print("[red]error:[/red] --schedule must be weekly or monthly")
        raise typer.Exit(2)
    deps = payout_service.PayoutDeps(clock=SystemClock(), minimum=settings.payout_minimum)

    async def go() -> payout_service.RunResult:
        engine = store_engine(settings)
        try:
            await schema.ensure_current(engine)
            await earnings_service.release_due(UnitOfWork(engine), clock=deps.clock)
            return await payout_service.run_payouts(UnitOfWork(engine), schedule=chosen, deps=deps)
        finally:
            await engine.dispose()

    try:
        result = asyncio.run(go())
    except schema.SchemaOutOfDate as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    table = Table("payout", "payee", "gross", "tax", "net", "method")
    for p in result.paid:
        unit = get_currency(p.currency)
        table.add_row(
            p.id,
            p.payee_id,
            f"{format_amount(p.amount, unit)} {p.currency}",
            format_amount(p.tax_withheld, unit),
            format_amount(p.net, unit),
            p.method,
        )
    console.print(f"payout run {result.period}: {len(result.paid)} payout(s)")
    if result.paid:
        console.print(table)
    for payee_id, why in result.skipped:
        console.print(f"skipped {escape(payee_id)}: {escape(why)}")
