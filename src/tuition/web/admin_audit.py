"""The audit page (owners): every recorded change, newest first, with filters (who,
action, subject, days), paging both ways with the total, and a streamed CSV export of
what is filtered, times in the platform's time zone. A malformed date is an error shown
on the page, never silently ignored."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from tuition.api.deps import get_container
from tuition.domain.audit import AuditEvent
from tuition.domain.operators import Permission
from tuition.services import audit
from tuition.store.audit import AuditFilter
from tuition.web.admin_dashboard import page
from tuition.web.admin_filters import PAGE, Text, checked_days, csv_cell
from tuition.web.admin_session import Operator, require_role
from tuition.web.pages import SECURITY_HEADERS

router = APIRouter(tags=["admin console"], include_in_schema=False)

AuditorDep = Annotated[Operator, require_role(Permission.OPERATORS)]
Day = Annotated[str, Query(alias="from", max_length=10)]
UntilDay = Annotated[str, Query(alias="to", max_length=10)]
CSV_HEADER = [
    "time",
    "actor_kind",
    "actor",
    "action",
    "subject",
    "before",
    "after",
    "ip",
    "request_id",
    "id",
]


def _filters(
    request: Request, actor: str, action: str, subject: str, start: str, end: str
) -> tuple[AuditFilter, dict[str, str]]:
    """The filter asked for, and the fields that were malformed (by name)."""
    errors: dict[str, str] = {}
    since, until = checked_days(start, end, get_container(request).settings.zone, errors)
    return (
        AuditFilter(
            actor=actor.strip() or None,
            action=action.strip() or None,
            subject=subject.strip() or None,
            since=since,
            until=until,
        ),
        errors,
    )


@router.get("/admin/audit")
async def audit_page(
    request: Request,
    operator: AuditorDep,
    actor: Text = "",
    action: Text = "",
    subject: Text = "",
    start: Day = "",
    end: UntilDay = "",
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    container = get_container(request)
    where, errors = _filters(request, actor, action, subject, start, end)
    events: list[AuditEvent] = []
    total = 0
    if not errors:
        events, total = await audit.page(container.uow(), where, limit=PAGE, offset=offset)
    filters = {"actor": actor, "action": action, "subject": subject, "from": start, "to": end}

    def at(n: int) -> str:
        return str(request.url.include_query_params(offset=n))

    return page(
        request,
        "admin/audit.html",
        operator,
        "audit",
        status_code=422 if errors else 200,
        events=events,
        total=total,
        first=offset + 1 if events else 0,
        last=offset + len(events),
        previous_url=at(max(0, offset - PAGE)) if offset > 0 else None,
        next_url=at(offset + PAGE) if offset + PAGE < total else None,
        filters=filters,
        errors=errors,
        csv_url="/admin/audit.csv?" + request.url.query
        if request.url.query
        else "/admin/audit.csv",
    )


@router.get("/admin/audit.csv")
async def audit_csv(
    request: Request,
    operator: AuditorDep,
    actor: Text = "",
    action: Text = "",
    subject: Text = "",
    start: Day = "",
    end: UntilDay = "",
) -> Response:
    container = get_container(request)
    where, errors = _filters(request, actor, action, subject, start, end)
    if errors:
        return Response("a date is malformed: write it as 2026-11-30\n", status_code=422)
    zone = container.settings.zone

    async def rows() -> AsyncIterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        yield "\ufeff".encode()  # spreadsheets read UTF-8 with a BOM
        writer.writerow(CSV_HEADER)
        async for event in audit.stream(container.uow(), where):
            writer.writerow(
                csv_cell(cell)
                for cell in [
                    event.occurred_at.astimezone(zone).isoformat(timespec="seconds"),
                    event.actor_kind,
                    event.actor,
                    event.action,
                    event.subject,
                    event.before or "",
                    event.after or "",
                    event.ip or "",
                    event.request_id or "",
                    event.id,
                ]
            )
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue().encode()

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={**SECURITY_HEADERS, "Content-Disposition": 'attachment; filename="audit.csv"'},
    )
