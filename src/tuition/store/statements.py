"""Read side of payee statements: a payee's account movements by journal entry, and the
orders its payments and refunds belong to."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.store.tables import journal_entries, payments, postings, refunds


async def movements(
    conn: AsyncConnection, keys: Sequence[str], *, start: datetime, end: datetime
) -> tuple[int, list[tuple[str, datetime, int]]]:
    """The sum of ``keys``' postings before ``start``, and each entry's net posting to
    them in ``[start, end)`` as (source, occurred at, amount), in posting order."""
    opening = await conn.execute(
        select(func.coalesce(func.sum(postings.c.amount), 0))
        .join(journal_entries, journal_entries.c.seq == postings.c.entry_seq)
        .where(postings.c.account_key.in_(list(keys)), journal_entries.c.occurred_at < start)
    )
    rows = await conn.execute(
        select(
            journal_entries.c.source,
            journal_entries.c.occurred_at,
            func.sum(postings.c.amount),
        )
        .join(journal_entries, journal_entries.c.seq == postings.c.entry_seq)
        .where(
            postings.c.account_key.in_(list(keys)),
            journal_entries.c.occurred_at >= start,
            journal_entries.c.occurred_at < end,
        )
        .group_by(journal_entries.c.seq, journal_entries.c.source, journal_entries.c.occurred_at)
        .order_by(journal_entries.c.seq)
    )
    return int(opening.scalar_one()), [(s, at, int(total)) for s, at, total in rows]


async def orders_of(
    conn: AsyncConnection, payment_ids: Sequence[str], refund_ids: Sequence[str]
) -> dict[str, str]:
    """payment or refund id -> its order id."""
    found: dict[str, str] = {}
    if payment_ids:
        rows = await conn.execute(
            select(payments.c.id, payments.c.order_id).where(payments.c.id.in_(list(payment_ids)))
        )
        found.update({r.id: r.order_id for r in rows})
    if refund_ids:
        rows = await conn.execute(
            select(refunds.c.id, refunds.c.order_id).where(refunds.c.id.in_(list(refund_ids)))
        )
        found.update({r.id: r.order_id for r in rows})
    return found
