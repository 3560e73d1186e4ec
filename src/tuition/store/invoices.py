"""Invoice requests: stored, listed for finance, and moved by compare-and-set."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select

from tuition.domain.invoices import InvoiceStatus, InvoiceType, needs_reversal
from tuition.store.tables import invoice_requests, orders

# Every column but the PDF itself, which is read only when someone downloads it.
_COLUMNS = [c for c in invoice_requests.c if c.name != "pdf"]


@dataclass(frozen=True, slots=True)
class InvoiceRequestRecord:
    id: str
    order_id: str
    customer_id: str
    type: InvoiceType
    title: str
    tax_id: str | None
    email: str
    currency: str
    amount: int
    status: InvoiceStatus
    invoice_number: str | None
    issued_on: str | None
    issued_amount: int | None
    pdf_sha256: str | None
    reject_reason: str | None
    decided_by: str | None
    decided_at: datetime | None
    requested_by: str
    created_at: datetime
    updated_at: datetime
    # The order's net paid now (total less refunds): what an issued invoice is checked
    # against for a reversal.
    order_net: int = 0

    @property
    def reversal_required(self) -> bool:
        return needs_reversal(self.status, self.issued_amount, self.order_net)


class DuplicateInvoiceRequest(Exception):
    """The order already has a live (requested or issued) invoice request."""


def _select() -> Select[Any]:
    return select(*_COLUMNS, (orders.c.total - orders.c.amount_refunded).label("order_net")).join(
        orders, orders.c.id == invoice_requests.c.order_id
    )


def _record(row: Any) -> InvoiceRequestRecord:
    m = row._mapping
    values = {f: m[f] for f in InvoiceRequestRecord.__dataclass_fields__}
    values["type"] = InvoiceType(values["type"])
    values["status"] = InvoiceStatus(values["status"])
    return InvoiceRequestRecord(**values)


class InvoiceRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, record: InvoiceRequestRecord) -> None:
        """Raises DuplicateInvoiceRequest when the order has a live request (UNIQUE)."""
        values = {
            f: getattr(record, f)
            for f in InvoiceRequestRecord.__dataclass_fields__
            if f != "order_net"
        }
        values["open_order_id"] = record.order_id
        try:
            await self.conn.execute(insert(invoice_requests), values)
        except IntegrityError as exc:
            # The transaction is spoilt on PostgreSQL: the caller's unit of work rolls back.
            if "open_order_id" in str(exc.orig):
                raise DuplicateInvoiceRequest(record.order_id) from None
            raise

    async def get(self, request_id: str) -> InvoiceRequestRecord | None:
        row = (
            await self.conn.execute(_select().where(invoice_requests.c.id == request_id))
        ).first()
        return None if row is None else _record(row)

    async def of_order(self, order_id: str) -> list[InvoiceRequestRecord]:
        rows = await self.conn.execute(
            _select().where(invoice_requests.c.order_id == order_id).order_by(invoice_requests.c.id)
        )
        return [_record(r) for r in rows]

    async def find(
        self, *, status: InvoiceStatus | None, limit: int, starting_after: str | None = None
    ) -> tuple[list[InvoiceRequestRecord], bool]:
        query = _select()
        if status is not None:
            query = query.where(invoice_requests.c.status == status.value)
        if starting_after is not None:
            query = query.where(invoice_requests.c.id < starting_after)
        rows = (
            await self.conn.execute(query.order_by(invoice_requests.c.id.desc()).limit(limit + 1))
        ).all()
        return [_record(r) for r in rows[:limit]], len(rows) > limit

    async def needing_reversal(self, limit: int) -> list[InvoiceRequestRecord]:
        rows = await self.conn.execute(
            _select()
            .where(
                invoice_requests.c.status == InvoiceStatus.ISSUED.value,
                orders.c.total - orders.c.amount_refunded < invoice_requests.c.issued_amount,
            )
            .order_by(invoice_requests.c.id.desc())
            .limit(limit)
        )
        return [_record(r) for r in rows]

    async def issue(
        self,
        request_id: str,
        *,
        number: str,
        issued_on: str,
        issued_amount: int,
        pdf: bytes,
        pdf_sha256: str,
        by: str,
        at: datetime,
    ) -> bool:
        """requested → issued, by compare-and-set; False when it was not requested."""
        result = await self.conn.execute(
            update(invoice_requests)
            .where(
                invoice_requests.c.id == request_id,
                invoice_requests.c.status == InvoiceStatus.REQUESTED.value,
            )
            .values(
                status=InvoiceStatus.ISSUED.value,
                invoice_number=number,
                issued_on=issued_on,
                issued_amount=issued_amount,
                pdf=pdf,
                pdf_sha256=pdf_sha256,
                decided_by=by,
                decided_at=at,
                updated_at=at,
            )
        )
        return result.rowcount == 1

    async def reject(self, request_id: str, *, reason: str, by: str, at: datetime) -> bool:
        """requested → rejected, freeing the order for a new request."""
        result = await self.conn.execute(
            update(invoice_requests)
            .where(
                invoice_requests.c.id == request_id,
                invoice_requests.c.status == InvoiceStatus.REQUESTED.value,
            )
            .values(
                status=InvoiceStatus.REJECTED.value,
                open_order_id=None,
                reject_reason=reason,
                decided_by=by,
                decided_at=at,
                updated_at=at,
            )
        )
        return result.rowcount == 1

    async def pdf(self, request_id: str) -> bytes | None:
        row = (
            await self.conn.execute(
                select(invoice_requests.c.pdf).where(invoice_requests.c.id == request_id)
            )
        ).first()
        return None if row is None or row.pdf is None else bytes(row.pdf)
