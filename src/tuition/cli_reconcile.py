"""``tuition reconcile``: reconcile a channel's business day against its bill."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import date, timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from tuition.cli_base import cli_mode, load_settings
from tuition.domain.errors import TuitionError
from tuition.services import reconciliation as service
from tuition.store import schema
from tuition.store.reconciliation import RunRecord

console = Console()
err = Console(stderr=True)


def reconcile(
    channel: Annotated[str | None, typer.Option(help="The channel: alipay or wechatpay")] = None,
    day: Annotated[str | None, typer.Option("--date", help="The business day, YYYY-MM-DD")] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every channel with bills, for yesterday")
    ] = False,
    output: Annotated[str, typer.Option("--format", help="text, json or csv")] = "text",
) -> None:
    """Reconcile a business day (platform time zone) against the gateway's bill."""
    if every == (channel is not None):
        err.print("[red]give --channel (with --date) or --all[/red]")
        raise typer.Exit(2)
    if output not in ("text", "json", "csv"):
        err.print("[red]--format is text, json or csv[/red]")
        raise typer.Exit(2)
    settings = load_settings()
    try:
        wanted = date.fromisoformat(day) if day else None
    except ValueError:
        err.print("[red]--date must be YYYY-MM-DD[/red]")
        raise typer.Exit(2) from None

    async def go() -> list[RunRecord]:
        from tuition.app import build_runtime

        runtime = build_runtime(settings, host_simulator=False)
        try:
            container = runtime.modes[cli_mode()]
            await schema.ensure_current(container.engine)
            deps = service.ReconcileDeps(
                container.registry, container.clock, settings.zone, container.payment_deps().hold
            )
            target = wanted or container.clock.now().astimezone(settings.zone).date() - timedelta(
                days=1
            )
            slugs = service.bill_channels(container.registry) if every else [str(channel)]
            return [
                await service.reconcile_day(
                    service.ReconcileDay(slug, target), container.uow(), deps=deps
                )
                for slug in slugs
            ]
        finally:
            await runtime.aclose()

    try:
        runs = asyncio.run(go())
    except TuitionError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)} [dim]({exc.code})[/dim]")
        raise typer.Exit(1) from None
    except schema.SchemaOutOfDate as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    if output == "json":
        typer.echo(json.dumps([run_json(run) for run in runs], ensure_ascii=False, indent=2))
    elif output == "csv":
        typer.echo(close_report_csv(runs), nl=False)
    else:
        for run in runs:
            _print(run)
    if any(run.status != "clean" for run in runs):
        raise typer.Exit(3)


def run_json(run: RunRecord) -> dict[str, Any]:
    return {
        "id": run.id,
        "channel": run.channel,
        "account": run.account,
        "business_day": run.business_day,
        "attempt": run.attempt,
        "status": run.status,
        "report": run.report,
    }


CSV_COLUMNS = (
    "business_day",
    "channel",
    "account",
    "attempt",
    "status",
    "payments",
    "payment_amount",
    "refunds",
    "refund_amount",
    "fees",
    "settled",
    "matched",
    "differences",
    "open_cases",
    "clearing_residual",
)


def close_report_csv(runs: list[RunRecord]) -> str:
    """The daily close report, one line per run (amounts in minor units)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for run in runs:
        report, bill = run.report, run.report.get("bill", {})
        writer.writerow(
            [
                run.business_day,
                run.channel,
                run.account,
                run.attempt,
                run.status,
                bill.get("payments"),
                bill.get("payment_amount"),
                bill.get("refunds"),
                bill.get("refund_amount"),
                bill.get("fees"),
                bill.get("settled"),
                report.get("matched"),
                report.get("differences"),
                report.get("open_cases"),
                report.get("clearing", {}).get("residual"),
            ]
        )
    return out.getvalue()


def _print(run: RunRecord) -> None:
    report = run.report
    colour = "green" if run.status == "clean" else "yellow"
    console.print(
        f"[bold]{run.channel}[/bold] {run.business_day} attempt {run.attempt}: "
        f"[{colour}]{run.status}[/{colour}] ({run.id})"
    )
    bill = report.get("bill", {})
    console.print(
        f"  bill: {bill.get('payments')} payments {bill.get('payment_amount')}, "
        f"{bill.get('refunds')} refunds {bill.get('refund_amount')}, fees {bill.get('fees')}, "
        f"settled {bill.get('settled')}"
    )
    console.print(
        f"  matched {report.get('matched')}, findings {report.get('findings')}, "
        f"open cases {report.get('open_cases')}, clearing residual "
        f"{report.get('clearing', {}).get('residual')}"
    )
    if report.get("previous"):
        changed = report["previous"]["bill_changed"]
        console.print(
            f"  rerun of attempt {report['previous']['attempt']}; bill changed: {changed}"
        )
