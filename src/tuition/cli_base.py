"""What every ``tuition`` command module starts from: the settings (or one line naming
the bad variable, and exit 2), with the coin unit registered, and amounts as text."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from tuition.config import ConfigError, Settings, get_settings
from tuition.domain.money import format_amount, get_currency

err = Console(stderr=True)


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
