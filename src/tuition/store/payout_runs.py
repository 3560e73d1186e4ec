"""Payout run repository: a run proposed once per schedule and period (UNIQUE), its
items (what each payee would get), and the approval, a compare-and-set from proposed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.store.db import insert_ignoring_conflicts
from tuition.store.tables import payout_run_items, payout_runs


@dataclass(frozen=True, slots=True)
class PayoutRunRecord:
    id: str
    schedule: str
    period: str
    status: str  # proposed | approved
    proposed_by: str
    approved_by: str | None
    approved_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class RunItemRecord:
    run_id: str
    payee_id: str
    currency: str
    amount: int  # gross, what the payee had available when proposed
    tax_estimate: int  # what would be withheld, as of the proposal
    status: str  # proposed | created | skipped
    reason: str | None
    payout_id: str | None
    updated_at: datetime
    # The payee's payout details as proposed, which approval pays to (None only in runs
    # proposed before items kept them, until approved).
    payout_method: str | None = None
    payout_account: str | None = None

    def __repr__(self) -> str:  # the account stays out of logs and tracebacks
        return f"RunItemRecord(run_id={self.run_id!r}, payee_id={self.payee_id!r})"


_RUN_FIELDS = list(PayoutRunRecord.__dataclass_fields__)
_ITEM_FIELDS = list(RunItemRecord.__dataclass_fields__)


def _run(row: Any) -> PayoutRunRecord:
    return PayoutRunRecord(**{f: row._mapping[f] for f in _RUN_FIELDS})


def _item(row: Any) -> RunItemRecord:
    return RunItemRecord(**{f: row._mapping[f] for f in _ITEM_FIELDS})


class PayoutRunRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, run: PayoutRunRecord, items: list[RunItemRecord]) -> bool:
        """Insert the run and its items; False (nothing written) if its period has one."""
        result = await self.conn.execute(
            insert_ignoring_conflicts(self.conn, payout_runs),
            {f: getattr(run, f) for f in _RUN_FIELDS},
        )
        if result.rowcount != 1:
            return False
        if items:
            await self.conn.execute(
                payout_run_items.insert(), [{f: getattr(i, f) for f in _ITEM_FIELDS} for i in items]
            )
        return True

    async def get(self, run_id: str) -> PayoutRunRecord | None:
        row = (
            await self.conn.execute(select(payout_runs).where(payout_runs.c.id == run_id))
        ).first()
        return None if row is None else _run(row)

    async def of_period(self, schedule: str, period: str) -> PayoutRunRecord | None:
        row = (
            await self.conn.execute(
                select(payout_runs).where(
                    payout_runs.c.schedule == schedule, payout_runs.c.period == period
                )
            )
        ).first()
        return None if row is None else _run(row)

    async def listing(self, *, limit: int) -> list[PayoutRunRecord]:
        rows = await self.conn.execute(
            select(payout_runs).order_by(payout_runs.c.id.desc()).limit(limit)
        )
        return [_run(r) for r in rows]

    async def items(self, run_id: str) -> list[RunItemRecord]:
        rows = await self.conn.execute(
            select(payout_run_items)
            .where(payout_run_items.c.run_id == run_id)
            .order_by(payout_run_items.c.payee_id, payout_run_items.c.currency)
        )
        return [_item(r) for r in rows]

    async def approve(self, run_id: str, *, operator: str, at: datetime) -> bool:
        """Compare-and-set proposed -> approved, recording who and when."""
        result = await self.conn.execute(
            update(payout_runs)
            .where(payout_runs.c.id == run_id, payout_runs.c.status == "proposed")
            .values(status="approved", approved_by=operator, approved_at=at, updated_at=at)
        )
        return result.rowcount == 1

    async def snapshot_accounts(self, run_id: str, accounts: dict[str, tuple[str, str]]) -> None:
        """Record each item's payee payout details (method, account) as approved."""
        for payee_id, (method, account) in sorted(accounts.items()):
            await self.conn.execute(
                update(payout_run_items)
                .where(payout_run_items.c.run_id == run_id, payout_run_items.c.payee_id == payee_id)
                .values(payout_method=method, payout_account=account)
            )

    async def settle_item(
        self,
        item: RunItemRecord,
        *,
        status: str,
        payout_id: str | None,
        reason: str | None,
        at: datetime,
    ) -> bool:
        """Compare-and-set an item from what it was read as (status and payout)."""
        result = await self.conn.execute(
            update(payout_run_items)
            .where(
                payout_run_items.c.run_id == item.run_id,
                payout_run_items.c.payee_id == item.payee_id,
                payout_run_items.c.currency == item.currency,
                payout_run_items.c.status == item.status,
                payout_run_items.c.payout_id.is_(None)
                if item.payout_id is None
                else payout_run_items.c.payout_id == item.payout_id,
            )
            .values(status=status, payout_id=payout_id, reason=reason, updated_at=at)
        )
        return result.rowcount == 1
