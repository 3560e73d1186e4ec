"""Wallet repository: balances, lots and the transaction log.

A balance changes only by conditional UPDATE (``balance >= :amount`` to spend), so it
never goes below zero however many spends race; the UPDATE takes the balance's row lock,
which also orders the lot changes that follow it in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.domain.coins import CoinLot
from tuition.domain.wallet import Lot
from tuition.store.db import dialect_insert, insert_ignoring_conflicts
from tuition.store.tables import (
    wallet_balances,
    wallet_lots,
    wallet_shortfalls,
    wallet_transactions,
)


@dataclass(frozen=True, slots=True)
class WalletTransaction:
    id: str
    customer_id: str
    currency: str
    amount: int
    balance_after: int
    cause: str
    cause_id: str
    description: str
    lots: list[dict[str, Any]]
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LotRecord:
    id: str
    customer_id: str
    currency: str
    kind: str
    source: str
    amount: int
    remaining: int
    created_at: datetime
    # A coin lot's money value and what of it is not yet recognised (None: money).
    value_currency: str | None = None
    value: int | None = None
    value_remaining: int | None = None

    @property
    def bonus(self) -> bool:
        return self.kind == "bonus"


@dataclass(frozen=True, slots=True)
class Shortfall:
    """What a wallet owes after an unrefusable refund took back a spent top-up."""

    id: str
    customer_id: str
    currency: str
    amount: int  # units of ``currency`` (coins or money) short
    value_currency: str
    value: int  # their money value
    cause_id: str  # "<refund id>:<line index>"
    created_at: datetime


_SHORTFALL_FIELDS = list(Shortfall.__dataclass_fields__)
_TX_FIELDS = list(WalletTransaction.__dataclass_fields__)
_LOT_FIELDS = list(LotRecord.__dataclass_fields__)


class WalletRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def credit(self, customer_id: str, currency: str, amount: int, at: datetime) -> int:
        """Add to the balance (made on first use); the balance after."""
        stmt = dialect_insert(self.conn, wallet_balances).values(
            customer_id=customer_id, currency=currency, balance=amount, updated_at=at
        )
        row = (
            await self.conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[wallet_balances.c.customer_id, wallet_balances.c.currency],
                    set_={"balance": wallet_balances.c.balance + amount, "updated_at": at},
                ).returning(wallet_balances.c.balance)
            )
        ).first()
        assert row is not None
        return int(row[0])

    async def debit(self, customer_id: str, currency: str, amount: int, at: datetime) -> int | None:
        """Take from the balance if it covers ``amount``; the balance after, else None."""
        row = (
            await self.conn.execute(
                update(wallet_balances)
                .where(
                    wallet_balances.c.customer_id == customer_id,
                    wallet_balances.c.currency == currency,
                    wallet_balances.c.balance >= amount,
                )
                .values(balance=wallet_balances.c.balance - amount, updated_at=at)
                .returning(wallet_balances.c.balance)
            )
        ).first()
        return None if row is None else int(row[0])

    async def balances(self, customer_id: str) -> dict[str, int]:
        rows = await self.conn.execute(
            select(wallet_balances.c.currency, wallet_balances.c.balance)
            .where(wallet_balances.c.customer_id == customer_id)
            .order_by(wallet_balances.c.currency)
        )
        return {r.currency: int(r.balance) for r in rows}

    async def all_balances(self) -> dict[tuple[str, str], int]:
        rows = await self.conn.execute(select(wallet_balances))
        return {(r.customer_id, r.currency): int(r.balance) for r in rows}

    async def add_lot(self, lot: LotRecord) -> bool:
        """Record a credited lot; False if its source was credited before (a retry)."""
        result = await self.conn.execute(
            insert_ignoring_conflicts(self.conn, wallet_lots),
            {f: getattr(lot, f) for f in _LOT_FIELDS},
        )
        return result.rowcount == 1

    async def open_lots(self, customer_id: str, currency: str) -> list[Lot]:
        """Lots with something left, oldest first (the order they are spent in)."""
        rows = await self.conn.execute(
            select(wallet_lots.c.id, wallet_lots.c.remaining)
            .where(
                wallet_lots.c.customer_id == customer_id,
                wallet_lots.c.currency == currency,
                wallet_lots.c.remaining > 0,
            )
            .order_by(wallet_lots.c.created_at, wallet_lots.c.id)
        )
        return [Lot(r.id, int(r.remaining)) for r in rows]

    async def open_coin_lots(self, customer_id: str, currency: str) -> list[CoinLot]:
        """Coin lots with coins left, oldest first, with their unrecognised value."""
        rows = await self.conn.execute(
            select(wallet_lots)
            .where(
                wallet_lots.c.customer_id == customer_id,
                wallet_lots.c.currency == currency,
                wallet_lots.c.remaining > 0,
            )
            .order_by(wallet_lots.c.created_at, wallet_lots.c.id)
        )
        return [
            CoinLot(
                r.id,
                r.kind == "bonus",
                int(r.amount),
                int(r.remaining),
                int(r.value or 0),
                int(r.value_remaining or 0),
                r.value_currency or "",
            )
            for r in rows
        ]

    async def take_coins(self, lot_id: str, coins: int, value_remaining: int) -> None:
        """Spend ``coins`` of a coin lot, leaving ``value_remaining`` unrecognised."""
        result = await self.conn.execute(
            update(wallet_lots)
            .where(wallet_lots.c.id == lot_id, wallet_lots.c.remaining >= coins)
            .values(remaining=wallet_lots.c.remaining - coins, value_remaining=value_remaining)
        )
        if result.rowcount != 1:
            raise AssertionError(f"lot {lot_id} holds less than {coins}")

    async def give_back(self, lot_id: str, amount: int, value: int) -> None:
        """Return ``amount`` (and, for a coin lot, ``value``) taken from a lot by a hold
        that was released."""
        result = await self.conn.execute(
            update(wallet_lots)
            .where(
                wallet_lots.c.id == lot_id, wallet_lots.c.remaining + amount <= wallet_lots.c.amount
            )
            .values(
                remaining=wallet_lots.c.remaining + amount,
                value_remaining=wallet_lots.c.value_remaining + value,
            )
        )
        if result.rowcount != 1:
            raise AssertionError(f"lot {lot_id} cannot take {amount} back")

    async def coin_values(self) -> dict[tuple[str, str], int]:
        """Unrecognised value of every customer's coin lots, by (customer, money)."""
        rows = await self.conn.execute(
            select(
                wallet_lots.c.customer_id,
                wallet_lots.c.value_currency,
                func.sum(wallet_lots.c.value_remaining),
            )
            .where(wallet_lots.c.value_currency.is_not(None))
            .group_by(wallet_lots.c.customer_id, wallet_lots.c.value_currency)
        )
        return {(r[0], r[1]): int(r[2] or 0) for r in rows}

    async def lot_totals(self) -> dict[tuple[str, str], int]:
        """What every wallet's lots hold, by (customer, currency): its balance."""
        rows = await self.conn.execute(
            select(
                wallet_lots.c.customer_id, wallet_lots.c.currency, func.sum(wallet_lots.c.remaining)
            ).group_by(wallet_lots.c.customer_id, wallet_lots.c.currency)
        )
        return {(r[0], r[1]): int(r[2] or 0) for r in rows}

    async def lots_of(self, customer_id: str) -> list[LotRecord]:
        rows = await self.conn.execute(
            select(wallet_lots)
            .where(wallet_lots.c.customer_id == customer_id)
            .order_by(wallet_lots.c.created_at, wallet_lots.c.id)
        )
        return [LotRecord(**{f: r._mapping[f] for f in _LOT_FIELDS}) for r in rows]

    async def lot_by_source(self, source: str) -> LotRecord | None:
        row = (
            await self.conn.execute(select(wallet_lots).where(wallet_lots.c.source == source))
        ).first()
        return None if row is None else LotRecord(**{f: row._mapping[f] for f in _LOT_FIELDS})

    async def take_back_lot(self, source: str) -> LotRecord | None:
        """Empty a lot none of which is spent (a refunded top-up); None if any is spent."""
        row = (
            await self.conn.execute(
                update(wallet_lots)
                .where(
                    wallet_lots.c.source == source,
                    wallet_lots.c.remaining == wallet_lots.c.amount,
                )
                .values(
                    remaining=0,
                    value_remaining=case((wallet_lots.c.value.is_(None), None), else_=0),
                )
                .returning(*wallet_lots.c)
            )
        ).first()
        return None if row is None else LotRecord(**{f: row._mapping[f] for f in _LOT_FIELDS})

    async def restore_lot(self, lot_id: str) -> None:
        """Fill a lot taken back by a refund that then failed."""
        await self.conn.execute(
            update(wallet_lots)
            .where(wallet_lots.c.id == lot_id, wallet_lots.c.remaining == 0)
            .values(remaining=wallet_lots.c.amount, value_remaining=wallet_lots.c.value)
        )

    async def take_from_lot(self, lot_id: str, amount: int) -> None:
        result = await self.conn.execute(
            update(wallet_lots)
            .where(wallet_lots.c.id == lot_id, wallet_lots.c.remaining >= amount)
            .values(remaining=wallet_lots.c.remaining - amount)
        )
        if result.rowcount != 1:
            raise AssertionError(f"lot {lot_id} holds less than {amount}")

    async def empty_lot(self, lot_id: str, remaining: int) -> bool:
        """Take what is left of a lot (``remaining``, as read under the balance lock)
        and its unrecognised value; False if it changed meanwhile."""
        result = await self.conn.execute(
            update(wallet_lots)
            .where(wallet_lots.c.id == lot_id, wallet_lots.c.remaining == remaining)
            .values(
                remaining=0,
                value_remaining=case((wallet_lots.c.value.is_(None), None), else_=0),
            )
        )
        return result.rowcount == 1

    async def add_shortfall(self, shortfall: Shortfall) -> bool:
        """Record a shortfall; False if its cause was recorded before (UNIQUE)."""
        result = await self.conn.execute(
            insert_ignoring_conflicts(self.conn, wallet_shortfalls),
            {f: getattr(shortfall, f) for f in _SHORTFALL_FIELDS},
        )
        return result.rowcount == 1

    async def shortfalls_of(self, customer_id: str) -> list[Shortfall]:
        rows = await self.conn.execute(
            select(wallet_shortfalls)
            .where(wallet_shortfalls.c.customer_id == customer_id)
            .order_by(wallet_shortfalls.c.created_at, wallet_shortfalls.c.id)
        )
        return [Shortfall(**{f: r._mapping[f] for f in _SHORTFALL_FIELDS}) for r in rows]

    async def shortfall_values(self) -> dict[tuple[str, str], int]:
        """The money value every wallet owes, by (customer, money currency)."""
        rows = await self.conn.execute(
            select(
                wallet_shortfalls.c.customer_id,
                wallet_shortfalls.c.value_currency,
                func.sum(wallet_shortfalls.c.value),
            ).group_by(wallet_shortfalls.c.customer_id, wallet_shortfalls.c.value_currency)
        )
        return {(r[0], r[1]): int(r[2] or 0) for r in rows}

    async def record(self, tx: WalletTransaction) -> bool:
        """Log a credit or debit; False if its cause was logged before."""
        result = await self.conn.execute(
            insert_ignoring_conflicts(self.conn, wallet_transactions),
            {f: getattr(tx, f) for f in _TX_FIELDS},
        )
        return result.rowcount == 1

    async def transaction_by_cause(self, cause: str, cause_id: str) -> WalletTransaction | None:
        row = (
            await self.conn.execute(
                select(wallet_transactions).where(
                    wallet_transactions.c.cause == cause,
                    wallet_transactions.c.cause_id == cause_id,
                )
            )
        ).first()
        return (
            None if row is None else WalletTransaction(**{f: row._mapping[f] for f in _TX_FIELDS})
        )

    async def transactions(
        self, customer_id: str, *, limit: int, starting_after: str | None
    ) -> tuple[list[WalletTransaction], bool]:
        query: Select[Any] = select(wallet_transactions).where(
            wallet_transactions.c.customer_id == customer_id
        )
        if starting_after is not None:
            query = query.where(wallet_transactions.c.id < starting_after)
        rows = (
            await self.conn.execute(
                query.order_by(wallet_transactions.c.id.desc()).limit(limit + 1)
            )
        ).all()
        page = [WalletTransaction(**{f: r._mapping[f] for f in _TX_FIELDS}) for r in rows[:limit]]
        return page, len(rows) > limit
