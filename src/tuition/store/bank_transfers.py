"""Bank transfer receipts: what finance saw arrive, once per bank serial number."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.store.db import insert_ignoring_conflicts
from tuition.store.tables import bank_transfer_receipts


@dataclass(frozen=True, slots=True)
class ReceiptRecord:
    id: str
    payment_id: str
    bank_serial: str
    amount: int
    currency: str
    received_on: str
    payer: str
    source: str  # manual | statement
    recorded_by: str
    created_at: datetime


_FIELDS = list(ReceiptRecord.__dataclass_fields__)


class BankTransferRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, receipt: ReceiptRecord) -> bool:
        """Record a receipt; False if its bank serial was recorded before (UNIQUE)."""
        result = await self.conn.execute(
            insert_ignoring_conflicts(self.conn, bank_transfer_receipts),
            {f: getattr(receipt, f) for f in _FIELDS},
        )
        return result.rowcount == 1

    async def received(self, payment_id: str) -> int:
        row = (
            await self.conn.execute(
                select(func.coalesce(func.sum(bank_transfer_receipts.c.amount), 0)).where(
                    bank_transfer_receipts.c.payment_id == payment_id
                )
            )
        ).first()
        return int(row[0]) if row is not None else 0

    async def of_payment(self, payment_id: str) -> list[ReceiptRecord]:
        rows = await self.conn.execute(
            select(bank_transfer_receipts)
            .where(bank_transfer_receipts.c.payment_id == payment_id)
            .order_by(bank_transfer_receipts.c.created_at, bank_transfer_receipts.c.id)
        )
        return [ReceiptRecord(**{f: r._mapping[f] for f in _FIELDS}) for r in rows]
