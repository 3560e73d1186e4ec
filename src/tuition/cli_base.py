"""What every ``tuition`` command module starts from: the settings (or one line naming
the bad variable, and exit 2), with the coin unit registered, the mode whose store the
command works on (``tuition --mode test …``; live by default), and amounts as text."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.ext.asyncio import AsyncEngine

from tuition.config import ConfigError, Settings, get_settings
from tuition.domain.modes import Mode
from tuition.domain.money import format_amount, get_currency
from tuition.store.db import create_engine

err = Console(stderr=True)

_chosen: dict[str, Mode] = {"mode": "live"}


def choose_mode(mode: Mode) -> None:
    """The mode every command of this process works on (the ``--mode`` option)."""
    _chosen["mode"] = mode


def cli_mode() -> Mode:
    return _chosen["mode"]


def store_engine(settings: Settings, mode: Mode | None = None) -> AsyncEngine:
    """An engine on the store of ``mode`` (default: the command's mode)."""
    url, schema = settings.store_url(mode or cli_mode())
    return create_engine(url, schema=schema)


def load_settings() -> Settings:
    """The settings; a configuration error is printed as one line and exits 2."""
    try:
        settings = get_settings()
    except ConfigError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None
    from tuition.app import register_coins

    register_coins(settings)  # the coin code is a unit before anything is priced in it
    return settings


def money(amount: int, currency: str) -> str:
    """``1234, "CNY"`` as ``12.34 CNY``."""
    return f"{format_amount(amount, get_currency(currency))} {currency}"
