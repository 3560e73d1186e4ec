"""The read side of a buyer's history: one feed over orders, payments, refunds and
wallet transactions, and the rows that hide entries from it.

The feed is a ``UNION ALL`` of one SELECT per kind, each narrowed to the customer, then
ordered by ``(created_at, id)`` newest first. Ids are prefixed by kind (``ord_``,
``pay_``, ``re_``, ``wtx_``) and so unique across kinds: ``(created_at, id)`` is a total
order, and a page that starts strictly after the last one's key neither repeats nor
skips an entry, whatever is added at the top meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    String,
    and_,
    cast,
    literal,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select

from tuition.store.db import insert_ignoring_conflicts
from tuition.store.orders import LineRecord
from tuition.store.tables import (
    history_hidden,
    order_lines,
    orders,
    payments,
    refunds,
    wallet_transactions,
)

KINDS = ("order", "payment", "refund", "wallet_transaction")
# A wallet transaction is final when written; the feed calls it succeeded.
WALLET_STATUS = "succeeded"


@dataclass(frozen=True, slots=True)
class HistoryRow:
    id: str
    kind: str
    created_at: datetime
    status: str
    amount: int  # signed as stored: a wallet debit is negative
    currency: str
    order_id: str | None
    payment_id: str | None
    channel: str | None
    note: str | None  # a wallet transaction's description
    cause_id: str | None  # a wallet transaction's cause
    hidden: bool


@dataclass(frozen=True, slots=True)
class FeedQuery:
    customer_id: str
    limit: int
    after: tuple[datetime, str] | None = None
    kind: str | None = None
    status: str | None = None
    created_gte: datetime | None = None
    created_lt: datetime | None = None
    include_hidden: bool = False
    entry_id: str | None = None


def _text(value: str | None) -> Any:
    return cast(null(), String) if value is None else literal(value, String)


def _selects(customer_id: str, kinds: Sequence[str]) -> list[Select[Any]]:
    parts: list[Select[Any]] = []
    if "order" in kinds:
        parts.append(
            _named(
                orders.c.id,
                _text("order"),
                orders.c.created_at,
                orders.c.status,
                orders.c.total,
                orders.c.currency,
                orders.c.id,
                _text(None),
                _text(None),
                _text(None),
                _text(None),
            ).where(orders.c.customer_id == customer_id)
        )
    if "payment" in kinds:
        parts.append(
            _named(
                payments.c.id,
                _text("payment"),
                payments.c.created_at,
                payments.c.status,
                payments.c.amount,
                payments.c.currency,
                payments.c.order_id,
                payments.c.id,
                payments.c.channel,
                _text(None),
                _text(None),
            ).where(payments.c.customer_id == customer_id)
        )
    if "refund" in kinds:
        parts.append(
            _named(
                refunds.c.id,
                _text("refund"),
                refunds.c.created_at,
                refunds.c.status,
                refunds.c.amount,
                refunds.c.currency,
                refunds.c.order_id,
                refunds.c.payment_id,
                refunds.c.destination,
                _text(None),
                _text(None),
            ).where(refunds.c.customer_id == customer_id)
        )
    if "wallet_transaction" in kinds:
        parts.append(
            _named(
                wallet_transactions.c.id,
                _text("wallet_transaction"),
                wallet_transactions.c.created_at,
                _text(WALLET_STATUS),
                cast(wallet_transactions.c.amount, BigInteger),
                wallet_transactions.c.currency,
                _text(None),
                _text(None),
                _text(None),
                wallet_transactions.c.description,
                wallet_transactions.c.cause_id,
            ).where(wallet_transactions.c.customer_id == customer_id)
        )
    return parts


_NAMES = (
    "id",
    "kind",
    "created_at",
    "status",
    "amount",
    "currency",
    "order_id",
    "payment_id",
    "channel",
    "note",
    "cause_id",
)


def _named(*columns: Any) -> Select[Any]:
    """A SELECT of the feed's columns, each named: whichever kind comes first in the
    UNION names its columns."""
    return select(*(c.label(n) for c, n in zip(columns, _NAMES, strict=True)))


class HistoryRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def feed(self, q: FeedQuery) -> tuple[list[HistoryRow], bool]:
        """A page of the customer's entries, newest first, and whether more follow."""
        kinds = KINDS if q.kind is None else (q.kind,)
        feed = union_all(*_selects(q.customer_id, kinds)).subquery("feed")
        hidden = and_(
            history_hidden.c.customer_id == q.customer_id,
            history_hidden.c.entry_id == feed.c.id,
            history_hidden.c.hidden.is_(True),
        )
        query = select(feed, (history_hidden.c.entry_id.is_not(None)).label("hidden")).select_from(
            feed.outerjoin(history_hidden, hidden)
        )
        if not q.include_hidden:
            query = query.where(history_hidden.c.entry_id.is_(None))
        if q.entry_id is not None:
            query = query.where(feed.c.id == q.entry_id)
        if q.status is not None:
            query = query.where(feed.c.status == q.status)
        if q.created_gte is not None:
            query = query.where(feed.c.created_at >= q.created_gte)
        if q.created_lt is not None:
            query = query.where(feed.c.created_at < q.created_lt)
        if q.after is not None:
            at, entry_id = q.after
            query = query.where(
                or_(
                    feed.c.created_at < at,
                    and_(feed.c.created_at == at, feed.c.id < entry_id),
                )
            )
        query = query.order_by(feed.c.created_at.desc(), feed.c.id.desc()).limit(q.limit + 1)
        rows = [
            HistoryRow(
                id=r.id,
                kind=r.kind,
                created_at=r.created_at,
                status=r.status,
                amount=int(r.amount),
                currency=r.currency,
                order_id=r.order_id,
                payment_id=r.payment_id,
                channel=r.channel,
                note=r.note,
                cause_id=r.cause_id,
                hidden=bool(r.hidden),
            )
            for r in await self.conn.execute(query)
        ]
        return rows[: q.limit], len(rows) > q.limit

    async def entry(self, customer_id: str, entry_id: str) -> HistoryRow | None:
        """One entry of the customer's history, hidden or not."""
        kind = kind_of(entry_id)
        if kind is None:
            return None
        rows, _ = await self.feed(
            FeedQuery(
                customer_id=customer_id, limit=1, kind=kind, include_hidden=True, entry_id=entry_id
            )
        )
        return rows[0] if rows else None

    async def lines_of(self, order_ids: Sequence[str]) -> dict[str, list[LineRecord]]:
        if not order_ids:
            return {}
        rows = await self.conn.execute(
            select(order_lines)
            .where(order_lines.c.order_id.in_(sorted(set(order_ids))))
            .order_by(order_lines.c.order_id, order_lines.c.line_index)
        )
        out: dict[str, list[LineRecord]] = {}
        for r in rows:
            m = r._mapping
            out.setdefault(m["order_id"], []).append(
                LineRecord(**{f: m[f] for f in LineRecord.__dataclass_fields__})
            )
        return out

    async def hide(
        self, customer_id: str, entry_id: str, kind: str, *, by: str, at: datetime
    ) -> bool:
        """Hide an entry; True when this call hid it (False: it was hidden already)."""
        inserted = await self.conn.execute(
            insert_ignoring_conflicts(self.conn, history_hidden),
            {
                "customer_id": customer_id,
                "entry_id": entry_id,
                "kind": kind,
                "hidden": True,
                "hidden_by": by,
                "hidden_at": at,
                "unhidden_by": None,
                "unhidden_at": None,
                "updated_at": at,
            },
        )
        if inserted.rowcount == 1:
            return True
        changed = await self.conn.execute(
            update(history_hidden)
            .where(
                history_hidden.c.customer_id == customer_id,
                history_hidden.c.entry_id == entry_id,
                history_hidden.c.hidden.is_(False),
            )
            .values(hidden=True, hidden_by=by, hidden_at=at, updated_at=at)
        )
        return changed.rowcount == 1

    async def unhide(self, customer_id: str, entry_id: str, *, by: str, at: datetime) -> bool:
        """Show an entry again; True when this call changed it (compare-and-set)."""
        changed = await self.conn.execute(
            update(history_hidden)
            .where(
                history_hidden.c.customer_id == customer_id,
                history_hidden.c.entry_id == entry_id,
                history_hidden.c.hidden.is_(True),
            )
            .values(hidden=False, unhidden_by=by, unhidden_at=at, updated_at=at)
        )
        return changed.rowcount == 1

    async def visibility(self, customer_id: str, entry_id: str) -> dict[str, Any] | None:
        row = (
            await self.conn.execute(
                select(history_hidden).where(
                    history_hidden.c.customer_id == customer_id,
                    history_hidden.c.entry_id == entry_id,
                )
            )
        ).first()
        return None if row is None else dict(row._mapping)


_KIND_BY_PREFIX = {"ord": "order", "pay": "payment", "re": "refund", "wtx": "wallet_transaction"}


def kind_of(entry_id: str) -> str | None:
    """The history kind of an id by its prefix, or None for an id of no kind we show."""
    prefix, sep, _ = entry_id.partition("_")
    return _KIND_BY_PREFIX.get(prefix) if sep else None
