"""Invoice requests in the console: the list (searched, filtered, sorted, paged with a
total and exported as filtered, as the orders list is; with the issued invoices a refund made due
for reversal, 红冲), a request's page, issuing it (number, date, PDF) or rejecting it.

Issue and reject are CSRF-checked POSTs through the same use cases as the API; a refused
one shows the request's page again with the error's code and message. The operator is
recorded as ``admin:<email>``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import UploadFile

from tuition.api.deps import get_container
from tuition.domain.errors import NotFound, TuitionError
from tuition.domain.invoices import MAX_PDF_BYTES, InvoiceStatus
from tuition.domain.money import format_amount, get_currency
from tuition.domain.operators import Permission
from tuition.services import invoices as invoice_service
from tuition.store.admin_lists import AdminLists, InvoiceSearch, Window
from tuition.store.console_lists import SORTS
from tuition.store.invoices import InvoiceRequestRecord
from tuition.web.admin_dashboard import page
from tuition.web.admin_filters import (
    PAGE,
    Day,
    Offset,
    Text,
    UntilDay,
    checked_choice,
    checked_days,
    checked_sort,
    csv_refused,
    csv_response,
    local_time,
    paging,
)
from tuition.web.admin_roles import requires
from tuition.web.admin_session import Operator, OperatorDep, audited, csrf_ok, refused
from tuition.web.pages import render, secure

router = APIRouter(tags=["admin console"], include_in_schema=False)

RequestPath = Annotated[str, Path(max_length=40)]


def _invoice_search(
    request: Request, q: str, status: str, customer: str, start: str, end: str
) -> tuple[InvoiceSearch, dict[str, str]]:
    errors: dict[str, str] = {}
    created_gte, created_lt = checked_days(start, end, get_container(request).settings.zone, errors)
    search = InvoiceSearch(
        text=q.strip() or None,
        status=checked_choice(InvoiceStatus, status, "status", errors),
        customer_id=customer.strip() or None,
        window=Window(created_gte, created_lt),
    )
    return search, errors


@router.get("/admin/invoices")
async def invoices(
    request: Request,
    operator: OperatorDep,
    q: Text = "",
    status: Text = "",
    customer: Text = "",
    start: Day = "",
    end: UntilDay = "",
    sort: Text = "newest",
    offset: Offset = 0,
) -> Response:
    container = get_container(request)
    search, errors = _invoice_search(request, q, status, customer, start, end)
    sort = checked_sort(sort, SORTS, errors)
    found: list[InvoiceRequestRecord] = []
    total = 0
    if not errors:
        async with container.uow() as uow:
            found, total = await AdminLists(uow.conn).invoices_page(
                search, sort=sort, limit=PAGE, offset=offset
            )
    reversals = await invoice_service.needing_reversal(container.uow())
    filters = {
        "q": q,
        "status": status,
        "customer": customer,
        "from": start,
        "to": end,
        "sort": sort,
    }
    return page(
        request,
        "admin/invoices.html",
        operator,
        "invoices",
        status_code=422 if errors else 200,
        requests=found,
        reversals=reversals,
        statuses=list(InvoiceStatus),
        filters=filters,
        errors=errors,
        sorts=SORTS,
        **paging(request, "/admin/invoices.csv", offset=offset, shown=len(found), total=total),
    )


INVOICES_CSV = [
    "request",
    "order",
    "customer",
    "type",
    "title",
    "tax_id",
    "status",
    "currency",
    "amount",
    "issued_amount",
    "invoice_number",
    "issued_on",
    "to_reverse",
    "created",
    "decided",
]


@router.get("/admin/invoices.csv")
@requires(Permission.EXPORT)
async def invoices_csv(
    request: Request,
    operator: OperatorDep,
    q: Text = "",
    status: Text = "",
    customer: Text = "",
    start: Day = "",
    end: UntilDay = "",
) -> Response:
    """Every invoice request as filtered on the page, streamed; amounts in major units."""
    container = get_container(request)
    search, errors = _invoice_search(request, q, status, customer, start, end)
    if errors:
        return csv_refused(errors)
    zone = container.settings.zone

    def row(r: InvoiceRequestRecord) -> list[str]:
        unit = get_currency(r.currency)
        return [
            r.id,
            r.order_id,
            r.customer_id,
            r.type.value,
            r.title,
            r.tax_id or "",
            r.status.value,
            r.currency,
            format_amount(r.amount, unit),
            format_amount(r.issued_amount, unit) if r.issued_amount is not None else "",
            r.invoice_number or "",
            r.issued_on or "",
            "yes" if r.reversal_required else "no",
            local_time(r.created_at, zone),
            local_time(r.decided_at, zone),
        ]

    async def records() -> AsyncIterator[list[str]]:
        async with container.uow() as uow:
            async for record in AdminLists(uow.conn).stream_invoices(search):
                yield row(record)

    return csv_response("invoices.csv", INVOICES_CSV, records())


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
