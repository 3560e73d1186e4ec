"""``tuition refunds``: refund an order or a payment, show one refund, list refunds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tuition.cli_base import cli_mode, load_settings, money
from tuition.domain.errors import TuitionError
from tuition.domain.payments import RefundStatus
from tuition.domain.refunds import LineRequest, RefundReason
from tuition.services import refunds as refund_service
from tuition.store import schema
from tuition.store.refunds import RefundFilter, RefundRecord
from tuition.store.uow import UnitOfWork

refunds_app = typer.Typer(help="Refund orders and payments; read refunds.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
T = TypeVar("T")


def _with_deps(fn: Callable[[UnitOfWork, refund_service.RefundDeps], Awaitable[T]]) -> T:
    """Run ``fn`` against the configured database and channels; errors exit non-zero."""
    settings = load_settings()

    async def go() -> T:
        from tuition.app import build_runtime

        runtime = build_runtime(settings, host_simulator=False)
        try:
            container = runtime.modes[cli_mode()]
            await schema.ensure_current(container.engine)
            deps = container.refund_deps()
            return await fn(container.uow(), deps)
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


def _show(refund: RefundRecord) -> None:
    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", no_wrap=True)
    for name, value in (
        ("id", refund.id),
        ("status", refund.status.value),
        ("amount", money(refund.amount, refund.currency)),
        ("order", refund.order_id),
        ("payment", refund.payment_id),
        ("customer", refund.customer_id),
        ("reason", refund.reason),
        ("requested by", refund.requested_by),
        ("override by", refund.override_by or ""),
        ("retry of", refund.retry_of or ""),
        ("fee returned", "" if refund.fee_returned is None else str(refund.fee_returned)),
        ("failure", " ".join(filter(None, (refund.failure_code, refund.failure_message)))),
        ("created", f"{refund.created_at:%Y-%m-%d %H:%M:%S}"),
    ):
        table.add_row(name, escape(value))
    for line in refund.lines:
        table.add_row(
            f"line {line.line_index}",
            f"{money(line.amount, refund.currency)} (creator {line.creator_amount}, tax "
            f"{line.tax_amount}, platform {line.platform_amount})"
            + (", ends access" if line.revokes_access else ""),
        )
    console.print(table)


@refunds_app.command("create")
def refunds_create(
    order: Annotated[str | None, typer.Option(help="The order to refund, ord_…")] = None,
    payment: Annotated[str | None, typer.Option(help="Or the payment to refund, pay_…")] = None,
    amount: Annotated[
        int | None, typer.Option(help="Minor units; default: everything still refundable")
    ] = None,
    line: Annotated[
        list[int] | None, typer.Option(help="Refund this line (its index) in full; repeatable")
    ] = None,
    reason: Annotated[RefundReason, typer.Option(help="Why")] = RefundReason.OTHER,
    override: Annotated[
        bool, typer.Option(help="Lift the refund window and consumption rules (recorded)")
    ] = False,
    operator: Annotated[
        str, typer.Option(help="Who asks, recorded on the refund as cli:<operator>")
    ] = "operator",
) -> None:
    """Refund an order or a payment through its channel, under the refund rules."""
    cmd = refund_service.CreateRefund(
        order_id=order,
        payment_id=payment,
        amount=amount,
        lines=tuple(LineRequest(index) for index in line) if line else None,
        reason=reason,
        override=override,
        requested_by=f"cli:{operator}",
    )

    async def go(uow: UnitOfWork, deps: refund_service.RefundDeps) -> RefundRecord:
        return await refund_service.create_refund(cmd, uow, deps=deps)

    refund = _with_deps(go)
    _show(refund)
    if refund.status is RefundStatus.FAILED:
        raise typer.Exit(1)


@refunds_app.command("show")
def refunds_show(refund_id: Annotated[str, typer.Argument(help="The refund's id, re_…")]) -> None:
    """Show one refund with its lines."""

    async def go(uow: UnitOfWork, _deps: refund_service.RefundDeps) -> RefundRecord:
        return await refund_service.get_refund(uow, refund_id)

    _show(_with_deps(go))


@refunds_app.command("list")
def refunds_list(
    order: Annotated[str | None, typer.Option(help="Only this order's refunds")] = None,
    customer: Annotated[str | None, typer.Option(help="Only this customer's refunds")] = None,
    status: Annotated[
        RefundStatus | None, typer.Option(help="pending, succeeded or failed")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many, newest first")] = 20,
) -> None:
    """List refunds, newest first."""

    async def go(uow: UnitOfWork, _deps: refund_service.RefundDeps) -> list[RefundRecord]:
        found, _ = await refund_service.list_refunds(
            uow,
            RefundFilter(order_id=order, customer_id=customer, status=status),
            limit=limit,
            starting_after=None,
        )
        return found

    table = Table()
    table.add_column("id", no_wrap=True)
    for name in ("status", "amount"):
        table.add_column(name)
    table.add_column("order", no_wrap=True)
    for name in ("customer", "reason", "created"):
        table.add_column(name)
    for r in _with_deps(go):
        table.add_row(
            r.id,
            r.status.value,
            money(r.amount, r.currency),
            r.order_id,
            escape(r.customer_id),
            r.reason,
            f"{r.created_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)
