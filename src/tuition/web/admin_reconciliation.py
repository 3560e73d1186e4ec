"""Reconciliation in the console: runs per channel and day, their cases with filters,
resolving a case, and a CSV export of cases.

Resolving a case and the CSV export need the finance role (or owner); a resolution is
recorded as ``admin:<operator email>``. Resolving posts a form that checks the session's CSRF token;
a refusal (the case is no longer open) shows the run again with the error.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import RedirectResponse, Response

from tuition.api.deps import get_container
from tuition.domain.errors import NotFound, TuitionError
from tuition.domain.operators import Permission
from tuition.domain.reconciliation import CaseKind, CaseState
from tuition.services import reconciliation as service
from tuition.store.reconciliation import CaseRecord, ReconciliationRepository
from tuition.web.admin_dashboard import page
from tuition.web.admin_filters import Text, choice, csv_cell
from tuition.web.admin_roles import requires
from tuition.web.admin_session import OperatorDep, audited, csrf_ok, refused
from tuition.web.pages import render, secure

router = APIRouter(tags=["admin console"], include_in_schema=False)
ObjectId = Annotated[str, Path(max_length=40)]
CASE_COLUMNS = (
    "id",
    "channel",
    "account",
    "business_day",
    "kind",
    "subject",
    "reference",
    "currency",
    "amount_ours",
    "amount_gateway",
    "fee_ours",
    "fee_gateway",
    "status",
    "resolution",
    "resolved_by",
    "note",
    "detail",
)


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


async def _cases(
    request: Request, channel: str, day: str, status: str, kind: str
) -> list[CaseRecord]:
    container = get_container(request)
    async with container.uow() as uow:
        return await ReconciliationRepository(uow.conn).cases(
            channel=channel.strip() or None,
            day=_day(day),
            status=choice(CaseState, status),
            kind=kind if kind in {k.value for k in CaseKind} else None,
        )


@router.get("/admin/reconciliations")
async def runs(
    request: Request,
    operator: OperatorDep,
    channel: Text = "",
    day: Text = "",
    status: Text = "",
    kind: Text = "",
) -> Response:
    container = get_container(request)
    async with container.uow() as uow:
        found = await ReconciliationRepository(uow.conn).runs(
            channel=channel.strip() or None, day=_day(day), limit=60
        )
    cases = await _cases(request, channel, day, status, kind)
    filters = {"channel": channel, "day": day, "status": status, "kind": kind}
    return page(
        request,
        "admin/reconciliations.html",
        operator,
        "reconciliations",
        runs=found,
        cases=cases,
        filters=filters,
        states=list(CaseState),
        kinds=list(CaseKind),
        business_zone=container.settings.time_zone,
    )


@router.get("/admin/reconciliations/cases.csv")
@requires(Permission.EXPORT)
async def cases_csv(
    request: Request,
    operator: OperatorDep,
    channel: Text = "",
    day: Text = "",
    status: Text = "",
    kind: Text = "",
) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CASE_COLUMNS)
    for case in await _cases(request, channel, day, status, kind):
        row = [getattr(case, name) for name in CASE_COLUMNS]
        writer.writerow([_cell(value) for value in row])
    return secure(
        Response(
            out.getvalue().encode("utf-8-sig"),  # with a BOM, so spreadsheets read the Chinese
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="reconciliation-cases.csv"'},
        )
    )


@router.get("/admin/reconciliations/{run_id}")
async def run_page(
    request: Request, operator: OperatorDep, run_id: ObjectId, problem: str = ""
) -> Response:
    container = get_container(request)
    async with container.uow() as uow:
        repo = ReconciliationRepository(uow.conn)
        run = await repo.get_run(run_id)
        cases = await repo.cases_seen_by(run) if run is not None else []
    if run is None:
        return render(
            request,
            "admin/not_found.html",
            {"operator": operator, "csrf_token": operator.csrf_token, "section": "reconciliations"},
            status_code=404,
        )
    return page(
        request,
        "admin/reconciliation.html",
        operator,
        "reconciliations",
        run=run,
        cases=cases,
        problem=problem[:200],
        business_zone=container.settings.time_zone,
    )


@router.post("/admin/reconciliations/{run_id}/cases/{case_id}/resolve")
@requires(Permission.RECONCILIATION)
async def resolve(
    request: Request,
    operator: OperatorDep,
    run_id: ObjectId,
    case_id: ObjectId,
    state: Annotated[str, Form(max_length=10)] = "",
    note: Annotated[str, Form(max_length=500)] = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    container = get_container(request)
    target = choice(CaseState, state)
    problem = ""
    if target is None or target is CaseState.OPEN or not note.strip():
        problem = "choose resolved or accepted and write a note"
    else:
        try:
            await service.resolve_case(
                service.ResolveCase(
                    run_id=run_id,
                    case_id=case_id,
                    state=target,
                    resolved_by=f"admin:{operator.user.email}",
                    note=note.strip(),
                ),
                audited(
                    request, operator, "reconciliation.case_resolved", case_id, state=target.value
                ),
                clock=container.clock,
            )
        except NotFound:
            return render(
                request,
                "admin/not_found.html",
                {"operator": operator, "csrf_token": operator.csrf_token},
                status_code=404,
            )
        except TuitionError as exc:
            problem = f"{exc.code}: {exc.message}"
    url = f"/admin/reconciliations/{run_id}#case-{case_id}"
    if problem:
        from urllib.parse import quote

        url = f"/admin/reconciliations/{run_id}?problem={quote(problem)}#case-{case_id}"
    return secure(RedirectResponse(url, status_code=303))


def _cell(value: object) -> object:
    """A case's field in the export: a gateway's text never runs as a spreadsheet formula."""
    if isinstance(value, CaseState):
        return value.value
    return csv_cell(value) if isinstance(value, str) else value
