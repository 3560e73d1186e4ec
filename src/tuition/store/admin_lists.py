"""The console's lists of refunds, subscriptions, invoice requests and payees, as
searched and filtered on their pages: each is a :class:`~tuition.store.console_lists.Listing`
(paged with a total, sorted, streamed for its CSV) like the orders and payments lists.

``text`` finds a row by any of its ids or a gateway number in any case, or by the start
of its customer id (a payee: of its name) in any case; every branch is answered by an
index (migration 0025, docs/admin.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.domain.invoices import InvoiceStatus
from tuition.domain.payments import RefundStatus
from tuition.domain.subscriptions import SubscriptionStatus
from tuition.store.console_lists import (
    Listing,
    by_date_and_amount,
    equals_lowered,
    found_by,
    normal_id,
    starts_with_lowered,
)
from tuition.store.earnings import PayeeRecord
from tuition.store.invoices import InvoiceRequestRecord, _record, _select
from tuition.store.refunds import RefundRecord, _refund
from tuition.store.subscriptions import SubscriptionRecord, _sub
from tuition.store.tables import (
    agreements,
    invoice_requests,
    payees,
    payments,
    refunds,
    subscription_orders,
    subscriptions,
)

SUBSCRIPTION_SORTS = ("newest", "oldest", "renews", "-renews")
PAYEE_SORTS = ("name", "-name", "newest", "oldest")


@dataclass(frozen=True, slots=True)
class Window:
    """Rows created in ``[created_gte, created_lt)``; either end may be open."""

    created_gte: datetime | None = None
    created_lt: datetime | None = None

    def apply(self, query: Select[Any], column: Any) -> Select[Any]:
        if self.created_gte is not None:
            query = query.where(column >= self.created_gte)
        if self.created_lt is not None:
            query = query.where(column < self.created_lt)
        return query


@dataclass(frozen=True, slots=True)
class RefundSearch:
    """``text``: a refund's id, its order's or payment's, the gateway's refund or trade
    number, or the start of the customer's id."""

    text: str | None = None
    status: RefundStatus | None = None
    order_id: str | None = None
    customer_id: str | None = None
    window: Window = Window()


@dataclass(frozen=True, slots=True)
class SubscriptionSearch:
    """``text``: a subscription's id, one of its orders', its membership's, a gateway
    agreement number, or the start of the customer's id."""

    text: str | None = None
    status: SubscriptionStatus | None = None
    channel: str | None = None
    customer_id: str | None = None
    window: Window = Window()


@dataclass(frozen=True, slots=True)
class InvoiceSearch:
    """``text``: a request's id, its order's, the invoice number, or the start of the
    customer's id."""

    text: str | None = None
    status: InvoiceStatus | None = None
    customer_id: str | None = None
    window: Window = Window()


@dataclass(frozen=True, slots=True)
class PayeeSearch:
    """``text``: a payee's id or the start of its name, in any case."""

    text: str | None = None
    kind: str | None = None


_PAYEE_FIELDS = list(PayeeRecord.__dataclass_fields__)


def _payee(m: Any) -> PayeeRecord:
    return PayeeRecord(**{f: m[f] for f in _PAYEE_FIELDS})


def _equal(query: Select[Any], *pairs: tuple[Any, object]) -> Select[Any]:
    for column, value in pairs:
        if value is not None:
            query = query.where(column == value)
    return query


class AdminLists:
    """The four lists' queries on one connection (the engine decides the search's form)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self._dialect = conn.dialect.name

    # --- refunds ------------------------------------------------------------------------

    def refunds(self, where: RefundSearch) -> Listing:
        query: Select[Any] = select(refunds)
        if where.text:
            typed = where.text.strip()
            as_id = normal_id(typed)
            found = [
                select(refunds.c.id).where(
                    starts_with_lowered(refunds.c.customer_id, typed, self._dialect)
                ),
                select(refunds.c.id).where(
                    equals_lowered(refunds.c.channel_refund_no, typed, self._dialect)
                ),
                select(refunds.c.id).where(
                    refunds.c.payment_id.in_(
                        select(payments.c.id).where(
                            equals_lowered(payments.c.channel_trade_no, typed, self._dialect)
                        )
                    )
                ),
            ]
            if as_id is not None:
                found += [
                    select(refunds.c.id).where(column == as_id)
                    for column in (refunds.c.id, refunds.c.order_id, refunds.c.payment_id)
                ]
            query = query.where(refunds.c.id.in_(found_by(*found)))
        query = _equal(
            query,
            (refunds.c.status, where.status.value if where.status else None),
            (refunds.c.order_id, where.order_id),
            (refunds.c.customer_id, where.customer_id),
        )
        query = where.window.apply(query, refunds.c.created_at)
        return Listing(query, refunds.c.id, by_date_and_amount(refunds.c.id, refunds.c.amount))

    async def refunds_page(
        self, where: RefundSearch, *, sort: str, limit: int, offset: int
    ) -> tuple[list[RefundRecord], int]:
        rows, total = await self.refunds(where).page(
            self.conn, sort=sort, limit=limit, offset=offset
        )
        return [_refund(r) for r in rows], total

    async def stream_refunds(self, where: RefundSearch) -> AsyncIterator[RefundRecord]:
        async for row in self.refunds(where).stream(self.conn):
            yield _refund(row)

    # --- subscriptions ------------------------------------------------------------------

    def subscriptions(self, where: SubscriptionSearch) -> Listing:
        s = subscriptions
        query: Select[Any] = select(s)
        if where.text:
            typed = where.text.strip()
            as_id = normal_id(typed)
            found = [
                select(s.c.id).where(starts_with_lowered(s.c.customer_id, typed, self._dialect)),
                select(agreements.c.subscription_id).where(
                    equals_lowered(agreements.c.agreement_no, typed, self._dialect),
                    agreements.c.subscription_id.is_not(None),
                ),
            ]
            if as_id is not None:
                found += [
                    select(s.c.id).where(s.c.id == as_id),
                    select(subscription_orders.c.subscription_id).where(
                        subscription_orders.c.order_id == as_id
                    ),
                    select(agreements.c.subscription_id).where(
                        agreements.c.id == as_id, agreements.c.subscription_id.is_not(None)
                    ),
                ]
            query = query.where(s.c.id.in_(found_by(*found)))
        query = _equal(
            query,
            (s.c.status, where.status.value if where.status else None),
            (s.c.channel, where.channel),
            (s.c.customer_id, where.customer_id),
        )
        query = where.window.apply(query, s.c.created_at)
        sorts = {
            "newest": (s.c.id.desc(),),
            "oldest": (s.c.id.asc(),),
            "renews": (s.c.current_period_end.is_(None), s.c.current_period_end, s.c.id.desc()),
            "-renews": (
                s.c.current_period_end.is_(None),
                s.c.current_period_end.desc(),
                s.c.id.desc(),
            ),
        }
        return Listing(query, s.c.id, sorts)

    async def subscriptions_page(
        self, where: SubscriptionSearch, *, sort: str, limit: int, offset: int
    ) -> tuple[list[SubscriptionRecord], int]:
        rows, total = await self.subscriptions(where).page(
            self.conn, sort=sort, limit=limit, offset=offset
        )
        return [_sub(r) for r in rows], total

    async def stream_subscriptions(
        self, where: SubscriptionSearch
    ) -> AsyncIterator[SubscriptionRecord]:
        async for row in self.subscriptions(where).stream(self.conn):
            yield _sub(row)

    # --- invoice requests ---------------------------------------------------------------

    def invoices(self, where: InvoiceSearch) -> Listing:
        i = invoice_requests
        query = _select()
        if where.text:
            typed = where.text.strip()
            as_id = normal_id(typed)
            found = [
                select(i.c.id).where(starts_with_lowered(i.c.customer_id, typed, self._dialect)),
                select(i.c.id).where(equals_lowered(i.c.invoice_number, typed, self._dialect)),
            ]
            if as_id is not None:
                found += [
                    select(i.c.id).where(i.c.id == as_id),
                    select(i.c.id).where(i.c.order_id == as_id),
                ]
            query = query.where(i.c.id.in_(found_by(*found)))
        query = _equal(
            query,
            (i.c.status, where.status.value if where.status else None),
            (i.c.customer_id, where.customer_id),
        )
        query = where.window.apply(query, i.c.created_at)
        return Listing(query, i.c.id, by_date_and_amount(i.c.id, i.c.amount))

    async def invoices_page(
        self, where: InvoiceSearch, *, sort: str, limit: int, offset: int
    ) -> tuple[list[InvoiceRequestRecord], int]:
        rows, total = await self.invoices(where).page(
            self.conn, sort=sort, limit=limit, offset=offset
        )
        return [_record_of(r) for r in rows], total

    async def stream_invoices(self, where: InvoiceSearch) -> AsyncIterator[InvoiceRequestRecord]:
        async for row in self.invoices(where).stream(self.conn):
            yield _record_of(row)

    # --- payees -------------------------------------------------------------------------

    def payees(self, where: PayeeSearch) -> Listing:
        p = payees
        query: Select[Any] = select(p)
        if where.text:
            typed = where.text.strip()
            as_id = normal_id(typed)
            found = [select(p.c.id).where(starts_with_lowered(p.c.name, typed, self._dialect))]
            if as_id is not None:
                found.append(select(p.c.id).where(p.c.id == as_id))
            query = query.where(p.c.id.in_(found_by(*found)))
        query = _equal(query, (p.c.kind, where.kind))
        sorts = {
            "name": (func.lower(p.c.name), p.c.id),
            "-name": (func.lower(p.c.name).desc(), p.c.id),
            "newest": (p.c.id.desc(),),
            "oldest": (p.c.id.asc(),),
        }
        return Listing(query, p.c.id, sorts)

    async def payees_page(
        self, where: PayeeSearch, *, sort: str, limit: int, offset: int
    ) -> tuple[list[PayeeRecord], int]:
        rows, total = await self.payees(where).page(
            self.conn, sort=sort, limit=limit, offset=offset
        )
        return [_payee(r) for r in rows], total

    async def stream_payees(self, where: PayeeSearch) -> AsyncIterator[PayeeRecord]:
        async for row in self.payees(where).stream(self.conn):
            yield _payee(row)


class _Row:
    """A row mapping read as :func:`tuition.store.invoices._record` expects a row."""

    __slots__ = ("_mapping",)

    def __init__(self, mapping: Any) -> None:
        self._mapping = mapping


def _record_of(mapping: Any) -> InvoiceRequestRecord:
    return _record(_Row(mapping))
