"""``tuition wallet show CUSTOMER``: a customer's balances, open lots and last moves;
``tuition wallet correct-topups``: fix top-ups booked as sales by older versions."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tuition.cli_base import load_settings, money, store_engine
from tuition.clock import SystemClock
from tuition.services import topup_corrections
from tuition.services import wallet as wallet_service
from tuition.store import schema
from tuition.store.uow import UnitOfWork
from tuition.store.wallet import WalletTransaction

wallet_app = typer.Typer(help="Customers' wallet balances.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


@wallet_app.command("show")
def wallet_show(
    customer: Annotated[str, typer.Argument(help="The platform's customer id")],
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many moves to show")] = 10,
) -> None:
    """Balances per currency, the lots they are made of, and the latest moves."""
    settings = load_settings()

    async def go() -> tuple[wallet_service.Wallet, list[WalletTransaction]]:
        engine = store_engine(settings)
        try:
            await schema.ensure_current(engine)
            wallet = await wallet_service.wallet_of(UnitOfWork(engine), customer)
            moves, _ = await wallet_service.transactions_of(
                UnitOfWork(engine), customer, limit=limit, starting_after=None
            )
            return wallet, moves
        finally:
            await engine.dispose()

    try:
        wallet, moves = asyncio.run(go())
    except schema.SchemaOutOfDate as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    if not wallet.balances:
        console.print(f"{escape(customer)} has no wallet balance")
        return
    for currency, balance in wallet.balances.items():
        console.print(f"[bold]{money(balance, currency)}[/bold]")
    lots = Table(title="open lots (spent oldest first)")
    lots.add_column("lot", no_wrap=True)
    for name in ("kind", "remaining", "of", "created"):
        lots.add_column(name)
    lots.add_column("source", no_wrap=True)
    for lot in wallet.lots:
        if lot.remaining:
            worth = ""
            if lot.value_currency is not None:
                worth = f" (worth {money(lot.value_remaining or 0, lot.value_currency)})"
            lots.add_row(
                lot.id,
                lot.kind,
                money(lot.remaining, lot.currency) + worth,
                money(lot.amount, lot.currency),
                f"{lot.created_at:%Y-%m-%d %H:%M}",
                escape(lot.source),
            )
    console.print(lots)
    table = Table(title="latest moves")
    table.add_column("id", no_wrap=True)
    for name in ("amount", "balance after", "cause"):
        table.add_column(name)
    table.add_column("of", no_wrap=True)
    table.add_column("when")
    for tx in moves:
        table.add_row(
            tx.id,
            money(tx.amount, tx.currency),
            money(tx.balance_after, tx.currency),
            tx.cause,
            escape(tx.cause_id),
            f"{tx.created_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)


@wallet_app.command("correct-topups")
def wallet_correct_topups(
    apply: Annotated[
        bool, typer.Option("--apply", help="Post the correcting entries (default: only list)")
    ] = False,
) -> None:
    """Top-ups that versions before the wallet booked as sales: list them, or with
    ``--apply`` post a correcting entry and credit the buyer's lot for each (once)."""
    settings = load_settings()

    async def go() -> list[topup_corrections.Correction]:
        engine = store_engine(settings)
        try:
            await schema.ensure_current(engine)
            if apply:
                return await topup_corrections.correct_topups(
                    UnitOfWork(engine), clock=SystemClock()
                )
            return await topup_corrections.wrong_topups(UnitOfWork(engine))
        finally:
            await engine.dispose()

    try:
        fixes = asyncio.run(go())
    except schema.SchemaOutOfDate as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    if not fixes:
        console.print("no top-up is booked as a sale")
        return
    table = Table(title="corrected" if apply else "booked as sales (run with --apply)")
    for name in ("order", "line", "customer", "credit", "creator share back"):
        table.add_column(name, no_wrap=True)
    for fix in fixes:
        table.add_row(
            fix.order_id,
            str(fix.line_index),
            escape(fix.customer_id),
            money(fix.credit, fix.currency),
            money(fix.creator_share, fix.currency),
        )
    console.print(table)
