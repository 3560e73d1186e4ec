"""Commissions repository: promoters, each product's commission settings, and the split
of a referred order's lines as it was fixed when the order was placed."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.domain.commissions import CommissionBearer, CommissionRates
from tuition.store.db import dialect_insert, insert_ignoring_conflicts
from tuition.store.staged import StagedWrites
from tuition.store.tables import order_commissions, partners, product_commissions, promoters


@dataclass(frozen=True, slots=True)
class PromoterRecord:
    payee_id: str
    code: str
    recruited_by: str | None
    customer_id: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ProductCommission:
    product_id: str
    rates: CommissionRates
    bearer: CommissionBearer
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class LineCommission:
    """A referred line's split, as fixed when the order was placed."""

    order_id: str
    line_index: int
    referral_code: str
    bearer: CommissionBearer
    creator_amount: int
    level1_id: str
    level1_rate: Decimal
    level1_amount: int
    level2_id: str | None
    level2_rate: Decimal
    level2_amount: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PartnerRecord:
    """A partner platform's agreement: its share of a sale, settled in its currency."""

    payee_id: str
    share: Decimal
    currency: str
    created_at: datetime


_PROMOTER_FIELDS = list(PromoterRecord.__dataclass_fields__)
_PARTNER_FIELDS = list(PartnerRecord.__dataclass_fields__)
_LINE_FIELDS = list(LineCommission.__dataclass_fields__)


def _promoter(row: Any) -> PromoterRecord:
    return PromoterRecord(**{f: row._mapping[f] for f in _PROMOTER_FIELDS})


def _line(row: Any) -> LineCommission:
    values = {f: row._mapping[f] for f in _LINE_FIELDS}
    values["bearer"] = CommissionBearer(values["bearer"])
    return LineCommission(**values)


class CommissionRepository:
    def __init__(self, conn: AsyncConnection, staged: StagedWrites) -> None:
        self.conn, self.staged = conn, staged

    # --- promoters ------------------------------------------------------------------

    async def add_promoter(self, promoter: PromoterRecord) -> bool:
        """False when the referral code is taken (UNIQUE)."""
        result = await self.conn.execute(
            insert_ignoring_conflicts(self.conn, promoters),
            {f: getattr(promoter, f) for f in _PROMOTER_FIELDS},
        )
        return result.rowcount == 1

    async def promoter(self, payee_id: str) -> PromoterRecord | None:
        row = (
            await self.conn.execute(select(promoters).where(promoters.c.payee_id == payee_id))
        ).first()
        return None if row is None else _promoter(row)

    async def promoter_by_code(self, code: str) -> PromoterRecord | None:
        row = (await self.conn.execute(select(promoters).where(promoters.c.code == code))).first()
        return None if row is None else _promoter(row)

    async def list_promoters(
        self, *, limit: int, starting_after: str | None
    ) -> tuple[list[PromoterRecord], bool]:
        """Newest first (payee ids are time-ordered)."""
        query = select(promoters)
        if starting_after is not None:
            query = query.where(promoters.c.payee_id < starting_after)
        rows = (
            await self.conn.execute(query.order_by(promoters.c.payee_id.desc()).limit(limit + 1))
        ).all()
        return [_promoter(r) for r in rows[:limit]], len(rows) > limit

    # --- product settings -----------------------------------------------------------

    async def set_product(self, setting: ProductCommission) -> None:
        values = {
            "product_id": setting.product_id,
            "level1": setting.rates.level1,
            "level2": setting.rates.level2,
            "bearer": setting.bearer.value,
            "updated_at": setting.updated_at,
        }
        stmt = dialect_insert(self.conn, product_commissions).values(values)
        await self.conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[product_commissions.c.product_id],
                set_={k: v for k, v in values.items() if k != "product_id"},
            )
        )

    async def of_products(self, product_ids: Collection[str]) -> dict[str, ProductCommission]:
        if not product_ids:
            return {}
        rows = await self.conn.execute(
            select(product_commissions).where(
                product_commissions.c.product_id.in_(sorted(product_ids))
            )
        )
        return {
            r.product_id: ProductCommission(
                r.product_id,
                CommissionRates(Decimal(r.level1), Decimal(r.level2)),
                CommissionBearer(r.bearer),
                r.updated_at,
            )
            for r in rows
        }

    # --- referred orders ------------------------------------------------------------

    async def add_lines(self, lines: Sequence[LineCommission]) -> None:
        """Stage the order's commission lines (beside the staged order they belong to)."""
        self.staged.insert(
            order_commissions, [{f: getattr(line, f) for f in _LINE_FIELDS} for line in lines]
        )

    async def set_line_amounts(self, lines: Sequence[LineCommission]) -> None:
        """Store each referred line's amounts anew (its order re-priced before payment)."""
        for line in lines:
            await self.conn.execute(
                update(order_commissions)
                .where(
                    order_commissions.c.order_id == line.order_id,
                    order_commissions.c.line_index == line.line_index,
                )
                .values(
                    creator_amount=line.creator_amount,
                    level1_amount=line.level1_amount,
                    level2_amount=line.level2_amount,
                )
            )

    async def of_order(self, order_id: str) -> dict[int, LineCommission]:
        rows = await self.conn.execute(
            select(order_commissions)
            .where(order_commissions.c.order_id == order_id)
            .order_by(order_commissions.c.line_index)
        )
        return {int(r.line_index): _line(r) for r in rows}

    async def of_promoter(self, payee_id: str, *, limit: int) -> list[LineCommission]:
        """The referred lines a promoter earns from (level 1 or 2), newest first."""
        rows = await self.conn.execute(
            select(order_commissions)
            .where(
                or_(
                    order_commissions.c.level1_id == payee_id,
                    order_commissions.c.level2_id == payee_id,
                )
            )
            .order_by(
                order_commissions.c.created_at.desc(),
                order_commissions.c.order_id.desc(),
                order_commissions.c.line_index,
            )
            .limit(limit)
        )
        return [_line(r) for r in rows]

    async def recruits(self, payee_id: str) -> list[PromoterRecord]:
        rows = await self.conn.execute(
            select(promoters).where(promoters.c.recruited_by == payee_id).order_by(promoters.c.code)
        )
        return [_promoter(r) for r in rows]

    # --- partner platforms ----------------------------------------------------------

    async def add_partner(self, partner: PartnerRecord) -> None:
        await self.conn.execute(
            partners.insert(), {f: getattr(partner, f) for f in _PARTNER_FIELDS}
        )

    async def partner(self, payee_id: str) -> PartnerRecord | None:
        row = (
            await self.conn.execute(select(partners).where(partners.c.payee_id == payee_id))
        ).first()
        return (
            None if row is None else PartnerRecord(**{f: row._mapping[f] for f in _PARTNER_FIELDS})
        )
