"""Invoice requests in the console: the list (with the issued invoices a refund made due
for reversal, 红冲), a request's page, issuing it (number, date, PDF) or rejecting it.

Issue and reject are CSRF-checked POSTs through the same use cases as the API; a refused
one shows the request's page again with the error's code and message. The operator is
recorded as ``admin:<email>``.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import UploadFile

from tuition.api.deps import get_container
from tuition.domain.errors import NotFound, TuitionError
from tuition.domain.ids import Prefix
from tuition.domain.invoices import MAX_PDF_BYTES, InvoiceStatus
from tuition.domain.operators import Permission
from tuition.services import invoices as invoice_service
from tuition.web.admin_dashboard import page
from tuition.web.admin_filters import PAGE, Text, choice, next_url
from tuition.web.admin_roles import requires
from tuition.web.admin_session import Operator, OperatorDep, audited, csrf_ok, refused
from tuition.web.pages import render, secure

router = APIRouter(tags=["admin console"], include_in_schema=False)

RequestPath = Annotated[str, Path(max_length=40)]


@router.get("/admin/invoices")
async def invoices(
    request: Request, operator: OperatorDep, status: Text = "", after: Text = ""
) -> Response:
    container = get_container(request)
    cursor = after if after.startswith(f"{Prefix.INVOICE_REQUEST.value}_") else None
    found, more = await invoice_service.list_requests(
        container.uow(), status=choice(InvoiceStatus, status), limit=PAGE, starting_after=cursor
    )
    reversals = await invoice_service.needing_reversal(container.uow())
    return page(
        request,
        "admin/invoices.html",
        operator,
        "invoices",
        requests=found,
        reversals=reversals,
        statuses=list(InvoiceStatus),
        filters={"status": status},
        next_url=next_url(request, found[-1].id) if more and found else None,
    )


async def _request_page(
    request: Request, operator: Operator, request_id: str, *, problem: TuitionError | None = None
) -> Response:
    container = get_container(request)
    try:
        record = await invoice_service.get_request(container.uow(), request_id)
    except NotFound:
        return render(request, "admin/not_found.html", {}, status_code=404)
    return page(
        request,
        "admin/invoice.html",
        operator,
        "invoices",
        status_code=200 if problem is None else problem.status,
        invoice=record,
        problem=problem,
        today=container.clock.now().astimezone(container.settings.zone).date().isoformat(),
    )


@router.get("/admin/invoices/{request_id}")
async def invoice(request: Request, operator: OperatorDep, request_id: RequestPath) -> Response:
    return await _request_page(request, operator, request_id)


@router.get("/admin/invoices/{request_id}/pdf")
async def invoice_pdf(request: Request, operator: OperatorDep, request_id: RequestPath) -> Response:
    try:
        pdf = await invoice_service.pdf_of(get_container(request).uow(), request_id)
    except NotFound:
        return render(request, "admin/not_found.html", {}, status_code=404)
    return secure(
        Response(
            pdf,
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="{request_id}.pdf"'},
        )
    )


@router.post("/admin/invoices/{request_id}/issue")
@requires(Permission.INVOICES)
async def issue(request: Request, operator: OperatorDep, request_id: RequestPath) -> Response:
    form = await request.form(max_files=1, max_fields=10, max_part_size=MAX_PDF_BYTES + 1)
    if not csrf_ok(operator.csrf_token, _field(form.get("csrf_token"))):
        return refused(request)
    upload = form.get("pdf")
    pdf = await upload.read(MAX_PDF_BYTES + 1) if isinstance(upload, UploadFile) else b""
    try:
        issued_on = date.fromisoformat(_field(form.get("issued_on")))
    except ValueError:
        issued_on = None
    container = get_container(request)
    try:
        await invoice_service.issue_invoice(
            invoice_service.IssueInvoice(
                request_id=request_id,
                invoice_number=_field(form.get("invoice_number")),
                issued_on=issued_on,
                pdf=pdf,
                issued_by=f"admin:{operator.user.email}",
            ),
            audited(request, operator, "invoice.issued", request_id),
            clock=container.clock,
        )
    except TuitionError as exc:
        return await _request_page(request, operator, request_id, problem=exc)
    return RedirectResponse(f"/admin/invoices/{request_id}", status_code=303)


@router.post("/admin/invoices/{request_id}/reject")
@requires(Permission.INVOICES)
async def reject(request: Request, operator: OperatorDep, request_id: RequestPath) -> Response:
    form = await request.form(max_files=0, max_fields=10)
    if not csrf_ok(operator.csrf_token, _field(form.get("csrf_token"))):
        return refused(request)
    container = get_container(request)
    try:
        await invoice_service.reject_invoice(
            invoice_service.RejectInvoice(
                request_id=request_id,
                reason=_field(form.get("reason")),
                rejected_by=f"admin:{operator.user.email}",
            ),
            audited(request, operator, "invoice.rejected", request_id),
            clock=container.clock,
        )
    except TuitionError as exc:
        return await _request_page(request, operator, request_id, problem=exc)
    return RedirectResponse(f"/admin/invoices/{request_id}", status_code=303)


def _field(value: object) -> str:
    return value[:600] if isinstance(value, str) else ""


routers: list[APIRouter] = [router]
