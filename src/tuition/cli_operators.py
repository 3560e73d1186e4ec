"""``tuition operators``: the console's operators and their roles (docs/admin.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from tuition.cli_base import load_settings
from tuition.clock import SystemClock
from tuition.domain.errors import TuitionError
from tuition.domain.operators import Role
from tuition.services import admin as admin_service
from tuition.services import audit
from tuition.services import operators as operator_service
from tuition.services.audit import Actor
from tuition.store import schema
from tuition.store.db import create_engine
from tuition.store.uow import UnitOfWork

operators_app = typer.Typer(
    help="Operators of the admin console: create, list, set-role, reset-2fa, unlock.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)
T = TypeVar("T")
ROLES = ", ".join(r.value for r in Role)


def _run(work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    """Run ``work`` against the configured store; a refusal is one line and exit 1."""
    settings = load_settings()

    async def go() -> T:
        engine: AsyncEngine = create_engine(settings.database_url)
        try:
            await schema.ensure_current(engine)
            return await work(UnitOfWork(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(go())
    except TuitionError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}")
        raise typer.Exit(1) from None
    except schema.SchemaOutOfDate as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None


@operators_app.command("create")
def create(
    email: Annotated[str, typer.Option(help="The operator's email; they sign in with it")],
    role: Annotated[str, typer.Option(help=f"One of {ROLES}")] = Role.VIEWER.value,
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            help="At least 10 characters (asked for when not given)",
        ),
    ] = "",
) -> None:
    """Create an operator with a role; the password is stored as argon2id."""
    user = _run(
        lambda uow: admin_service.create_admin_user(uow, email, password, SystemClock(), role=role)
    )
    console.print(f"created operator {escape(user.email)} ({user.role})")


@operators_app.command("list")
def list_() -> None:
    """Every operator with their role, two-factor state and last sign-in."""
    users = _run(operator_service.list_operators)
    table = Table("email", "role", "two-factor", "last sign-in", "created")
    for user in users:
        table.add_row(
            escape(user.email),
            user.role,
            "on" if user.totp_enabled_at is not None else "off",
            user.last_login_at.isoformat() if user.last_login_at else "never",
            user.created_at.isoformat(),
        )
    console.print(table)


@operators_app.command("set-role")
def set_role(
    email: Annotated[str, typer.Argument(help="The operator's email")],
    role: Annotated[str, typer.Argument(help=f"One of {ROLES}")],
) -> None:
    """Give an operator another role; their open sessions end."""
    user = _run(
        lambda uow: operator_service.set_role(
            uow, email, role, clock=SystemClock(), actor=Actor.cli()
        )
    )
    console.print(f"{escape(user.email)} is now {user.role}")


@operators_app.command("reset-2fa")
def reset_2fa(email: Annotated[str, typer.Argument(help="The operator's email")]) -> None:
    """Remove an operator's two-factor secret and recovery codes (they enrol again at
    their next sign-in when two-factor is required); their open sessions end."""
    _run(
        lambda uow: operator_service.reset_two_factor(
            uow, email, clock=SystemClock(), actor=Actor.cli()
        )
    )
    console.print(f"two-factor reset for {escape(email)}")


@operators_app.command("unlock")
def unlock(email: Annotated[str, typer.Argument(help="The operator's email")]) -> None:
    """Lift the sign-in lockout of an operator's account, from every IP."""
    cleared = _run(
        lambda uow: operator_service.unlock(uow, email, clock=SystemClock(), actor=Actor.cli())
    )
    console.print(f"unlocked {escape(email)} ({cleared} counter(s) cleared)")


audit_app = typer.Typer(help="The audit trail of changes.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify() -> None:
    """Seal what is waiting, then check the audit trail's hash chain; exit 1 when a
    record was edited or removed."""

    async def work(uow: UnitOfWork) -> audit.AuditReport:
        await audit.seal(uow)
        return await audit.verify(uow)

    report = _run(work)
    if report.ok:
        console.print(f"audit trail OK: {report.records} record(s), chain intact")
        return
    for problem in report.problems:
        err.print(f"[red]{escape(problem)}[/red]")
    err.print(f"audit trail BROKEN: {len(report.problems)} problem(s)")
    raise typer.Exit(1)
