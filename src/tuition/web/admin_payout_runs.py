"""The console's payout runs: every run with its period and approval, a run's page with
what each payee would get (or got), and the actions: propose the current period's run,
approve a proposed run (money moves only then), retry its failed payouts.

Approving and retrying move money: finance and owners only (the PAYOUTS permission,
checked by the routes' marks and by :func:`may_approve_payouts` for the page's buttons),
and each is written to the audit trail with the operator.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response

from tuition.api.deps import get_container
from tuition.api.payouts import payout_deps
from tuition.domain.errors import TuitionError
from tuition.domain.operators import Permission
from tuition.services import payout_runs as run_service
from tuition.web.admin_dashboard import page
from tuition.web.admin_roles import requires
from tuition.web.admin_session import Operator, OperatorDep, audited, csrf_ok, refused
from tuition.web.pages import secure

router = APIRouter(tags=["admin console"], include_in_schema=False)

RunPath = Annotated[str, Path(max_length=40, pattern=r"^prun_[0-9A-Z]{26}$")]
RECENT = 50


def may_approve_payouts(operator: Operator) -> bool:
    """Whether ``operator`` may approve a payout run or retry its payouts: finance and
    owners (the PAYOUTS permission; the routes are marked too, so the server refuses a
    direct POST from any other role)."""
    return operator.may(Permission.PAYOUTS)


def _who(operator: Operator) -> str:
    return f"admin:{operator.user.email}"


async def _form_ok(request: Request, operator: Operator) -> bool:
    form = await request.form()
    token = form.get("csrf_token")
    return csrf_ok(operator.csrf_token, token if isinstance(token, str) else "")


@router.get("/admin/payout_runs")
async def runs_page(
    request: Request, operator: OperatorDep, problem: str | None = None
) -> Response:
    container = get_container(request)
    uow = container.uow()
    async with uow:
        runs = await uow.payout_runs.listing(limit=RECENT)
    return page(
        request,
        "admin/payout_runs.html",
        operator,
        "payout_runs",
        runs=runs,
        schedule=container.settings.payout_schedule,
        problem=problem,
    )


@router.post("/admin/payout_runs/propose")
@requires(Permission.PAYOUTS)
async def propose(request: Request, operator: OperatorDep) -> Response:
    """Propose the current period's run (or open the one already proposed)."""
    if not await _form_ok(request, operator):
        return refused(request)
    container = get_container(request)
    try:
        run, _new = await run_service.propose_run(
            container.uow(),
            schedule=container.settings.payout_schedule,
            proposed_by=_who(operator),
            deps=payout_deps(container),
        )
    except TuitionError as exc:
        url = f"/admin/payout_runs?problem={quote(exc.code, safe='')}"
        return secure(RedirectResponse(url, 303))
    return secure(RedirectResponse(f"/admin/payout_runs/{quote(run.id, safe='')}", 303))


@router.get("/admin/payout_runs/{run_id}")
async def run_page(
    request: Request, operator: OperatorDep, run_id: RunPath, problem: str | None = None
) -> Response:
    container = get_container(request)
    view = await run_service.view_run(container.uow(), run_id)
    return page(
        request,
        "admin/payout_run.html",
        operator,
        "payout_runs",
        view=view,
        may_approve=may_approve_payouts(operator),
        problem=problem,
    )


@router.post("/admin/payout_runs/{run_id}/approve")
@requires(Permission.PAYOUTS)
async def approve(request: Request, operator: OperatorDep, run_id: RunPath) -> Response:
    """Approve the run as this operator; its payouts are made now."""
    return await _act(request, operator, run_id, retry=False)


@router.post("/admin/payout_runs/{run_id}/retry")
@requires(Permission.PAYOUTS)
async def retry(request: Request, operator: OperatorDep, run_id: RunPath) -> Response:
    """Pay again, once, what each failed payout of the run gave back."""
    return await _act(request, operator, run_id, retry=True)


async def _act(request: Request, operator: Operator, run_id: str, *, retry: bool) -> Response:
    if not await _form_ok(request, operator):
        return refused(request)
    url = f"/admin/payout_runs/{quote(run_id, safe='')}"
    if not may_approve_payouts(operator):
        return secure(RedirectResponse(f"{url}?problem=finance_role_required", 303))
    container = get_container(request)
    deps = payout_deps(container)
    try:
        action = "payout_run.retry" if retry else "payout_run.approve"
        uow = audited(request, operator, action, run_id)  # the trail names who moved money
        if retry:
            await run_service.retry_failed(uow, run_id, operator=_who(operator), deps=deps)
        else:
            await run_service.approve_run(uow, run_id, operator=_who(operator), deps=deps)
    except TuitionError as exc:
        return secure(RedirectResponse(f"{url}?problem={quote(exc.code, safe='')}", 303))
    return secure(RedirectResponse(url, status_code=303))
