"""Debit agreements and the charges made on them (tables ``agreements``, ``agreement_charges``)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.domain.agreements import AgreementStatus
from tuition.store.db import insert_ignoring_conflicts
from tuition.store.tables import agreement_charges, agreements, subscriptions


@dataclass(frozen=True, slots=True)
class AgreementRecord:
    id: str
    customer_id: str
    channel: str
    subscription_id: str | None
    status: AgreementStatus
    agreement_no: str | None
    signed_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AgreementChargeRecord:
    order_id: str
    attempt: int
    agreement_id: str
    payment_id: str
    created_at: datetime


class AgreementRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, record: AgreementRecord) -> None:
        values = {k: getattr(record, k) for k in AgreementRecord.__slots__}
        values["status"] = record.status.value
        await self.conn.execute(agreements.insert().values(**values))

    async def get(self, agreement_id: str) -> AgreementRecord | None:
        row = (
            (await self.conn.execute(select(agreements).where(agreements.c.id == agreement_id)))
            .mappings()
            .first()
        )
        return None if row is None else _agreement(row)

    async def of_subscription(self, subscription_id: str) -> list[AgreementRecord]:
        """Newest first."""
        rows = await self.conn.execute(
            select(agreements)
            .where(agreements.c.subscription_id == subscription_id)
            .order_by(agreements.c.created_at.desc(), agreements.c.id.desc())
        )
        return [_agreement(r) for r in rows.mappings()]

    async def active_for(self, subscription_id: str) -> AgreementRecord | None:
        found = [a for a in await self.of_subscription(subscription_id) if a.status == "active"]
        return found[0] if found else None

    async def set_status(
        self,
        agreement_id: str,
        *,
        expected: Collection[AgreementStatus],
        at: datetime,
        **values: Any,
    ) -> bool:
        """Compare-and-set on the status: True for the one caller whose update landed."""
        if "status" in values:
            values["status"] = AgreementStatus(values["status"]).value
        result = await self.conn.execute(
            update(agreements)
            .where(
                agreements.c.id == agreement_id,
                agreements.c.status.in_([AgreementStatus(s).value for s in expected]),
            )
            .values(updated_at=at, **values)
        )
        return result.rowcount == 1

    async def active_of_ended_subscriptions(self, *, limit: int) -> list[AgreementRecord]:
        """Agreements still signed whose subscription is over (canceled or expired)."""
        rows = await self.conn.execute(
            select(agreements)
            .join(subscriptions, subscriptions.c.id == agreements.c.subscription_id)
            .where(
                agreements.c.status == AgreementStatus.ACTIVE.value,
                subscriptions.c.status.in_(["canceled", "expired"]),
            )
            .order_by(agreements.c.updated_at, agreements.c.id)
            .limit(limit)
        )
        return [_agreement(r) for r in rows.mappings()]

    async def add_charge(self, record: AgreementChargeRecord) -> bool:
        """Claim one attempt's charge; False when another worker holds it (the PK)."""
        result = await self.conn.execute(
            insert_ignoring_conflicts(self.conn, agreement_charges),
            {k: getattr(record, k) for k in AgreementChargeRecord.__slots__},
        )
        return result.rowcount == 1

    async def charges_of(self, order_id: str) -> list[AgreementChargeRecord]:
        rows = await self.conn.execute(
            select(agreement_charges)
            .where(agreement_charges.c.order_id == order_id)
            .order_by(agreement_charges.c.attempt)
        )
        return [AgreementChargeRecord(**dict(r)) for r in rows.mappings()]


def _agreement(row: RowMapping) -> AgreementRecord:
    values = dict(row)
    values["status"] = AgreementStatus(values["status"])
    return AgreementRecord(**values)
