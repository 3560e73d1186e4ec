"""Refund repository: refunds and their lines, the refund holds on payments and order
lines, and the consumption the platform reports.

Every amount that must not be exceeded is guarded by a conditional UPDATE
(``refund_reserved + :amount <= :cap``), never by reading first: concurrent refunds of one
order serialise on the row and each re-checks the committed value. Status changes are
compare-and-set.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, and_, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.domain.errors import Conflict
from tuition.domain.payments import RefundStatus
from tuition.store.db import dialect_insert, insert_ignoring_conflicts, status_change
from tuition.store.tables import consumption, order_lines, orders, payments, refund_lines, refunds


@dataclass(frozen=True, slots=True)
class RefundLineRecord:
    line_index: int
    amount: int
    creator_id: str
    creator_amount: int
    tax_amount: int
    platform_amount: int
    revokes_access: bool
    wallet_amount: int = 0  # a top-up line's credit, taken back from the wallet


@dataclass(frozen=True, slots=True)
class RefundRecord:
    id: str
    payment_id: str
    order_id: str
    customer_id: str
    amount: int
    currency: str
    status: RefundStatus
    reason: str
    destination: str
    channel_refund_no: str | None
    failure_code: str | None
    failure_message: str | None
    fee_returned: int | None
    requested_by: str
    override_by: str | None
    retry_of: str | None
    metadata: dict[str, Any] | None
    submitted_at: datetime | None
    succeeded_at: datetime | None
    failed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    lines: tuple[RefundLineRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class RefundFilter:
    order_id: str | None = None
    payment_id: str | None = None
    customer_id: str | None = None
    status: RefundStatus | None = None
    created_gte: datetime | None = None
    created_lt: datetime | None = None


@dataclass(frozen=True, slots=True)
class Consumption:
    customer_id: str
    product_id: str
    progress: Decimal
    lessons_consumed: int | None
    lessons_total: int | None
    updated_at: datetime


_FIELDS = [f for f in RefundRecord.__dataclass_fields__ if f != "lines"]
_LINE_FIELDS = list(RefundLineRecord.__dataclass_fields__)


def _refund(m: Any, lines: tuple[RefundLineRecord, ...] = ()) -> RefundRecord:
    values = {f: m[f] for f in _FIELDS}
    values["status"] = RefundStatus(values["status"])
    return RefundRecord(**values, lines=lines)


def _line(m: Any) -> RefundLineRecord:
    return RefundLineRecord(**{f: m[f] for f in _LINE_FIELDS})


class RefundRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    # --- refunds ------------------------------------------------------------------------

    async def add(self, refund: RefundRecord) -> None:
        values = {f: getattr(refund, f) for f in _FIELDS}
        values["status"] = refund.status.value
        if refund.retry_of is not None:
            # UNIQUE(retry_of): of two racing retries of one failed refund, one inserts.
            inserted = await self.conn.execute(
                insert_ignoring_conflicts(self.conn, refunds), values
            )
            if inserted.rowcount != 1:
                raise Conflict(
                    f"refund {refund.retry_of} has been retried already",
                    code="refund_not_retryable",
                )
        else:
            await self.conn.execute(insert(refunds).values(**values))
        if refund.lines:
            await self.conn.execute(
                insert(refund_lines),
                [
                    {"refund_id": refund.id, **{f: getattr(line, f) for f in _LINE_FIELDS}}
                    for line in refund.lines
                ],
            )

    async def get(self, refund_id: str, *, with_lines: bool = True) -> RefundRecord | None:
        row = (await self.conn.execute(select(refunds).where(refunds.c.id == refund_id))).first()
        if row is None:
            return None
        lines = (await self._lines([refund_id])).get(refund_id, ()) if with_lines else ()
        return _refund(row._mapping, lines)

    async def of_payment(self, payment_id: str) -> list[RefundRecord]:
        rows = await self.conn.execute(
            select(refunds).where(refunds.c.payment_id == payment_id).order_by(refunds.c.id)
        )
        return [_refund(r._mapping) for r in rows]

    async def of_order(self, order_id: str) -> list[RefundRecord]:
        rows = (
            await self.conn.execute(
                select(refunds).where(refunds.c.order_id == order_id).order_by(refunds.c.id)
            )
        ).all()
        lines = await self._lines([r.id for r in rows])
        return [_refund(r._mapping, lines.get(r.id, ())) for r in rows]

    async def find(
        self, filt: RefundFilter, *, limit: int, starting_after: str | None
    ) -> tuple[list[RefundRecord], bool]:
        query: Select[Any] = select(refunds)
        for column, value in (
            (refunds.c.order_id, filt.order_id),
            (refunds.c.payment_id, filt.payment_id),
            (refunds.c.customer_id, filt.customer_id),
            (refunds.c.status, filt.status.value if filt.status else None),
        ):
            if value is not None:
                query = query.where(column == value)
        if filt.created_gte is not None:
            query = query.where(refunds.c.created_at >= filt.created_gte)
        if filt.created_lt is not None:
            query = query.where(refunds.c.created_at < filt.created_lt)
        if starting_after is not None:
            query = query.where(refunds.c.id < starting_after)
        rows = (await self.conn.execute(query.order_by(refunds.c.id.desc()).limit(limit + 1))).all()
        page = rows[:limit]
        lines = await self._lines([r.id for r in page])
        return [_refund(r._mapping, lines.get(r.id, ())) for r in page], len(rows) > limit

    async def set_status(
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
            .values(**status_change(refunds, target.value, at, values))
        )
        return result.rowcount == 1

    async def set_fee_returned(self, refund_id: str, fee_returned: int) -> None:
        await self.conn.execute(
            update(refunds).where(refunds.c.id == refund_id).values(fee_returned=fee_returned)
        )

    async def mark_submitted(self, refund_id: str, at: datetime) -> None:
        await self.conn.execute(
            update(refunds)
            .where(refunds.c.id == refund_id, refunds.c.status == RefundStatus.PENDING.value)
            .values(submitted_at=at, updated_at=at)
        )

    async def fee_returned(self, payment_id: str) -> int:
        """What the channel gave back of the payment's fee with its succeeded refunds."""
        total = (
            await self.conn.execute(
                select(func.coalesce(func.sum(refunds.c.fee_returned), 0)).where(
                    refunds.c.payment_id == payment_id,
                    refunds.c.status == RefundStatus.SUCCEEDED.value,
                )
            )
        ).scalar_one()
        return int(total)

    async def taken_by_line(self, order_id: str) -> dict[int, tuple[int, int, int, int]]:
        """What pending and succeeded refunds of the order took from each line's creator,
        tax and platform parts; read after the holds are placed, so it is current."""
        rows = await self.conn.execute(
            select(
                refund_lines.c.line_index,
                func.sum(refund_lines.c.creator_amount),
                func.sum(refund_lines.c.tax_amount),
                func.sum(refund_lines.c.platform_amount),
                func.sum(refund_lines.c.wallet_amount),
            )
            .join(refunds, refunds.c.id == refund_lines.c.refund_id)
            .where(
                refunds.c.order_id == order_id,
                refunds.c.status != RefundStatus.FAILED.value,
            )
            .group_by(refund_lines.c.line_index)
        )
        return {int(r[0]): (int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows}

    async def pending_wallet_takebacks(self) -> dict[tuple[str, str], int]:
        """(customer, currency) -> top-up credit taken out of wallets by refunds still
        pending: out of the balance already, still a liability until the refund settles."""
        rows = await self.conn.execute(
            select(
                refunds.c.customer_id, refunds.c.currency, func.sum(refund_lines.c.wallet_amount)
            )
            .join(refunds, refunds.c.id == refund_lines.c.refund_id)
            .where(refunds.c.status == RefundStatus.PENDING.value, refund_lines.c.wallet_amount > 0)
            .group_by(refunds.c.customer_id, refunds.c.currency)
        )
        return {(r[0], r[1]): int(r[2]) for r in rows}

    async def _lines(self, refund_ids: list[str]) -> dict[str, tuple[RefundLineRecord, ...]]:
        if not refund_ids:
            return {}
        rows = await self.conn.execute(
            select(refund_lines)
            .where(refund_lines.c.refund_id.in_(refund_ids))
            .order_by(refund_lines.c.refund_id, refund_lines.c.line_index)
        )
        out: dict[str, list[RefundLineRecord]] = {}
        for row in rows:
            out.setdefault(row.refund_id, []).append(_line(row._mapping))
        return {k: tuple(v) for k, v in out.items()}

    # --- holds and counts ---------------------------------------------------------------

    async def lock_payment(self, payment_id: str, at: datetime) -> None:
        """Take the payment's row lock (a refund's first step; see services/refunds)."""
        await self.conn.execute(
            update(payments).where(payments.c.id == payment_id).values(updated_at=at)
        )

    async def hold_on_payment(self, payment_id: str, amount: int, at: datetime) -> bool:
        """Hold ``amount`` of the payment for a refund; False if that would exceed it."""
        result = await self.conn.execute(
            update(payments)
            .where(
                payments.c.id == payment_id,
                payments.c.refund_reserved + amount <= payments.c.amount,
            )
            .values(refund_reserved=payments.c.refund_reserved + amount, updated_at=at)
        )
        return result.rowcount == 1

    async def hold_on_line(
        self, order_id: str, line_index: int, amount: int, cap: int
    ) -> int | None:
        """Hold ``amount`` of a line if what is held stays within ``cap`` (the rules' limit,
        never above the line's total); the line's new hold, or None when refused."""
        row = (
            await self.conn.execute(
                update(order_lines)
                .where(
                    order_lines.c.order_id == order_id,
                    order_lines.c.line_index == line_index,
                    order_lines.c.refund_reserved + amount <= cap,
                    order_lines.c.refund_reserved + amount <= order_lines.c.total,
                )
                .values(refund_reserved=order_lines.c.refund_reserved + amount)
                .returning(order_lines.c.refund_reserved)
            )
        ).first()
        return None if row is None else int(row[0])

    async def release(self, refund: RefundRecord, at: datetime) -> None:
        """Give back the holds of a refund that failed."""
        await self.conn.execute(
            update(payments)
            .where(payments.c.id == refund.payment_id)
            .values(refund_reserved=payments.c.refund_reserved - refund.amount, updated_at=at)
        )
        for line in refund.lines:
            await self.conn.execute(
                update(order_lines)
                .where(
                    order_lines.c.order_id == refund.order_id,
                    order_lines.c.line_index == line.line_index,
                )
                .values(refund_reserved=order_lines.c.refund_reserved - line.amount)
            )

    async def count_refunded_lines(self, refund: RefundRecord) -> dict[int, int]:
        """Add a succeeded refund to its lines' refunded amounts; each line's new total."""
        out: dict[int, int] = {}
        for line in refund.lines:
            row = (
                await self.conn.execute(
                    update(order_lines)
                    .where(
                        order_lines.c.order_id == refund.order_id,
                        order_lines.c.line_index == line.line_index,
                    )
                    .values(amount_refunded=order_lines.c.amount_refunded + line.amount)
                    .returning(order_lines.c.amount_refunded)
                )
            ).first()
            assert row is not None, "a refund line names a line of its order"
            out[line.line_index] = int(row[0])
        return out

    async def count_refunded_order(
        self,
        order_id: str,
        amount: int,
        *,
        status_now: str,
        refunded_now: int,
        target: str,
        at: datetime,
    ) -> bool:
        """Compare-and-set the order's refunded amount and status from what was read."""
        result = await self.conn.execute(
            update(orders)
            .where(
                orders.c.id == order_id,
                orders.c.status == status_now,
                orders.c.amount_refunded == refunded_now,
            )
            .values(amount_refunded=refunded_now + amount, status=target, updated_at=at)
        )
        return result.rowcount == 1

    # --- consumption --------------------------------------------------------------------

    async def put_consumption(self, record: Consumption) -> None:
        values = {f: getattr(record, f) for f in Consumption.__dataclass_fields__}
        stmt = dialect_insert(self.conn, consumption).values(**values)
        await self.conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[consumption.c.customer_id, consumption.c.product_id],
                set_={k: v for k, v in values.items() if k not in ("customer_id", "product_id")},
            )
        )

    async def consumption_of(
        self, customer_id: str, product_ids: list[str]
    ) -> dict[str, Consumption]:
        if not product_ids:
            return {}
        rows = await self.conn.execute(
            select(consumption).where(
                and_(
                    consumption.c.customer_id == customer_id,
                    consumption.c.product_id.in_(product_ids),
                )
            )
        )
        return {
            r.product_id: Consumption(
                **{f: r._mapping[f] for f in Consumption.__dataclass_fields__}
            )
            for r in rows
        }
