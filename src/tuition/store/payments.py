"""Payment and refund repositories; every status change is a compare-and-set."""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Update, bindparam, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.domain.payments import PaymentStatus, RefundStatus
from tuition.store.db import status_change
from tuition.store.tables import payments, refunds


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    id: str
    order_id: str
    customer_id: str
    channel: str
    method: str
    app_id: str
    status: PaymentStatus
    amount: int
    currency: str
    fee: int | None
    amount_refunded: int
    channel_trade_no: str | None
    next_action: dict[str, Any] | None
    failure_code: str | None
    failure_message: str | None
    duplicate_of: str | None
    succeeded_at: datetime | None
    closed_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class RefundRecord:
    id: str
    payment_id: str
    order_id: str
    amount: int
    currency: str
    status: RefundStatus
    reason: str
    channel_refund_no: str | None
    failure_message: str | None
    succeeded_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PaymentFilter:
    customer_id: str | None = None
    order_id: str | None = None
    status: PaymentStatus | None = None
    channel: str | None = None
    created_gte: datetime | None = None
    created_lt: datetime | None = None


_PAYMENT_FIELDS = list(PaymentRecord.__dataclass_fields__)
_REFUND_FIELDS = list(RefundRecord.__dataclass_fields__)


def _payment(m: Any) -> PaymentRecord:
    values = {f: m[f] for f in _PAYMENT_FIELDS}
    values["status"] = PaymentStatus(values["status"])
    return PaymentRecord(**values)


def _refund(m: Any) -> RefundRecord:
    values = {f: m[f] for f in _REFUND_FIELDS}
    values["status"] = RefundStatus(values["status"])
    return RefundRecord(**values)


class PaymentRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, payment: PaymentRecord) -> None:
        values = {f: getattr(payment, f) for f in _PAYMENT_FIELDS}
        values["status"] = payment.status.value
        await self.conn.execute(_INSERT_PAYMENT, values)

    async def get(self, payment_id: str) -> PaymentRecord | None:
        row = (await self.conn.execute(_SELECT_PAYMENT, {"payment_id": payment_id})).first()
        return None if row is None else _payment(row._mapping)

    async def find(
        self, filt: PaymentFilter, *, limit: int, starting_after: str | None
    ) -> tuple[list[PaymentRecord], bool]:
        query: Select[Any] = select(payments)
        for column, value in (
            (payments.c.customer_id, filt.customer_id),
            (payments.c.order_id, filt.order_id),
            (payments.c.status, filt.status.value if filt.status else None),
            (payments.c.channel, filt.channel),
        ):
            if value is not None:
                query = query.where(column == value)
        if filt.created_gte is not None:
            query = query.where(payments.c.created_at >= filt.created_gte)
        if filt.created_lt is not None:
            query = query.where(payments.c.created_at < filt.created_lt)
        if starting_after is not None:
            query = query.where(payments.c.id < starting_after)
        rows = (
            await self.conn.execute(query.order_by(payments.c.id.desc()).limit(limit + 1))
        ).all()
        return [_payment(r._mapping) for r in rows[:limit]], len(rows) > limit

    async def set_status(
        self,
        payment_id: str,
        *,
        expected: Collection[PaymentStatus],
        target: PaymentStatus,
        at: datetime,
        **values: Any,
    ) -> bool:
        """Compare-and-set from any of ``expected``; True for the one caller that moved it."""
        result = await self.conn.execute(
            _compare_and_set(frozenset(expected), returning=False),
            {"where_id": payment_id, **status_change(payments, target.value, at, values)},
        )
        return result.rowcount == 1

    async def set_status_returning(
        self,
        payment_id: str,
        *,
        expected: Collection[PaymentStatus],
        target: PaymentStatus,
        at: datetime,
        **values: Any,
    ) -> PaymentRecord | None:
        """``set_status`` that returns the row as written (``UPDATE … RETURNING``), in the
        same round trip; None for a caller whose expected status no longer held."""
        row = (
            await self.conn.execute(
                _compare_and_set(frozenset(expected), returning=True),
                {"where_id": payment_id, **status_change(payments, target.value, at, values)},
            )
        ).first()
        return None if row is None else _payment(row._mapping)

    async def mark_duplicate(self, payment_id: str, *, of_order: str) -> None:
        """Flag a payment that succeeded for an order that no longer wanted it."""
        await self.conn.execute(
            update(payments).where(payments.c.id == payment_id).values(duplicate_of=of_order)
        )

    async def add_refunded(self, payment_id: str, amount: int, at: datetime) -> bool:
        """Count a refund against the payment; False if it would exceed the amount."""
        result = await self.conn.execute(
            update(payments)
            .where(
                payments.c.id == payment_id,
                payments.c.amount_refunded + amount <= payments.c.amount,
            )
            .values(amount_refunded=payments.c.amount_refunded + amount, updated_at=at)
        )
        return result.rowcount == 1

    async def pending_before(self, cutoff: datetime, limit: int) -> list[PaymentRecord]:
        rows = await self.conn.execute(
            select(payments)
            .where(
                payments.c.status.in_([PaymentStatus.CREATED.value, PaymentStatus.PENDING.value]),
                payments.c.created_at <= cutoff,
            )
            .order_by(payments.c.created_at)
            .limit(limit)
        )
        return [_payment(r._mapping) for r in rows]

    async def open_for_order(self, order_id: str) -> list[PaymentRecord]:
        rows = await self.conn.execute(
            select(payments).where(
                payments.c.order_id == order_id,
                payments.c.status.in_([PaymentStatus.CREATED.value, PaymentStatus.PENDING.value]),
            )
        )
        return [_payment(r._mapping) for r in rows]

    # --- refunds ------------------------------------------------------------------------

    async def add_refund(self, refund: RefundRecord) -> None:
        values = {f: getattr(refund, f) for f in _REFUND_FIELDS}
        values["status"] = refund.status.value
        await self.conn.execute(insert(refunds).values(**values))

    async def get_refund(self, refund_id: str) -> RefundRecord | None:
        row = (await self.conn.execute(select(refunds).where(refunds.c.id == refund_id))).first()
        return None if row is None else _refund(row._mapping)

    async def refunds_of(self, payment_id: str) -> list[RefundRecord]:
        rows = await self.conn.execute(
            select(refunds).where(refunds.c.payment_id == payment_id).order_by(refunds.c.id)
        )
        return [_refund(r._mapping) for r in rows]

    async def pending_refunds(self, limit: int) -> list[RefundRecord]:
        rows = await self.conn.execute(
            select(refunds)
            .where(refunds.c.status == RefundStatus.PENDING.value)
            .order_by(refunds.c.id)
            .limit(limit)
        )
        return [_refund(r._mapping) for r in rows]

    async def set_refund_status(
        self,
        refund_id: str,
        *,
        expected: RefundStatus,
        target: RefundStatus,
        at: datetime,
        **values: Any,
    ) -> bool:
        result = await self.conn.execute(
            update(refunds)
            .where(refunds.c.id == refund_id, refunds.c.status == expected.value)
            .values(status=target.value, updated_at=at, **values)
        )
        return result.rowcount == 1


# The payment flow's statements, built once (see ``store/db.py`` on prebuilt statements).
# In an UPDATE the SET columns are the parameters named after columns; WHERE parameters
# are named ``where_*`` so they never collide with them.
_INSERT_PAYMENT = insert(payments)
_SELECT_PAYMENT = select(payments).where(payments.c.id == bindparam("payment_id"))


@functools.cache
def _compare_and_set(expected: frozenset[PaymentStatus], *, returning: bool) -> Update:
    """``UPDATE payments … WHERE id = :where_id AND status is one of expected``, one
    statement per set of expected statuses (there are a handful), which carries their
    values, so no ``IN`` list is expanded on every execution."""
    if not expected:
        raise ValueError("a compare-and-set needs at least one expected status")
    stmt = update(payments).where(
        payments.c.id == bindparam("where_id"),
        or_(*(payments.c.status == status.value for status in sorted(expected))),
    )
    return stmt.returning(*payments.c) if returning else stmt
