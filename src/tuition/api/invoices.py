"""Invoice requests over REST: a buyer asks for an invoice of a paid order; the platform
reads where it stands. Finance issues or rejects it in the admin console."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from tuition.api.deps import ActorDep, ApiKeyDep, Container, ContainerDep, audited
from tuition.api.fields import NoNul
from tuition.api.idempotency import replayed_by
from tuition.api.routing import v1_router
from tuition.domain.invoices import MAX_EMAIL, MAX_TITLE, InvoiceType
from tuition.services import invoices as invoice_service
from tuition.store.invoices import InvoiceRequestRecord

router = v1_router(tags=["invoices"])

OrderIdPath = Annotated[str, Path(min_length=1, max_length=40, description="An order id, ord_…")]
RequestIdPath = Annotated[
    str, Path(min_length=1, max_length=40, description="An invoice request id, inv_…")
]


class InvoiceRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: InvoiceType = Field(description="personal or company")
    title: Annotated[str, Field(min_length=1, max_length=MAX_TITLE), NoNul] = Field(
        description="The invoice's title (抬头): the person's or the company's name"
    )
    tax_id: Annotated[str, Field(max_length=40), NoNul] | None = Field(
        default=None,
        description="The company's 18-character unified social credit code; "
        "required for company invoices",
    )
    email: Annotated[str, Field(min_length=3, max_length=MAX_EMAIL), NoNul] = Field(
        description="Where the issued invoice is sent"
    )


class InvoiceRequestOut(BaseModel):
    id: str
    object: str = "invoice_request"
    order_id: str
    customer_id: str
    type: str
    title: str
    tax_id: str | None
    email: str
    amount: int = Field(description="The order's net paid when asked, minor units")
    currency: str
    status: str = Field(description="requested, issued or rejected")
    invoice_number: str | None
    issued_on: str | None = Field(description="The invoice's date, YYYY-MM-DD")
    issued_amount: int | None = Field(description="What the issued invoice covers")
    has_pdf: bool
    reject_reason: str | None
    reversal_required: bool = Field(
        description="Issued, then the order was refunded: a red-letter invoice (红冲) is due"
    )
    requested_by: str
    decided_by: str | None
    decided_at: datetime | None
    created_at: datetime
    updated_at: datetime


class InvoiceRequestList(BaseModel):
    object: str = "list"
    data: list[InvoiceRequestOut]
    has_more: bool = False


def request_out(record: InvoiceRequestRecord) -> InvoiceRequestOut:
    return InvoiceRequestOut(
        id=record.id,
        order_id=record.order_id,
        customer_id=record.customer_id,
        type=record.type.value,
        title=record.title,
        tax_id=record.tax_id,
        email=record.email,
        amount=record.amount,
        currency=record.currency,
        status=record.status.value,
        invoice_number=record.invoice_number,
        issued_on=record.issued_on,
        issued_amount=record.issued_amount,
        has_pdf=record.pdf_sha256 is not None,
        reject_reason=record.reject_reason,
        reversal_required=record.reversal_required,
        requested_by=record.requested_by,
        decided_by=record.decided_by,
        decided_at=record.decided_at,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


async def _request_now(
    container: Container, _request: Request, request_id: str | None
) -> InvoiceRequestOut | None:
    if request_id is None:
        return None
    return request_out(await invoice_service.get_request(container.uow(), request_id))


@router.post(
    "/orders/{order_id}/invoice_requests",
    status_code=201,
    response_model=InvoiceRequestOut,
    summary="Ask for an invoice (发票) of a paid order",
    description="`tax_id` is checked as a unified social credit code (GB 32100-2015, its "
    "check character included): 422 `tax_id_invalid`, or `tax_id_missing` for a company. "
    "409 `order_not_invoiceable` for an order not paid (or refunded in full) and "
    "`invoice_already_requested` while another request of the order is requested or "
    "issued. Emits `invoice.requested`.",
)
@replayed_by(_request_now)
async def create_invoice_request(
    order_id: OrderIdPath,
    body: InvoiceRequestIn,
    container: ContainerDep,
    key: ApiKeyDep,
    actor: ActorDep,
) -> InvoiceRequestOut:
    record = await invoice_service.request_invoice(
        invoice_service.RequestInvoice(
            order_id=order_id,
            type=body.type,
            title=body.title,
            tax_id=body.tax_id,
            email=body.email,
            requested_by=f"api_key:{key.id}",
        ),
        audited(container, actor, "invoice.requested", order_id),
        clock=container.clock,
    )
    return request_out(record)


@router.get(
    "/orders/{order_id}/invoice_requests",
    response_model=InvoiceRequestList,
    summary="An order's invoice requests, oldest first",
)
async def list_invoice_requests(
    order_id: OrderIdPath, container: ContainerDep
) -> InvoiceRequestList:
    records = await invoice_service.requests_of_order(container.uow(), order_id)
    return InvoiceRequestList(data=[request_out(r) for r in records])


@router.get(
    "/invoice_requests/{request_id}",
    response_model=InvoiceRequestOut,
    summary="One invoice request",
)
async def get_invoice_request(
    request_id: RequestIdPath, container: ContainerDep
) -> InvoiceRequestOut:
    return request_out(await invoice_service.get_request(container.uow(), request_id))


routers: list[APIRouter] = [router]
