"""The ``tuition`` command."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tuition import server
from tuition.clock import SystemClock
from tuition.config import ConfigError, Settings, get_settings
from tuition.domain.errors import TuitionError
from tuition.logs import configure_logging
from tuition.services import admin as admin_service
from tuition.services import api_keys
from tuition.services.demo import DemoInfo, seed_demo
from tuition.services.ledger import LedgerReport, seal_ledger, verify_ledger
from tuition.store import schema
from tuition.store.db import create_engine
from tuition.store.uow import UnitOfWork

app = typer.Typer(help="Tuition: payments, billing and revenue share.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke secret API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
admin_app = typer.Typer(help="Operators of the admin console (/admin).", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
ledger_app = typer.Typer(help="Check the double-entry ledger.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
console = Console()
err = Console(stderr=True)
T = TypeVar("T")


def _settings() -> Settings:
    try:
        return get_settings()
    except ConfigError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _check_channels(settings: Settings) -> None:
    """Refuse to start with a misconfigured channel (exit 2, naming the variable)."""
    from tuition.channels.setup import check_channels

    try:
        check_channels(settings)
    except ConfigError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from None


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except ConfigError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    except TuitionError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from None
    except schema.SchemaOutOfDate as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


async def _with_engine(settings: Settings, fn: Any) -> Any:
    engine = create_engine(settings.database_url)
    try:
        return await fn(engine)
    finally:
        await engine.dispose()


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (creates it on an empty database)."""
    settings = _settings()
    _run(_with_engine(settings, schema.upgrade))
    console.print(f"schema at revision [bold]{schema.head_revision()}[/bold]")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1, help="API worker processes (on Linux each on its own SO_REUSEPORT socket)"
        ),
    ] = 1,
) -> None:
    """Run the API server. Refuses to start against an out-of-date schema."""
    settings = _settings()
    _check_channels(settings)
    _run(_with_engine(settings, schema.ensure_current))
    configure_logging(settings.log_level, json=settings.log_json)
    try:
        server.serve(host or settings.host, port or settings.port, workers)
    except server.AddressInUse as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="What the key is for")] = "default",
    mode: Annotated[api_keys.Mode, typer.Option(help="test or live")] = "test",
) -> None:
    """Create a secret API key. It is shown once and stored only as a hash."""
    settings = _settings()

    async def go(engine: Any) -> api_keys.CreatedKey:
        await schema.ensure_current(engine)
        return await api_keys.create_key(
            UnitOfWork(engine),
            name=name,
            mode=mode,
            clock=SystemClock(),
        )

    created = _run(_with_engine(settings, go))
    console.print(f"created {created.record.id} ({created.record.mode}, {created.record.name!r})")
    console.print("secret (shown once, store it now):")
    typer.echo(created.secret)


@keys_app.command("list")
def keys_list() -> None:
    """List API keys (never their secrets)."""
    settings = _settings()

    async def go(engine: Any) -> list[Any]:
        await schema.ensure_current(engine)
        return await api_keys.list_keys(UnitOfWork(engine))

    rows = _run(_with_engine(settings, go))
    table = Table("name", "mode", "prefix", "created", "revoked")
    table.add_column("id", no_wrap=True)
    for r in rows:
        table.add_row(
            r.name,
            r.mode,
            r.prefix + "…",
            f"{r.created_at:%Y-%m-%d %H:%M}",
            f"{r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "",
            r.id,
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id, key_…")]) -> None:
    """Revoke an API key; requests with it get 401 from then on."""
    settings = _settings()

    async def go(engine: Any) -> None:
        await schema.ensure_current(engine)
        await api_keys.revoke_key(UnitOfWork(engine), key_id, clock=SystemClock())

    _run(_with_engine(settings, go))
    console.print(f"revoked {key_id}")


@app.command()
def worker() -> None:
    """Run background work: webhooks, recovery queries, expiry, refunds, ledger sealing.

    Any number may run against PostgreSQL; SIGTERM finishes the batch in hand and stops.
    """
    settings = _settings()
    _check_channels(settings)

    async def go() -> None:
        from tuition.app import build_runtime
        from tuition.worker.runner import Worker

        runtime = build_runtime(settings, host_simulator=False)
        try:
            await schema.ensure_current(runtime.container.engine)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            runner = Worker(runtime.container)
            try:
                await runner.run(stop)
            finally:
                await runner.close()
        finally:
            await runtime.aclose()

    configure_logging(settings.log_level, json=settings.log_json)
    _run(go())


@ledger_app.command("verify")
def ledger_verify(
    seal: Annotated[
        bool, typer.Option(help="Chain entries posted since the last seal before checking")
    ] = True,
) -> None:
    """Check every entry balances, the hash chain is intact and balances match postings.

    Exits 1 and lists each problem when anything is wrong.
    """
    settings = _settings()

    async def go(engine: Any) -> tuple[int, LedgerReport]:
        await schema.ensure_current(engine)
        sealed = await seal_ledger(UnitOfWork(engine)) if seal else 0
        return sealed, await verify_ledger(UnitOfWork(engine))

    sealed, report = _run(_with_engine(settings, go))
    console.print(
        f"{report.entries} entries ({report.sealed} chained, {sealed} just now), "
        f"{report.accounts} accounts"
    )
    if report.ok:
        console.print("[green]ledger OK[/green]: balanced, chain intact, balances match")
        return
    table = Table("problem", "entry / account", "detail")
    for problem in report.problems:
        table.add_row(problem.kind.value, problem.ref, problem.detail)
    console.print(table)
    err.print(f"[red]ledger verify found {len(report.problems)} problem(s)[/red]")
    raise typer.Exit(1)


@admin_app.command("create-user")
def admin_create_user(
    email: Annotated[str, typer.Option(help="The operator's email; they log in with it")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            help="At least 10 characters (asked for when not given)",
        ),
    ],
) -> None:
    """Create an operator who can log in to /admin; the password is stored as argon2id."""
    settings = _settings()

    async def go(engine: Any) -> None:
        await schema.ensure_current(engine)
        await admin_service.create_admin_user(UnitOfWork(engine), email, password, SystemClock())

    _run(_with_engine(settings, go))
    console.print(f"created operator {email}; log in at {settings.base_url}/admin")


@app.command()
def demo(
    port: Annotated[int | None, typer.Option(help="Port")] = None,
) -> None:
    """Migrate, create a demo API key and serve with the gateway simulator."""
    os.environ.setdefault("TUITION_SIMULATOR", "true")
    if port is not None:
        os.environ["TUITION_PORT"] = str(port)
    os.environ.setdefault("TUITION_LOG_JSON", "false")
    get_settings.cache_clear()
    settings = _settings()
    _check_channels(settings)

    async def go(engine: Any) -> tuple[api_keys.CreatedKey, DemoInfo]:
        await schema.upgrade(engine)
        created = await api_keys.create_key(
            UnitOfWork(engine), name="demo", mode="test", clock=SystemClock()
        )
        info = await seed_demo(lambda: UnitOfWork(engine), settings, SystemClock())
        return created, info

    created, info = _run(_with_engine(settings, go))
    base = settings.base_url
    console.rule("Tuition demo")
    console.print(f"database     {settings.database_url}")
    console.print(f"checkout     {info.checkout_url}", soft_wrap=True)
    console.print(f"             coupons: {', '.join(info.coupons)}")
    console.print(
        f"admin        {info.admin_url}  {info.admin_email} / {info.admin_password}",
        soft_wrap=True,
    )
    console.print(f"API docs     {base}/docs")
    console.print(f"API key      {created.secret}", soft_wrap=True)
    console.print("try:")
    typer.echo(
        f'  curl -s {base}/v1/orders/{info.order_id} -H "Authorization: Bearer {created.secret}"'
    )
    console.rule()
    serve(host=None, port=port, workers=1)


if __name__ == "__main__":
    app()
