"""``tuition wallet show CUSTOMER``: a customer's balances, open lots and last moves."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tuition.config import ConfigError, get_settings
from tuition.domain.money import format_amount, get_currency
from tuition.services import wallet as wallet_service
from tuition.store import schema
from tuition.store.db import create_engine
from tuition.store.uow import UnitOfWork
from tuition.store.wallet import WalletTransaction

wallet_app = typer.Typer(help="Customers' wallet balances.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _money(amount: int, currency: str) -> str:
    return f"{format_amount(amount, get_currency(currency))} {currency}"


@wallet_app.command("show")
def wallet_show(
    customer: Annotated[str, typer.Argument(help="The platform's customer id")],
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many moves to show")] = 10,
) -> None:
    """Balances per currency, the lots they are made of, and the latest moves."""
    try:
        settings = get_settings()
    except ConfigError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from None

    async def go() -> tuple[wallet_service.Wallet, list[WalletTransaction]]:
        engine = create_engine(settings.database_url)
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
        console.print(f"[bold]{_money(balance, currency)}[/bold]")
    lots = Table(title="open lots (spent oldest first)")
    lots.add_column("lot", no_wrap=True)
    for name in ("kind", "remaining", "of", "created"):
        lots.add_column(name)
    lots.add_column("source", no_wrap=True)
    for lot in wallet.lots:
        if lot.remaining:
            lots.add_row(
                lot.id,
                lot.kind,
                _money(lot.remaining, lot.currency),
                _money(lot.amount, lot.currency),
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
            _money(tx.amount, tx.currency),
            _money(tx.balance_after, tx.currency),
            tx.cause,
            escape(tx.cause_id),
            f"{tx.created_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)
