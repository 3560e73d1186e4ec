"""Payment repository; every status change is a compare-and-set (refunds: store/refunds.py)."""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Select,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.domain.payments import PaymentStatus
from tuition.store.db import status_change
from tuition.store.direct import Direct
from tuition.store.staged import StagedWrites
from tuition.store.tables import jobs, payments


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
    refund_reserved: int  # held by pending and succeeded refunds
    channel_trade_no: str | None
    next_action: dict[str, Any] | None
    failure_code: str | None
    failure_message: str | None
    duplicate_of: str | None
    succeeded_at: datetime | None
    closed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    wallet_part_id: str | None = None  # split tender: the balance part (services/tender.py)


def new_attempt(
    *,
    payment_id: str,
    order_id: str,
    customer_id: str,
    channel: str,
    method: str,
    app_id: str,
    amount: int,
    currency: str,
    at: datetime,
    wallet_part_id: str | None = None,
) -> PaymentRecord:
    """A payment attempt as it is first stored: ``created``, nothing settled yet."""
    return PaymentRecord(
        id=payment_id,
        order_id=order_id,
        customer_id=customer_id,
        channel=channel,
        method=method,
        app_id=app_id,
        status=PaymentStatus.CREATED,
        amount=amount,
        currency=currency,
        fee=None,
        amount_refunded=0,
        refund_reserved=0,
        channel_trade_no=None,
        next_action=None,
        failure_code=None,
        failure_message=None,
        duplicate_of=None,
        succeeded_at=None,
        closed_at=None,
        created_at=at,
        updated_at=at,
        wallet_part_id=wallet_part_id,
    )


@dataclass(frozen=True, slots=True)
class PaymentFilter:
    customer_id: str | None = None
    order_id: str | None = None
    status: PaymentStatus | None = None
    channel: str | None = None
    created_gte: datetime | None = None
    created_lt: datetime | None = None


_PAYMENT_FIELDS = list(PaymentRecord.__dataclass_fields__)


def _payment(m: Any) -> PaymentRecord:
    values = {f: m[f] for f in _PAYMENT_FIELDS}
    values["status"] = PaymentStatus(values["status"])
    return PaymentRecord(**values)


class PaymentRepository:
    def __init__(self, conn: AsyncConnection, staged: StagedWrites) -> None:
        self.conn, self.staged = conn, staged

    async def add(self, payment: PaymentRecord) -> None:
        values = {f: getattr(payment, f) for f in _PAYMENT_FIELDS}
        values["status"] = payment.status.value
        await self.conn.execute(_INSERT_PAYMENT, values)

    async def add_with_job(self, payment: PaymentRecord, *, kind: str, run_at: datetime) -> None:
        """Stage the payment and its ``kind:<id>`` job at ``run_at`` (they go out with the
        commit, so the job costs the payment flow no round trip)."""
        values = {f: getattr(payment, f) for f in _PAYMENT_FIELDS}
        values["status"] = payment.status.value
        self.staged.insert(payments, values)
        self.staged.insert(
            jobs,
            {
                "kind": kind,
                "key": f"{kind}:{payment.id}",
                "status": "queued",
                "attempts": 0,
                "run_at": run_at,
                "created_at": payment.created_at,
                "updated_at": payment.created_at,
            },
            ignore_conflicts=True,
        )

    async def get(self, payment_id: str) -> PaymentRecord | None:
        row = await _SELECT_PAYMENT.first(self.conn, {"payment_id": payment_id})
        return None if row is None else _payment(row)

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
        changed = await _compare_and_set(frozenset(expected), returning=False).rowcount(
            self.conn,
            {"where_id": payment_id, **status_change(payments, target.value, at, values)},
        )
        return changed == 1

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
        row = await _compare_and_set(frozenset(expected), returning=True).first(
            self.conn,
            {"where_id": payment_id, **status_change(payments, target.value, at, values)},
        )
        return None if row is None else _payment(row)

    async def mark_duplicate(self, payment_id: str, *, of_order: str) -> None:
        """Flag a payment that succeeded for an order that no longer wanted it."""
        await self.conn.execute(
            update(payments).where(payments.c.id == payment_id).values(duplicate_of=of_order)
        )

    async def add_refunded(self, payment_id: str, amount: int, at: datetime) -> int | None:
        """Count a refund against the payment: its new refunded total, or None if that
        would exceed the amount."""
        row = (
            await self.conn.execute(
                update(payments)
                .where(
                    payments.c.id == payment_id,
                    payments.c.amount_refunded + amount <= payments.c.amount,
                )
                .values(amount_refunded=payments.c.amount_refunded + amount, updated_at=at)
                .returning(payments.c.amount_refunded)
            )
        ).first()
        return None if row is None else int(row[0])

    async def paying(self, order_id: str) -> PaymentRecord | None:
        """The payment that paid the order (not a duplicate that arrived after it)."""
        row = (
            await self.conn.execute(
                select(payments)
                .where(
                    payments.c.order_id == order_id,
                    payments.c.status == PaymentStatus.SUCCEEDED.value,
                    payments.c.duplicate_of.is_(None),
                )
                # A split order's channel payment before its balance part.
                .order_by(case((payments.c.channel == "wallet", 1), else_=0), payments.c.id)
                .limit(1)
            )
        ).first()
        return None if row is None else _payment(row._mapping)

    async def split_of(self, payment_id: str) -> str | None:
        """The channel payment whose balance part ``payment_id`` is, if it is one."""
        row = (
            await self.conn.execute(
                select(payments.c.id).where(payments.c.wallet_part_id == payment_id)
            )
        ).first()
        return None if row is None else str(row[0])

    async def held_parts(self) -> dict[tuple[str, str], int]:
        """Balance parts of split payments held now, by (customer, currency)."""
        rows = await self.conn.execute(
            select(payments.c.customer_id, payments.c.currency, func.sum(payments.c.amount))
            .where(
                payments.c.channel == "wallet",
                payments.c.status == PaymentStatus.PENDING.value,
            )
            .group_by(payments.c.customer_id, payments.c.currency)
        )
        return {(r[0], r[1]): int(r[2] or 0) for r in rows}

    async def open_for_order(self, order_id: str) -> list[PaymentRecord]:
        """The order's open channel attempts (a held balance part ends with its
        channel payment, so it is not listed)."""
        rows = await self.conn.execute(
            select(payments).where(
                payments.c.order_id == order_id,
                payments.c.status.in_([PaymentStatus.CREATED.value, PaymentStatus.PENDING.value]),
                payments.c.channel != "wallet",
            )
        )
        return [_payment(r._mapping) for r in rows]


# The payment flow's statements, built once (see ``store/db.py`` on prebuilt statements).
# In an UPDATE the SET columns are the parameters named after columns; WHERE parameters
# are named ``where_*`` so they never collide with them.
_INSERT_PAYMENT = insert(payments)
_SELECT_PAYMENT = Direct(select(payments).where(payments.c.id == bindparam("payment_id")))


@functools.cache
def _compare_and_set(expected: frozenset[PaymentStatus], *, returning: bool) -> Direct:
    """``UPDATE payments … WHERE id = :where_id AND status is one of expected``, one
    statement per set of expected statuses (there are a handful), which carries their
    values, so no ``IN`` list is expanded on every execution."""
    if not expected:
        raise ValueError("a compare-and-set needs at least one expected status")
    stmt = update(payments).where(
        payments.c.id == bindparam("where_id"),
        or_(*(payments.c.status == status.value for status in sorted(expected))),
    )
    return Direct(stmt.returning(*payments.c) if returning else stmt)
