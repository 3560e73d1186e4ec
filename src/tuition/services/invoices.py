"""Invoice requests (发票): a buyer asks, finance issues or rejects.

Issuing through a tax-control provider is outside Tuition: finance issues the invoice
there and records here its number, date and PDF file. Each step emits an event
(``invoice.requested``, ``invoice.issued``, ``invoice.rejected``) in the same transaction.
An issued invoice whose order is refunded later is flagged ``reversal_required`` (红冲):
the flag is computed from the order's amounts, so no refund path can forget to set it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from typing import Any

from tuition.clock import Clock
from tuition.domain.errors import Conflict, NotFound
from tuition.domain.ids import Prefix, new_id
from tuition.domain.invoices import (
    InvoiceStatus,
    InvoiceType,
    check_issue,
    check_reason,
    check_request,
    transition,
)
from tuition.domain.orders import OrderStatus
from tuition.store.invoices import DuplicateInvoiceRequest, InvoiceRepository, InvoiceRequestRecord
from tuition.store.uow import UnitOfWork

INVOICEABLE = frozenset({OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED})


@dataclass(frozen=True, slots=True)
class RequestInvoice:
    order_id: str
    type: InvoiceType
    title: str
    tax_id: str | None
    email: str
    requested_by: str


@dataclass(frozen=True, slots=True)
class IssueInvoice:
    request_id: str
    invoice_number: str
    issued_on: date | None
    pdf: bytes
    issued_by: str


@dataclass(frozen=True, slots=True)
class RejectInvoice:
    request_id: str
    reason: str
    rejected_by: str


def invoice_data(record: InvoiceRequestRecord) -> dict[str, Any]:
    """The event payload: never the PDF, and the tax id as given (a company's, public)."""
    return {
        "id": record.id,
        "order_id": record.order_id,
        "customer_id": record.customer_id,
        "type": record.type.value,
        "title": record.title,
        "tax_id": record.tax_id,
        "amount": record.amount,
        "currency": record.currency,
        "status": record.status.value,
        "invoice_number": record.invoice_number,
        "issued_on": record.issued_on,
        "reject_reason": record.reject_reason,
    }


async def request_invoice(
    cmd: RequestInvoice, uow: UnitOfWork, *, clock: Clock
) -> InvoiceRequestRecord:
    """Record a buyer's request for an invoice of a paid order.

    Raises ValidationFailed naming the field (a bad credit code is ``tax_id_invalid``),
    NotFound for an unknown order, Conflict ``order_not_invoiceable`` for an order not
    paid or refunded in full, and ``invoice_already_requested`` while another request
    of the order is requested or issued.
    """
    title, tax_id, email = check_request(cmd.type, cmd.title, cmd.tax_id, cmd.email)
    now = clock.now()
    async with uow:
        order = await uow.orders.get(cmd.order_id, with_lines=False)
        if order is None:
            raise NotFound(f"no order {cmd.order_id}", param="order_id")
        net = order.total - order.amount_refunded
        if order.status not in INVOICEABLE or net <= 0:
            raise Conflict(
                f"an invoice is for a paid order; this one is {order.status}",
                code="order_not_invoiceable",
                param="order_id",
            )
        record = InvoiceRequestRecord(
            id=new_id(Prefix.INVOICE_REQUEST),
            order_id=order.id,
            customer_id=order.customer_id,
            type=cmd.type,
            title=title,
            tax_id=tax_id,
            email=email,
            currency=order.currency,
            amount=net,
            status=InvoiceStatus.REQUESTED,
            invoice_number=None,
            issued_on=None,
            issued_amount=None,
            pdf_sha256=None,
            reject_reason=None,
            decided_by=None,
            decided_at=None,
            requested_by=cmd.requested_by,
            created_at=now,
            updated_at=now,
            order_net=net,
        )
        repo = InvoiceRepository(uow.conn)
        try:
            await repo.add(record)
        except DuplicateInvoiceRequest:
            raise _already_requested(order.id) from None
        await uow.events.emit("invoice.requested", record.id, invoice_data(record), at=now)
        uow.outcome(record.id)
        await uow.commit()
    return record


async def issue_invoice(
    cmd: IssueInvoice, uow: UnitOfWork, *, clock: Clock
) -> InvoiceRequestRecord:
    """requested → issued, with the invoice's number, date and PDF file."""
    number = check_issue(cmd.invoice_number, cmd.issued_on, cmd.pdf)
    assert cmd.issued_on is not None
    now = clock.now()
    async with uow:
        repo = InvoiceRepository(uow.conn)
        current = await _get(repo, cmd.request_id)
        transition(current.status, InvoiceStatus.ISSUED)
        if current.order_net <= 0:
            raise Conflict(
                "the order was refunded in full; reject the request instead",
                code="order_not_invoiceable",
                param="request_id",
            )
        moved = await repo.issue(
            current.id,
            number=number,
            issued_on=cmd.issued_on.isoformat(),
            issued_amount=current.order_net,
            pdf=cmd.pdf,
            pdf_sha256=hashlib.sha256(cmd.pdf).hexdigest(),
            by=cmd.issued_by,
            at=now,
        )
        if not moved:  # another operator decided first
            transition((await _get(repo, cmd.request_id)).status, InvoiceStatus.ISSUED)
        issued = await _get(repo, current.id)
        await uow.events.emit("invoice.issued", issued.id, invoice_data(issued), at=now)
        uow.outcome(issued.id)
        await uow.commit()
    return issued


async def reject_invoice(
    cmd: RejectInvoice, uow: UnitOfWork, *, clock: Clock
) -> InvoiceRequestRecord:
    """requested → rejected with a reason; the order may be asked for again."""
    reason = check_reason(cmd.reason)
    now = clock.now()
    async with uow:
        repo = InvoiceRepository(uow.conn)
        current = await _get(repo, cmd.request_id)
        transition(current.status, InvoiceStatus.REJECTED)
        if not await repo.reject(current.id, reason=reason, by=cmd.rejected_by, at=now):
            transition((await _get(repo, cmd.request_id)).status, InvoiceStatus.REJECTED)
        rejected = await _get(repo, current.id)
        await uow.events.emit("invoice.rejected", rejected.id, invoice_data(rejected), at=now)
        uow.outcome(rejected.id)
        await uow.commit()
    return rejected


async def get_request(uow: UnitOfWork, request_id: str) -> InvoiceRequestRecord:
    async with uow:
        return await _get(InvoiceRepository(uow.conn), request_id)


async def requests_of_order(uow: UnitOfWork, order_id: str) -> list[InvoiceRequestRecord]:
    async with uow:
        if await uow.orders.get(order_id, with_lines=False) is None:
            raise NotFound(f"no order {order_id}", param="order_id")
        return await InvoiceRepository(uow.conn).of_order(order_id)


async def list_requests(
    uow: UnitOfWork, *, status: InvoiceStatus | None, limit: int, starting_after: str | None = None
) -> tuple[list[InvoiceRequestRecord], bool]:
    async with uow:
        return await InvoiceRepository(uow.conn).find(
            status=status, limit=limit, starting_after=starting_after
        )


async def needing_reversal(uow: UnitOfWork, *, limit: int = 100) -> list[InvoiceRequestRecord]:
    async with uow:
        return await InvoiceRepository(uow.conn).needing_reversal(limit)


async def pdf_of(uow: UnitOfWork, request_id: str) -> bytes:
    async with uow:
        pdf = await InvoiceRepository(uow.conn).pdf(request_id)
    if pdf is None:
        raise NotFound(f"invoice request {request_id} has no PDF", param="request_id")
    return pdf


async def _get(repo: InvoiceRepository, request_id: str) -> InvoiceRequestRecord:
    record = await repo.get(request_id)
    if record is None:
        raise NotFound(f"no invoice request {request_id}", param="request_id")
    return record


def _already_requested(order_id: str) -> Conflict:
    return Conflict(
        f"order {order_id} already has an invoice request (requested or issued)",
        code="invoice_already_requested",
        param="order_id",
    )
