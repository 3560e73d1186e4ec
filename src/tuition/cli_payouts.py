"""``tuition payouts run``: release every ended hold, propose the period's payout run and
pay it only once it is approved, through the same approval as the console and the worker
(services/payout_runs.py)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tuition.cli_base import cli_mode, load_settings, money
from tuition.domain.errors import Conflict, TuitionError
from tuition.domain.money import format_amount, get_currency
from tuition.services import earnings as earnings_service
from tuition.services import payout_runs
from tuition.services import payouts as payout_service
from tuition.store import schema

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
    """Propose this period's payout run, as the worker does; pay it only once it is
    approved (on the console's payout run page, finance role) or when the mode's
    TUITION_PAYOUT_AUTO_APPROVE / TUITION_TEST_PAYOUT_AUTO_APPROVE is set."""
    settings = load_settings()
    chosen: Literal["weekly", "monthly"] | str = schedule or settings.payout_schedule
    if chosen not in ("weekly", "monthly"):
        err.print("[red]error:[/red] --schedule must be weekly or monthly")
        raise typer.Exit(2)
    mode = cli_mode()

    async def go() -> tuple[str, payout_runs.RunView | None, bool]:
        from tuition.app import build_runtime

        runtime = build_runtime(settings, host_simulator=False)
        try:
            container = runtime.modes[mode]
            await schema.ensure_current(container.engine)
            deps = container.payout_deps()
            await earnings_service.release_due(
                container.uow(), clock=deps.clock, rates=container.rate_source()
            )
            period = payout_service.run_period(deps.clock.now(), chosen)
            run, _new = await payout_runs.propose_due_run(
                container.uow(), schedule=chosen, proposed_by="cli", deps=deps
            )
            if run is None:
                return period, None, False
            if run.status == payout_runs.PROPOSED and settings.auto_approves_payouts(mode):
                with contextlib.suppress(Conflict):  # approved meanwhile: it pays once
                    await payout_runs.approve_run(
                        container.uow(), run.id, operator=payout_runs.AUTO_APPROVER, deps=deps
                    )
            elif run.status == payout_runs.APPROVED:
                await payout_runs.execute_run(container.uow(), run.id, deps=deps)
            view = await payout_runs.view_run(container.uow(), run.id)
            return period, view, view.run.status == payout_runs.APPROVED
        finally:
            await runtime.aclose()

    try:
        period, view, approved = asyncio.run(go())
    except TuitionError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)} [dim]({exc.code})[/dim]")
        raise typer.Exit(1) from None
    except schema.SchemaOutOfDate as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    if view is None:
        console.print(f"payout run {period}: nobody is due a payout; 0 payout(s)")
        return
    run = view.run
    if not approved:
        setting = "TUITION_PAYOUT_AUTO_APPROVE"
        if mode == "test":
            setting = "TUITION_TEST_PAYOUT_AUTO_APPROVE"
        console.print(
            f"payout run {run.id} ({run.period}) is proposed and awaits approval: "
            f"{len(view.items)} payee(s), nothing paid, 0 payout(s). An operator with the "
            f"finance role approves it at /admin/payout_runs/{run.id}, or set {setting}=true "
            "to approve runs without one.",
            soft_wrap=True,
        )
        table = Table("payee", "gross", "tax (estimate)")
        for item in view.items:
            table.add_row(
                escape(view.names.get(item.payee_id, item.payee_id)),
                money(item.amount, item.currency),
                money(item.tax_estimate, item.currency),
            )
        if view.items:
            console.print(table)
        return
    paid = [view.payouts[i.payout_id] for i in view.items if i.payout_id in view.payouts]
    console.print(
        f"payout run {run.id} ({run.period}) approved by {escape(run.approved_by or '')}: "
        f"{len(paid)} payout(s)",
        soft_wrap=True,
    )
    table = Table("payout", "payee", "gross", "tax", "net", "method", "status")
    for p in paid:
        unit = get_currency(p.currency)
        table.add_row(
            p.id,
            escape(view.names.get(p.payee_id, p.payee_id)),
            f"{format_amount(p.amount, unit)} {p.currency}",
            format_amount(p.tax_withheld, unit),
            format_amount(p.net, unit),
            p.method,
            p.status,
        )
    if paid:
        console.print(table)
    for item in view.items:
        if item.status == "skipped":
            console.print(f"skipped {escape(item.payee_id)}: {escape(item.reason or '')}")
