"""App Store transactions: which order each one paid, claimed once by its id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.store.db import insert_ignoring_conflicts
from tuition.store.orders import EntitlementRecord
from tuition.store.tables import apple_transactions, entitlements


@dataclass(frozen=True, slots=True)
class AppleTransactionRecord:
    transaction_id: str
    original_transaction_id: str
    customer_id: str
    app_store_product_id: str
    product_id: str
    order_id: str | None
    payment_id: str | None
    refund_id: str | None
    family_shared: bool
    status: str  # received, credited (paid, or granted if family-shared), refunded, revoked
    created_at: datetime
    updated_at: datetime
    entitlement_id: str | None = None  # a family-shared transaction's grant


_FIELDS = list(AppleTransactionRecord.__dataclass_fields__)


class AppleRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def claim(self, record: AppleTransactionRecord) -> bool:
        """Record a transaction first seen; False if it was recorded before (UNIQUE)."""
        result = await self.conn.execute(
            insert_ignoring_conflicts(self.conn, apple_transactions),
            {f: getattr(record, f) for f in _FIELDS},
        )
        return result.rowcount == 1

    async def get(
        self, transaction_id: str, *, lock: bool = False
    ) -> AppleTransactionRecord | None:
        query = select(apple_transactions).where(
            apple_transactions.c.transaction_id == transaction_id
        )
        if lock and self.conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = (await self.conn.execute(query)).first()
        return (
            None if row is None else AppleTransactionRecord(**{f: row._mapping[f] for f in _FIELDS})
        )

    async def first_of(self, original_transaction_id: str) -> AppleTransactionRecord | None:
        """The earliest transaction recorded of a purchase (a subscription's first)."""
        row = (
            await self.conn.execute(
                select(apple_transactions)
                .where(apple_transactions.c.original_transaction_id == original_transaction_id)
                .order_by(apple_transactions.c.created_at, apple_transactions.c.transaction_id)
                .limit(1)
            )
        ).first()
        return (
            None if row is None else AppleTransactionRecord(**{f: row._mapping[f] for f in _FIELDS})
        )

    async def of_original(self, original_transaction_id: str) -> list[AppleTransactionRecord]:
        rows = await self.conn.execute(
            select(apple_transactions)
            .where(apple_transactions.c.original_transaction_id == original_transaction_id)
            .order_by(apple_transactions.c.created_at, apple_transactions.c.transaction_id)
        )
        return [AppleTransactionRecord(**{f: r._mapping[f] for f in _FIELDS}) for r in rows]

    async def move(
        self,
        transaction_id: str,
        *,
        expected: str,
        target: str,
        at: datetime,
        **values: str | None,
    ) -> bool:
        """Compare-and-set of the status; True for the one caller that moved it."""
        result = await self.conn.execute(
            update(apple_transactions)
            .where(
                apple_transactions.c.transaction_id == transaction_id,
                apple_transactions.c.status == expected,
            )
            .values(status=target, updated_at=at, **values)
        )
        return result.rowcount == 1

    async def name_order(
        self, transaction_id: str, order_id: str, replacing: str | None, *, at: datetime
    ) -> bool:
        """Name the transaction's order in place of ``replacing`` (None: none named yet,
        else one that expired unpaid); True for the one caller that did."""
        named = apple_transactions.c.order_id
        result = await self.conn.execute(
            update(apple_transactions)
            .where(
                apple_transactions.c.transaction_id == transaction_id,
                apple_transactions.c.status == "received",
                named.is_(None) if replacing is None else named == replacing,
            )
            .values(order_id=order_id, updated_at=at)
        )
        return result.rowcount == 1

    async def follow_expiry(self, order_id: str, *, until: datetime) -> int:
        """Set the end of the order's membership grant (its only expiring one) to the
        end Apple gives; the number of grants moved."""
        result = await self.conn.execute(
            update(entitlements)
            .where(
                entitlements.c.order_id == order_id,
                entitlements.c.expires_at.is_not(None),
                entitlements.c.source_product_id.is_(None),
                entitlements.c.revoked_at.is_(None),
            )
            .values(expires_at=until)
        )
        return max(result.rowcount, 0)

    async def revoke_grant(self, entitlement_id: str, *, at: datetime) -> EntitlementRecord | None:
        """End one grant still in force; the grant, for the one caller that ended it."""
        row = (
            await self.conn.execute(
                update(entitlements)
                .where(entitlements.c.id == entitlement_id, entitlements.c.revoked_at.is_(None))
                .values(revoked_at=at)
                .returning(*entitlements.c)
            )
        ).first()
        if row is None:
            return None
        return EntitlementRecord(**{f: row._mapping[f] for f in _GRANT_FIELDS})


_GRANT_FIELDS = list(EntitlementRecord.__dataclass_fields__)
