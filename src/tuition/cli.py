"""The ``tuition`` command."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Coroutine
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from tuition import server
from tuition.cli_bank_transfers import bank_transfers_app
from tuition.cli_base import choose_mode, load_settings, store_engine
from tuition.cli_fx import fx_app
from tuition.cli_operators import audit_app, operators_app
from tuition.cli_payouts import payouts_app
from tuition.cli_reconcile import reconcile
from tuition.cli_refunds import refunds_app
from tuition.cli_wallet import wallet_app
from tuition.clock import SystemClock
from tuition.config import ConfigError, Settings, get_settings
from tuition.domain.errors import NotFound, TuitionError
from tuition.domain.modes import MODES, Mode
from tuition.logs import configure_logging
from tuition.services import admin as admin_service
from tuition.services import anchors as ledger_anchors
from tuition.services import api_keys
from tuition.services.audit import Actor
from tuition.services.demo import DemoInfo, seed_demo
from tuition.services.earnings import payee_problems
from tuition.services.ledger import LedgerReport, seal_ledger, verify_ledger
from tuition.services.wallet import wallet_problems
from tuition.store import schema
from tuition.store.uow import UnitOfWork

# No local variables in a crash's traceback: they would print settings and secrets.
app = typer.Typer(
    help="Tuition: payments, billing and revenue share.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
keys_app = typer.Typer(help="Create, list and revoke secret API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
admin_app = typer.Typer(help="Operators of the admin console (/admin).", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
ledger_app = typer.Typer(help="Check and anchor the double-entry ledger.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
app.add_typer(refunds_app, name="refunds")
app.command("reconcile")(reconcile)
app.add_typer(wallet_app, name="wallet")
app.add_typer(bank_transfers_app, name="bank-transfers")
app.add_typer(payouts_app, name="payouts")
app.add_typer(fx_app, name="fx")
app.add_typer(operators_app, name="operators")
app.add_typer(audit_app, name="audit")
console = Console()
err = Console(stderr=True)
T = TypeVar("T")


def _version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"tuition {version('tuition')}")
        raise typer.Exit()


@app.callback()
def _main(
    _version_flag: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
    mode: Annotated[
        Mode,
        typer.Option(
            "--mode",
            help="Whose data the command works on: live (the default) or test mode's "
            "(docs/api.md, 'Test and live modes')",
        ),
    ] = "live",
) -> None:
    """Tuition: payments, billing and revenue share."""
    choose_mode(mode)


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
        err.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None
    except TuitionError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from None
    except schema.SchemaOutOfDate as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


async def _with_engine(settings: Settings, fn: Any, mode: Mode | None = None) -> Any:
    """``fn(engine)`` on the store of ``mode`` (default: the command's ``--mode``)."""
    engine = store_engine(settings, mode)
    try:
        await _reachable(engine)
        return await fn(engine)
    finally:
        await engine.dispose()


def _sqlite_directory_missing(engine: AsyncEngine) -> bool:
    path = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    return bool(path) and path != ":memory:" and not Path(str(path)).resolve().parent.is_dir()


async def _reachable(engine: AsyncEngine) -> None:
    """One line naming TUITION_DATABASE_URL, instead of the driver's traceback, when the
    database cannot be opened (server down, wrong name or password, no such directory)."""
    where = engine.url.render_as_string(hide_password=True)
    if _sqlite_directory_missing(engine):
        # Checked here: aiosqlite's failed open can race the event loop's closing.
        raise ConfigError(f"TUITION_DATABASE_URL: cannot open {where}: no such directory")
    try:
        async with engine.connect():
            pass
    except (OSError, DBAPIError, TimeoutError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise ConfigError(f"TUITION_DATABASE_URL: cannot open {where}: {reason}") from None


@app.command()
def migrate() -> None:
    """Bring the schema of both modes' stores up to date (creates it where empty)."""
    settings = load_settings()
    for mode in MODES:
        _run(_with_engine(settings, schema.upgrade, mode))
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
    settings = load_settings()
    _check_channels(settings)
    for mode in MODES:
        _run(_with_engine(settings, schema.ensure_current, mode))
    configure_logging(settings.log_level, json=settings.log_json)
    try:
        server.serve(host or settings.host, port or settings.port, workers)
    except server.AddressInUse as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="What the key is for")] = "default",
    mode: Annotated[Mode, typer.Option(help="test or live")] = "test",
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help="Restrict the key: read, orders_payments or refunds (repeat for more); "
            "without it the key can do everything"
        ),
    ] = None,
) -> None:
    """Create a secret API key. It is shown once and stored only as a hash."""
    settings = load_settings()

    async def go(engine: Any) -> api_keys.CreatedKey:
        await schema.ensure_current(engine)
        return await api_keys.create_key(
            UnitOfWork(engine),
            name=name,
            mode=mode,
            clock=SystemClock(),
            scopes=scope or (),
            actor=Actor.cli(),
        )

    created = _run(_with_engine(settings, go, mode))
    scopes = ", ".join(created.record.scopes) if created.record.scopes else "all"
    console.print(
        f"created {created.record.id} ({created.record.mode}, {created.record.name!r}, "
        f"scopes: {scopes})"
    )
    console.print("secret (shown once, store it now):")
    typer.echo(created.secret)


@keys_app.command("list")
def keys_list() -> None:
    """List API keys (never their secrets)."""
    settings = load_settings()

    async def go(engine: Any) -> list[Any]:
        await schema.ensure_current(engine)
        return await api_keys.list_keys(UnitOfWork(engine))

    rows = [row for mode in MODES for row in _run(_with_engine(settings, go, mode))]
    table = Table("name", "mode", "scopes", "prefix", "created", "revoked")
    table.add_column("id", no_wrap=True)
    for r in rows:
        table.add_row(
            r.name,
            r.mode,
            ", ".join(r.scopes) if r.scopes else "all",
            r.prefix + "…",
            f"{r.created_at:%Y-%m-%d %H:%M}",
            f"{r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "",
            r.id,
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id, key_…")]) -> None:
    """Revoke an API key; requests with it get 401 from then on."""
    settings = load_settings()

    async def go(engine: Any) -> bool:
        await schema.ensure_current(engine)
        try:
            await api_keys.revoke_key(
                UnitOfWork(engine), key_id, clock=SystemClock(), actor=Actor.cli()
            )
        except NotFound:
            return False
        return True

    if not any(_run(_with_engine(settings, go, mode)) for mode in MODES):
        err.print(f"[red]error:[/red] no active API key {key_id!r}")
        raise typer.Exit(1)
    console.print(f"revoked {key_id}")


@app.command()
def worker() -> None:
    """Run background work: webhooks, recovery queries, expiry, refunds, ledger sealing.

    Any number may run against PostgreSQL; SIGTERM finishes the batch in hand and stops.
    """
    settings = load_settings()
    _check_channels(settings)

    async def go() -> None:
        from tuition.app import build_runtime
        from tuition.worker.runner import Worker

        runtime = build_runtime(settings, host_simulator=False)
        try:
            containers = runtime.modes.distinct()
            for container in containers:
                await _reachable(container.engine)
                await schema.ensure_current(container.engine)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            runners = [Worker(container) for container in containers]
            try:
                await asyncio.gather(*(runner.run(stop) for runner in runners))
            finally:
                for runner in runners:
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
    anchors: Annotated[
        Path | None,
        typer.Option(help="Also prove the chain holds every signed head in this directory"),
    ] = None,
) -> None:
    """Check every entry balances, the hash chain is intact and balances match postings.

    Exits 1 and lists each problem when anything is wrong.
    """
    settings = load_settings()

    async def go(engine: Any) -> tuple[int, LedgerReport, list[str]]:
        await schema.ensure_current(engine)
        sealed = await seal_ledger(UnitOfWork(engine)) if seal else 0
        report = await verify_ledger(UnitOfWork(engine), anchors=found)
        return (
            sealed,
            report,
            [
                *await wallet_problems(UnitOfWork(engine)),
                *await payee_problems(UnitOfWork(engine)),  # held earnings vs creator_pending
            ],
        )

    found: list[ledger_anchors.Anchor] = []
    unreadable: list[ledger_anchors.AnchorProblem] = []
    if anchors is not None:
        if not anchors.is_dir():
            err.print(f"[red]error:[/red] --anchors {escape(str(anchors))}: no such directory")
            raise typer.Exit(2)
        key = _anchor_key(settings)
        found, unreadable = ledger_anchors.read_anchors(anchors, key)
    sealed, report, wallets = _run(_with_engine(settings, go))
    console.print(
        f"{report.entries} entries ({report.sealed} chained, {sealed} just now), "
        f"{report.accounts} accounts"
        + (f", {report.anchors} anchors" if anchors is not None else "")
    )
    problems = [*report.problems, *unreadable, *report.anchor_problems]
    if not problems and not wallets:
        console.print(
            "[green]ledger OK[/green]: balanced, chain intact, balances match, "
            "wallets match their liability, held earnings match pending"
        )
        return
    table = Table("problem", "entry / account / anchor", "detail")
    for problem in problems:
        table.add_row(problem.kind.value, problem.ref, problem.detail)
    for wallet in wallets:  # a customer's balance differs from customer_wallet
        kind = "payee_mismatch" if wallet.startswith("payee ") else "wallet_mismatch"
        table.add_row(kind, "", escape(wallet))
    console.print(table)
    err.print(f"[red]ledger verify found {len(problems) + len(wallets)} problem(s)[/red]")
    raise typer.Exit(1)


def _anchor_key(settings: Settings) -> ledger_anchors.AnchorKey:
    try:
        return ledger_anchors.anchor_key(settings)
    except ConfigError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None


@ledger_app.command("anchor")
def ledger_anchor(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Where to write (TUITION_LEDGER_ANCHOR_DIR)")
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="Also POST the anchor here (TUITION_LEDGER_ANCHOR_URL)")
    ] = None,
) -> None:
    """Seal the chain, then sign its head and write it to a file outside the database."""
    settings = load_settings()
    target = directory or (Path(settings.ledger_anchor_dir) if settings.ledger_anchor_dir else None)
    if target is None:
        err.print("[red]error:[/red] give --dir or set TUITION_LEDGER_ANCHOR_DIR")
        raise typer.Exit(2)
    key = _anchor_key(settings)
    if not key.can_sign:
        err.print("[red]error:[/red] the anchor key is a public key; signing needs the private")
        raise typer.Exit(2)

    async def go(engine: Any) -> tuple[ledger_anchors.Anchor, Path]:
        await schema.ensure_current(engine)
        await seal_ledger(UnitOfWork(engine))
        return await ledger_anchors.anchor_ledger(
            UnitOfWork(engine),
            key,
            target,
            now=SystemClock().now(),
            url=settings.ledger_anchor_url if url is None else url,
        )

    try:
        anchor, path = _run(_with_engine(settings, go))
    except (OSError, httpx.HTTPError) as exc:
        err.print(f"[red]error:[/red] {escape(type(exc).__name__ + ': ' + str(exc))}")
        raise typer.Exit(1) from None
    console.print(f"anchored chain index {anchor.chain_index} ({anchor.hash}) in {path}")


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
    settings = load_settings()

    async def go(engine: Any) -> None:
        await schema.ensure_current(engine)
        await admin_service.create_admin_user(
            UnitOfWork(engine), email, password, SystemClock(), actor=Actor.cli()
        )

    _run(_with_engine(settings, go, "live"))  # operators are not per mode
    console.print(f"created operator {email}; log in at {settings.base_url}/admin")


# What `tuition demo` sets unless the environment says otherwise: the simulator, readable
# logs, a webhook receiver on this machine, and a shop in test mode with every channel
# the simulator plays, a bank account for transfers, and the console showing test data.
DEMO_ENVIRONMENT = {
    "TUITION_SIMULATOR": "true",
    "TUITION_LOG_JSON": "false",
    "TUITION_WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1", "localhost", "::1"]',
    "TUITION_CONSOLE_MODE": "test",
    "TUITION_TEST_CHANNELS": '["sandbox", "alipay", "wechatpay", "unionpay", "bank_transfer"]',
    "TUITION_BANK_TRANSFER_ACCOUNT_NAME": "演示知识科技有限公司 Demo Co.",
    "TUITION_BANK_TRANSFER_BANK_NAME": "招商银行 (demo)",
    "TUITION_BANK_TRANSFER_ACCOUNT_NUMBER": "6214 8300 0000 0000",
}


@app.command()
def demo(
    port: Annotated[int | None, typer.Option(help="Port")] = None,
) -> None:
    """Migrate, create a demo API key and serve with the gateway simulator."""
    for name, value in DEMO_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if port is not None:
        os.environ["TUITION_PORT"] = str(port)
    get_settings.cache_clear()
    settings = load_settings()
    _check_channels(settings)
    try:  # before credentials are printed that would not work
        server.check_address_free(settings.host, settings.port)
    except server.AddressInUse as exc:
        err.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(1) from None

    async def go(live: Any) -> tuple[api_keys.CreatedKey, DemoInfo]:
        await schema.upgrade(live)  # operators live here; the demo's shop is test data

        async def in_test_mode(engine: Any) -> tuple[api_keys.CreatedKey, DemoInfo]:
            await schema.upgrade(engine)
            created = await api_keys.create_key(
                UnitOfWork(engine), name="demo", mode="test", clock=SystemClock()
            )
            info = await seed_demo(
                lambda: UnitOfWork(engine),
                settings,
                SystemClock(),
                operators=lambda: UnitOfWork(live),
            )
            return created, info

        result: tuple[api_keys.CreatedKey, DemoInfo] = await _with_engine(
            settings, in_test_mode, "test"
        )
        return result

    created, info = _run(_with_engine(settings, go, "live"))
    base = settings.base_url
    console.rule("Tuition demo")
    console.print(f"database     {settings.database_url} (the demo shop is test mode's)")
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
    console.print("after paying on the checkout page, refund a line (or see it in the admin):")
    typer.echo(
        f'  curl -s {base}/v1/refunds -H "Authorization: Bearer {created.secret}" '
        f"-H 'Content-Type: application/json' "
        f'-d \'{{"order_id": "{info.order_id}", "lines": [{{"line_id": 1}}]}}\''
    )
    typer.echo(f"  .venv/bin/tuition --mode test refunds list --order {info.order_id}")
    console.print(
        f"wallet: buy the top-up product {info.products['topup']} (¥100), then pay an order "
        'with {"channel": "wallet"}, or part of one with {"channel": "sandbox", "method": '
        '"page", "wallet_amount": 500}; .venv/bin/tuition --mode test wallet show <customer>'
    )
    if "coin_pack" in info.products:
        console.print(
            f"coins: the pack {info.products['coin_pack']} gives 100 + 20 bonus coins for ¥10 "
            '(¥12 with "surface": "ios"); the question '
            f"{info.products['question']} costs 50 coins: an order in XCN paid with "
            '{"channel": "wallet"}'
        )
    console.print(
        "subscriptions: POST /v1/subscriptions with "
        f'{{"customer_id": "demo-reader", "product_id": "{info.products["membership"]}", '
        '"channel": "alipay", "method": "page", "auto_renew": true}: its '
        "agreement_sign_url signs Alipay's periodic deduction on the simulator, and renewals "
        "are then charged by the agreement"
    )
    console.print(
        'bank transfer: pay an order with {"channel": "bank_transfer", "method": "transfer"}, '
        "then record the money on the order's admin page or with "
        ".venv/bin/tuition --mode test bank-transfers receive; UnionPay: "
        '{"channel": "unionpay", "method": "page"}; payouts: the console\'s Payout runs page'
    )
    console.print(
        "revenue share: the demo order is referred by promoter ZHANGWEI (20 % to 张伟, 5 % to "
        "王芳, who recruited 张伟; the console's Promoters page); the partner platform of "
        'GET /v1/partners takes 10 % of an order placed with {"partner_id": …}, settled in USD'
    )
    console.rule()
    serve(host=None, port=port, workers=1)


if __name__ == "__main__":
    app()
