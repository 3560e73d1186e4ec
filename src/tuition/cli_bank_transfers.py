"""``tuition bank-transfers receive`` / ``import``: record bank transfers that arrived,
by hand or from a bank statement CSV (docs/channels.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tuition.cli_base import cli_mode, load_settings
from tuition.domain.errors import TuitionError
from tuition.domain.money import get_currency, parse_decimal_amount
from tuition.services import bank_transfers as service
from tuition.services.payments import PaymentDeps
from tuition.store import schema
from tuition.store.uow import UnitOfWork

bank_transfers_app = typer.Typer(
    help="Record bank transfers that arrived (by hand or from a statement).",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)
T = TypeVar("T")


def _run(fn: Callable[[UnitOfWork, PaymentDeps], Awaitable[T]]) -> T:
    settings = load_settings()

    async def go() -> T:
        from tuition.app import build_runtime

        runtime = build_runtime(settings, host_simulator=False)
        try:
            container = runtime.modes[cli_mode()]
            await schema.ensure_current(container.engine)
            return await fn(container.uow(), container.payment_deps())
        finally:
            await runtime.aclose()

    try:
        return asyncio.run(go())
    except TuitionError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)} [dim]({exc.code})[/dim]")
        raise typer.Exit(1) from None
    except schema.SchemaOutOfDate as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None


@bank_transfers_app.command("receive")
def receive(
    reference: Annotated[str, typer.Argument(help="The transfer reference, TU…")],
    amount: Annotated[str, typer.Argument(help="What arrived, e.g. 1234.50")],
    serial: Annotated[str, typer.Option(help="The bank's number for the transfer")],
    currency: Annotated[str, typer.Option(help="ISO 4217 code")] = "CNY",
    received_on: Annotated[str, typer.Option(help="YYYY-MM-DD; default today")] = "",
    payer: Annotated[str, typer.Option(help="Who sent it")] = "",
    by: Annotated[str, typer.Option(help="Who records it")] = "cli",
) -> None:
    """Record one transfer; an underpayment keeps the order waiting."""
    try:
        unit = get_currency(currency)
        minor = parse_decimal_amount(amount, unit)
        day = date.fromisoformat(received_on) if received_on else date.today()
    except (TuitionError, ValueError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None

    async def go(uow: UnitOfWork, deps: PaymentDeps) -> service.TransferOutcome:
        return await service.record_transfer(
            service.ReceivedTransfer(
                reference=reference,
                amount=minor,
                currency=unit.code,
                received_on=day,
                bank_serial=serial,
                payer=payer,
                recorded_by=f"cli:{by}",
            ),
            uow,
            deps=deps,
        )

    outcome = _run(go)
    console.print(
        f"{outcome.verdict}: payment {outcome.payment_id}, received {outcome.received} "
        f"of {outcome.expected}"
    )


@bank_transfers_app.command("import")
def import_statement(
    path: Annotated[Path, typer.Argument(help="CSV: date,amount,currency,reference,serial,payer")],
    by: Annotated[str, typer.Option(help="Who records it")] = "cli",
) -> None:
    """Record every line of a bank statement; importing it again records nothing new."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"[red]error:[/red] cannot read {escape(str(path))}: {escape(str(exc))}")
        raise typer.Exit(1) from None

    async def go(uow: UnitOfWork, deps: PaymentDeps) -> list[service.StatementLine]:
        return await service.import_statement(text, uow, recorded_by=f"cli:{by}", deps=deps)

    lines = _run(go)
    table = Table(title=f"{path.name}: {len(lines)} lines")
    for name in ("line", "serial", "outcome", "payment"):
        table.add_column(name)
    for line in lines:
        outcome = line.outcome
        table.add_row(
            str(line.line),
            escape(line.serial),
            outcome.verdict if outcome else f"[red]{escape(line.error or '')}[/red]",
            (outcome.payment_id or "") if outcome else "",
        )
    console.print(table)
