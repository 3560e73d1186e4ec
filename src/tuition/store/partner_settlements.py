"""Partner-sold orders' shares (fixed when the order is placed) and their settlement in
the partner's currency (when the hold ends), with what refunds took back of each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.store.db import insert_ignoring_conflicts
from tuition.store.staged import StagedWrites
from tuition.store.tables import order_partner_shares, partner_settlements


@dataclass(frozen=True, slots=True)
class PartnerLineShare:
    """A partner's share of one line of the order it sold, in the order's currency."""

    order_id: str
    line_index: int
    partner_id: str
    rate: Decimal
    amount: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SettlementRecord:
    """An earning of a partner converted into its currency when the hold ended."""

    earning_id: str
    payment_id: str
    payee_id: str
    from_currency: str
    from_amount: int  # released, in the sale's currency
    currency: str  # the partner's
    amount: int  # what it became there
    clawed_from: int  # taken back since by refunds, in the sale's currency
    clawed: int  # ... and in the partner's
    rate: Decimal  # units of the partner's currency per unit of the sale's
    rate_source: str
    rate_at: datetime  # the time the rate is for
    created_at: datetime


_SHARE_FIELDS = list(PartnerLineShare.__dataclass_fields__)
_SETTLEMENT_FIELDS = list(SettlementRecord.__dataclass_fields__)


def _settlement(row: Any) -> SettlementRecord:
    return SettlementRecord(**{f: row._mapping[f] for f in _SETTLEMENT_FIELDS})


class PartnerSettlementRepository:
    def __init__(self, conn: AsyncConnection, staged: StagedWrites) -> None:
        self.conn, self.staged = conn, staged

    async def add_shares(self, shares: Sequence[PartnerLineShare]) -> None:
        """Stage the order's partner shares (beside the staged order they belong to)."""
        self.staged.insert(
            order_partner_shares, [{f: getattr(s, f) for f in _SHARE_FIELDS} for s in shares]
        )

    async def set_share_amounts(self, shares: Sequence[PartnerLineShare]) -> None:
        """Store each line's share anew (its order re-priced before payment)."""
        for share in shares:
            await self.conn.execute(
                update(order_partner_shares)
                .where(
                    order_partner_shares.c.order_id == share.order_id,
                    order_partner_shares.c.line_index == share.line_index,
                )
                .values(amount=share.amount)
            )

    async def shares_of_order(self, order_id: str) -> dict[int, PartnerLineShare]:
        rows = await self.conn.execute(
            select(order_partner_shares).where(order_partner_shares.c.order_id == order_id)
        )
        return {
            r.line_index: PartnerLineShare(**{f: r._mapping[f] for f in _SHARE_FIELDS})
            for r in rows
        }

    async def add_settlements(self, rows: Sequence[SettlementRecord]) -> int:
        """Record settlements; one per earning (a release repeated records nothing)."""
        if not rows:
            return 0
        result = await self.conn.execute(
            insert_ignoring_conflicts(self.conn, partner_settlements),
            [{f: getattr(r, f) for f in _SETTLEMENT_FIELDS} for r in rows],
        )
        return max(result.rowcount, 0)

    async def of_payment(self, payment_id: str) -> dict[str, SettlementRecord]:
        """The payment's settlements, by earning id."""
        rows = await self.conn.execute(
            select(partner_settlements).where(partner_settlements.c.payment_id == payment_id)
        )
        return {r.earning_id: _settlement(r) for r in rows}

    async def of_earnings(self, earning_ids: Sequence[str]) -> dict[str, SettlementRecord]:
        if not earning_ids:
            return {}
        rows = await self.conn.execute(
            select(partner_settlements).where(
                partner_settlements.c.earning_id.in_(list(earning_ids))
            )
        )
        return {r.earning_id: _settlement(r) for r in rows}

    async def claw_back(self, earning_id: str, *, taken_from: int, taken: int) -> bool:
        """Count a refund's take (in both currencies), never more than was settled."""
        result = await self.conn.execute(
            update(partner_settlements)
            .where(
                partner_settlements.c.earning_id == earning_id,
                partner_settlements.c.clawed_from + taken_from <= partner_settlements.c.from_amount,
                partner_settlements.c.clawed + taken <= partner_settlements.c.amount,
            )
            .values(
                clawed_from=partner_settlements.c.clawed_from + taken_from,
                clawed=partner_settlements.c.clawed + taken,
            )
        )
        return result.rowcount == 1
