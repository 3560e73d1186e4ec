"""Payout repository: payees' available balances and their payouts.

``available`` changes by UPDATE only: :meth:`PayoutRepository.take` is conditional
(``available >= :amount``) so payouts racing each other never take it below zero; a
clawback after the hold (:meth:`PayoutRepository.add_available` with a negative amount)
may, and the debt is netted against the next release.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.domain.payouts import GIVEN_BACK, PayoutStatus
from tuition.store.db import dialect_insert, insert_ignoring_conflicts
from tuition.store.tables import payee_balances, payouts


@dataclass(frozen=True, slots=True)
class PayoutRecord:
    id: str
    payee_id: str
    currency: str
    amount: int
    tax_withheld: int
    tax_month: str
    method: str
    destination: str | None
    status: PayoutStatus
    reference: str | None
    failure_code: str | None
    failure_message: str | None
    requested_by: str
    run_key: str | None
    created_at: datetime
    updated_at: datetime
    paid_at: datetime | None
    failed_at: datetime | None
    # What the payee's WeChat needs to confirm a transfer waiting for it (package_info).
    transfer_package: str | None = None
    # Where the money goes, as it was when the payout was made (unmasked: never shown).
    payout_account: str | None = None

    def __repr__(self) -> str:  # the account stays out of logs and tracebacks
        return f"PayoutRecord(id={self.id!r}, payee_id={self.payee_id!r}, status={self.status})"

    @property
    def net(self) -> int:
        return self.amount - self.tax_withheld


_FIELDS = list(PayoutRecord.__dataclass_fields__)


def _payout(row: Any) -> PayoutRecord:
    values = {f: row._mapping[f] for f in _FIELDS}
    values["status"] = PayoutStatus(values["status"])
    return PayoutRecord(**values)


class PayoutRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    # --- available balances ---------------------------------------------------------

    async def add_available(self, payee_id: str, currency: str, amount: int, at: datetime) -> int:
        """Add ``amount`` (a clawback: below zero) to what the payee may be paid; after."""
        stmt = dialect_insert(self.conn, payee_balances).values(
            payee_id=payee_id, currency=currency, available=amount, updated_at=at
        )
        row = (
            await self.conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[payee_balances.c.payee_id, payee_balances.c.currency],
                    set_={"available": payee_balances.c.available + amount, "updated_at": at},
                ).returning(payee_balances.c.available)
            )
        ).first()
        assert row is not None
        return int(row[0])

    async def take(self, payee_id: str, currency: str, amount: int, at: datetime) -> int | None:
        """Take ``amount`` if available covers it; the balance after, else None."""
        row = (
            await self.conn.execute(
                update(payee_balances)
                .where(
                    payee_balances.c.payee_id == payee_id,
                    payee_balances.c.currency == currency,
                    payee_balances.c.available >= amount,
                )
                .values(available=payee_balances.c.available - amount, updated_at=at)
                .returning(payee_balances.c.available)
            )
        ).first()
        return None if row is None else int(row[0])

    async def lock_available(self, payee_id: str, currency: str, at: datetime) -> int:
        """Take the balance row's lock (made at zero on first use); what is available."""
        return await self.add_available(payee_id, currency, 0, at)

    async def available(self, payee_id: str) -> dict[str, int]:
        rows = await self.conn.execute(
            select(payee_balances.c.currency, payee_balances.c.available).where(
                payee_balances.c.payee_id == payee_id
            )
        )
        return {r.currency: int(r.available) for r in rows}

    async def all_available(self) -> dict[tuple[str, str], int]:
        rows = await self.conn.execute(select(payee_balances))
        return {(r.payee_id, r.currency): int(r.available) for r in rows}

    # --- payouts --------------------------------------------------------------------

    async def add(self, payout: PayoutRecord) -> bool:
        values = {f: getattr(payout, f) for f in _FIELDS}
        values["status"] = payout.status.value
        result = await self.conn.execute(insert_ignoring_conflicts(self.conn, payouts), values)
        return result.rowcount == 1

    async def get(self, payout_id: str) -> PayoutRecord | None:
        row = (await self.conn.execute(select(payouts).where(payouts.c.id == payout_id))).first()
        return None if row is None else _payout(row)

    async def by_run_key(self, run_key: str) -> PayoutRecord | None:
        row = (await self.conn.execute(select(payouts).where(payouts.c.run_key == run_key))).first()
        return None if row is None else _payout(row)

    async def set_status(
        self,
        payout_id: str,
        *,
        expected: PayoutStatus,
        target: PayoutStatus,
        at: datetime,
        **values: Any,
    ) -> bool:
        """Compare-and-set; True if this call moved the payout."""
        result = await self.conn.execute(
            update(payouts)
            .where(payouts.c.id == payout_id, payouts.c.status == expected.value)
            .values(status=target.value, updated_at=at, **values)
        )
        return result.rowcount == 1

    async def set_transfer_package(self, payout_id: str, package: str, *, at: datetime) -> None:
        await self.conn.execute(
            update(payouts)
            .where(payouts.c.id == payout_id, payouts.c.status == PayoutStatus.PROCESSING.value)
            .values(transfer_package=package, updated_at=at)
        )

    async def month_totals(self, payee_id: str, currency: str, tax_month: str) -> tuple[int, int]:
        """(gross paid or under way, tax withheld) of the payee's payouts in a month."""
        row = (
            await self.conn.execute(
                select(
                    func.coalesce(func.sum(payouts.c.amount), 0),
                    func.coalesce(func.sum(payouts.c.tax_withheld), 0),
                ).where(
                    payouts.c.payee_id == payee_id,
                    payouts.c.currency == currency,
                    payouts.c.tax_month == tax_month,
                    payouts.c.status.not_in([s.value for s in GIVEN_BACK]),
                )
            )
        ).one()
        return int(row[0]), int(row[1])

    async def totals(self, payee_id: str) -> dict[str, dict[str, int]]:
        """Per currency: ``in_payout`` (net, not yet paid), ``paid_out`` (net) and
        ``tax_withheld`` of payouts not given back."""
        rows = await self.conn.execute(
            select(
                payouts.c.currency, payouts.c.status, payouts.c.amount, payouts.c.tax_withheld
            ).where(payouts.c.payee_id == payee_id)
        )
        out: dict[str, dict[str, int]] = {}
        for currency, status, amount, tax in rows:
            sums = out.setdefault(currency, {"in_payout": 0, "paid_out": 0, "tax_withheld": 0})
            if PayoutStatus(status) in GIVEN_BACK:
                continue
            key = "paid_out" if status == PayoutStatus.PAID.value else "in_payout"
            sums[key] += int(amount) - int(tax)
            sums["tax_withheld"] += int(tax)
        return out

    async def listing(
        self,
        *,
        payee_id: str | None,
        status: PayoutStatus | None,
        limit: int,
        starting_after: str | None,
    ) -> tuple[list[PayoutRecord], bool]:
        query: Select[Any] = select(payouts)
        if payee_id is not None:
            query = query.where(payouts.c.payee_id == payee_id)
        if status is not None:
            query = query.where(payouts.c.status == status.value)
        if starting_after is not None:
            query = query.where(payouts.c.id < starting_after)
        rows = (await self.conn.execute(query.order_by(payouts.c.id.desc()).limit(limit + 1))).all()
        return [_payout(r) for r in rows[:limit]], len(rows) > limit

    async def month_report(self, tax_month: str) -> builtins.list[tuple[str, str, int, int]]:
        """(payee, currency, gross income, tax withheld) of payouts not given back in a
        tax month, per payee and currency."""
        rows = await self.conn.execute(
            select(
                payouts.c.payee_id,
                payouts.c.currency,
                func.sum(payouts.c.amount),
                func.sum(payouts.c.tax_withheld),
            )
            .where(
                payouts.c.tax_month == tax_month,
                payouts.c.status.not_in([s.value for s in GIVEN_BACK]),
            )
            .group_by(payouts.c.payee_id, payouts.c.currency)
            .order_by(payouts.c.payee_id, payouts.c.currency)
        )
        return [(p, c, int(g), int(t)) for p, c, g, t in rows]
