"""``tuition fx import FILE``: record exchange rates from a CSV file;
``tuition fx list``: the newest rate of every pair."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tuition.cli_base import load_settings
from tuition.clock import SystemClock
from tuition.domain.errors import TuitionError
from tuition.domain.fx import FxRate
from tuition.services import fx as fx_service
from tuition.services.audit import Actor
from tuition.store import schema
from tuition.store.db import create_engine
from tuition.store.uow import UnitOfWork

fx_app = typer.Typer(help="Exchange rates for selling in other currencies.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
T = TypeVar("T")


def _run(fn: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    settings = load_settings()

    async def go() -> T:
        engine = create_engine(settings.database_url)
        try:
            await schema.ensure_current(engine)
            return await fn(UnitOfWork(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(go())
    except TuitionError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)} [dim]({exc.code})[/dim]")
        raise typer.Exit(1) from None
    except schema.SchemaOutOfDate as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None


def _table(rates: list[FxRate], title: str) -> Table:
    table = Table(title=title)
    for name in ("pair", "rate", "source", "as of", "id"):
        table.add_column(name, no_wrap=True)
    for r in rates:
        table.add_row(
            f"{r.base}/{r.quote}",
            str(r.rate),
            escape(r.source),
            f"{r.as_of:%Y-%m-%d %H:%M:%S%z}",
            r.id,
        )
    return table


@fx_app.command("import")
def fx_import(
    path: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            help="A CSV file with the header base,quote,rate,source,as_of",
        ),
    ],
) -> None:
    """Record every rate of the file, all or nothing (a bad line keeps none)."""
    text = path.read_text(encoding="utf-8-sig")
    rates = _run(
        lambda uow: fx_service.import_rates_csv(text, uow, clock=SystemClock(), actor=Actor.cli())
    )
    console.print(_table(rates, f"{len(rates)} rates recorded"))


@fx_app.command("list")
def fx_list() -> None:
    """The newest rate of every pair."""
    rates = _run(fx_service.latest_rates)
    console.print(_table(rates, "latest rates"))
