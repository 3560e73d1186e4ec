"""Earnings repository: payees, one hold per paid payment, and the earnings it holds.

Every refund and the release job update the payment's hold row first (the row lock
orders them), so a refund takes back from pending exactly while the hold is pending and
from available after; the release then moves what refunds left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.domain.earnings import HoldStatus, PayeeKind, TaxProfile
from tuition.domain.earnings import hold_days as hold_days_of
from tuition.domain.ledger import AccountKind
from tuition.store.db import insert_ignoring_conflicts
from tuition.store.earning_sql import HOLD_SQL
from tuition.store.partner_settlements import SettlementRecord
from tuition.store.tables import (
    creators,
    earning_holds,
    earnings,
    jobs,
    ledger_accounts,
    ledger_balances,
    payees,
    products,
)


@dataclass(frozen=True, slots=True)
class PayeeRecord:
    id: str
    kind: str
    name: str
    tax_profile: str
    payout_method: str | None
    payout_account: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class HoldRecord:
    payment_id: str
    order_id: str
    currency: str
    status: HoldStatus
    paid_at: datetime
    release_at: datetime
    released_at: datetime | None


@dataclass(frozen=True, slots=True)
class EarningRecord:
    id: str
    payee_id: str
    role: str
    payment_id: str
    order_id: str
    line_index: int
    product_id: str
    currency: str
    base_amount: int
    rate: Decimal
    amount: int
    clawed_pending: int
    clawed_available: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class EarningView:
    """An earning with its hold, as the earnings list shows it."""

    earning: EarningRecord
    status: HoldStatus
    release_at: datetime
    released_at: datetime | None
    # A partner's earning once released: what it became in the partner's currency.
    settlement: SettlementRecord | None = None


_PAYEE_FIELDS = list(PayeeRecord.__dataclass_fields__)
_EARNING_FIELDS = list(EarningRecord.__dataclass_fields__)


def _earning(row: Any) -> EarningRecord:
    return EarningRecord(**{f: row._mapping[f] for f in _EARNING_FIELDS})


def _hold(row: Any) -> HoldRecord:
    return HoldRecord(
        payment_id=row.payment_id,
        order_id=row.order_id,
        currency=row.currency,
        status=HoldStatus(row.status),
        paid_at=row.paid_at,
        release_at=row.release_at,
        released_at=row.released_at,
    )


class EarningsRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    # --- payees ---------------------------------------------------------------------

    async def ensure_creator_payees(self, creator_ids: Sequence[str], at: datetime) -> None:
        """A payee for each creator (same id, the creator's name), made on first earning."""
        wanted = sorted(set(creator_ids))
        if not wanted:
            return
        rows = await self.conn.execute(
            select(creators.c.id, creators.c.name).where(creators.c.id.in_(wanted))
        )
        await self.conn.execute(
            insert_ignoring_conflicts(self.conn, payees),
            [
                {
                    "id": r.id,
                    "kind": PayeeKind.CREATOR.value,
                    "name": r.name,
                    "tax_profile": TaxProfile.INDIVIDUAL.value,
                    "payout_method": None,
                    "payout_account": None,
                    "created_at": at,
                    "updated_at": at,
                }
                for r in sorted(rows, key=lambda r: str(r.id))
            ],
        )

    async def add_payee(self, payee: PayeeRecord) -> bool:
        result = await self.conn.execute(
            insert_ignoring_conflicts(self.conn, payees),
            {f: getattr(payee, f) for f in _PAYEE_FIELDS},
        )
        return result.rowcount == 1

    async def payee(self, payee_id: str) -> PayeeRecord | None:
        row = (await self.conn.execute(select(payees).where(payees.c.id == payee_id))).first()
        return None if row is None else PayeeRecord(**{f: row._mapping[f] for f in _PAYEE_FIELDS})

    async def update_payee(self, payee_id: str, at: datetime, **values: str | None) -> bool:
        result = await self.conn.execute(
            update(payees).where(payees.c.id == payee_id).values(updated_at=at, **values)
        )
        return result.rowcount == 1

    async def list_payees(self) -> list[PayeeRecord]:
        rows = await self.conn.execute(select(payees).order_by(payees.c.name, payees.c.id))
        return [PayeeRecord(**{f: r._mapping[f] for f in _PAYEE_FIELDS}) for r in rows]

    # --- holds and earnings ---------------------------------------------------------

    async def add_hold(
        self,
        *,
        payment_id: str,
        order_id: str,
        currency: str,
        paid_at: datetime,
        release_at: datetime,
        at: datetime,
    ) -> bool:
        """Open the payment's hold; False if it exists (the payment was settled before)."""
        result = await self.conn.execute(
            insert_ignoring_conflicts(self.conn, earning_holds),
            {
                "payment_id": payment_id,
                "order_id": order_id,
                "currency": currency,
                "status": HoldStatus.PENDING.value,
                "paid_at": paid_at,
                "release_at": release_at,
                "released_at": None,
                "clawbacks": 0,
                "created_at": at,
                "updated_at": at,
            },
        )
        return result.rowcount == 1

    async def add_earnings(self, rows: Sequence[EarningRecord]) -> int:
        if not rows:
            return 0
        result = await self.conn.execute(
            insert_ignoring_conflicts(self.conn, earnings),
            [{f: getattr(r, f) for f in _EARNING_FIELDS} for r in rows],
        )
        return max(result.rowcount, 0)

    async def hold(self, payment_id: str) -> HoldRecord | None:
        row = (
            await self.conn.execute(
                select(earning_holds).where(earning_holds.c.payment_id == payment_id)
            )
        ).first()
        return None if row is None else _hold(row)

    async def lock_hold_for_clawback(self, payment_id: str, at: datetime) -> HoldStatus | None:
        """Take the hold's row lock for a refund; its status as it is now, or None for a
        payment settled before earnings were held (its shares went straight to payable)."""
        row = (
            await self.conn.execute(
                update(earning_holds)
                .where(earning_holds.c.payment_id == payment_id)
                .values(clawbacks=earning_holds.c.clawbacks + 1, updated_at=at)
                .returning(earning_holds.c.status)
            )
        ).first()
        return None if row is None else HoldStatus(row.status)

    async def claw_back(
        self,
        payment_id: str,
        line_index: int,
        payee_id: str,
        role: str,
        amount: int,
        *,
        pending: bool,
    ) -> bool:
        """Count ``amount`` taken back from one earning (never more than it earned)."""
        column = earnings.c.clawed_pending if pending else earnings.c.clawed_available
        result = await self.conn.execute(
            update(earnings)
            .where(
                earnings.c.payment_id == payment_id,
                earnings.c.line_index == line_index,
                earnings.c.payee_id == payee_id,
                earnings.c.role == role,
                earnings.c.clawed_pending + earnings.c.clawed_available + amount
                <= earnings.c.amount,
            )
            .values({column.name: column + amount})
        )
        return result.rowcount == 1

    async def release(self, payment_id: str, *, now: datetime) -> bool:
        """Compare-and-set pending -> released once the hold has ended; False otherwise."""
        result = await self.conn.execute(
            update(earning_holds)
            .where(
                earning_holds.c.payment_id == payment_id,
                earning_holds.c.status == HoldStatus.PENDING.value,
                earning_holds.c.release_at <= now,
            )
            .values(status=HoldStatus.RELEASED.value, released_at=now, updated_at=now)
        )
        return result.rowcount == 1

    async def of_payment(self, payment_id: str) -> list[EarningRecord]:
        rows = await self.conn.execute(
            select(earnings)
            .where(earnings.c.payment_id == payment_id)
            .order_by(earnings.c.line_index, earnings.c.payee_id, earnings.c.role)
        )
        return [_earning(r) for r in rows]

    async def due_holds(self, now: datetime, *, limit: int) -> list[str]:
        rows = await self.conn.execute(
            select(earning_holds.c.payment_id)
            .where(
                earning_holds.c.status == HoldStatus.PENDING.value,
                earning_holds.c.release_at <= now,
            )
            .order_by(earning_holds.c.release_at)
            .limit(limit)
        )
        return [r.payment_id for r in rows]

    async def of_payee(
        self, payee_id: str, *, limit: int, starting_after: str | None
    ) -> tuple[list[EarningView], bool]:
        """A payee's earnings, newest first, with their hold."""
        query: Select[Any] = (
            select(
                earnings,
                earning_holds.c.status,
                earning_holds.c.release_at,
                earning_holds.c.released_at,
            )
            .join(earning_holds, earning_holds.c.payment_id == earnings.c.payment_id)
            .where(earnings.c.payee_id == payee_id)
        )
        if starting_after is not None:
            query = query.where(earnings.c.id < starting_after)
        rows = (
            await self.conn.execute(query.order_by(earnings.c.id.desc()).limit(limit + 1))
        ).all()
        page = [
            EarningView(_earning(r), HoldStatus(r.status), r.release_at, r.released_at)
            for r in rows[:limit]
        ]
        return page, len(rows) > limit

    async def pending_totals(self) -> dict[tuple[str, str], int]:
        """(payee, currency) -> what held earnings still owe: earned minus clawed back."""
        rows = await self.conn.execute(
            select(
                earnings.c.payee_id,
                earnings.c.currency,
                func.sum(earnings.c.amount - earnings.c.clawed_pending),
            )
            .join(earning_holds, earning_holds.c.payment_id == earnings.c.payment_id)
            .where(earning_holds.c.status == HoldStatus.PENDING.value)
            .group_by(earnings.c.payee_id, earnings.c.currency)
        )
        return {(p, c): int(total) for p, c, total in rows}

    async def account_balances(self, payee_id: str) -> dict[str, int]:
        """The payee's ledger accounts (pending and available, every currency) and their
        balances, the sum of each account's shards."""
        rows = await self.conn.execute(
            select(ledger_balances.c.account_key, func.sum(ledger_balances.c.balance))
            .join(ledger_accounts, ledger_accounts.c.key == ledger_balances.c.account_key)
            .where(
                ledger_accounts.c.qualifier == payee_id,
                ledger_accounts.c.kind.in_(
                    [AccountKind.CREATOR_PENDING.value, AccountKind.CREATOR_PAYABLE.value]
                ),
            )
            .group_by(ledger_balances.c.account_key)
        )
        return {key: int(total) for key, total in rows}

    async def hold_earnings(
        self,
        *,
        payment_id: str,
        order_id: str,
        currency: str,
        paid_at: datetime,
        hold_days: int | None,
        default_days: int,
        product_ids: Sequence[str],
        rows: Sequence[EarningRecord],
        job_kind: str,
        at: datetime,
    ) -> datetime | None:
        """Record a paid payment's earnings, their hold and the job that releases it, and
        make a payee of each creator; the release time, or None if held before.

        The hold lasts the longest ``window_days`` among the products' own refund rules
        (``default_days`` for a product without one) unless ``hold_days`` is given. On
        PostgreSQL this is one round trip (data-modifying CTEs, as the ledger posts).
        """
        if self.conn.dialect.name == "postgresql":
            return await self._hold_in_one_statement(
                payment_id,
                order_id,
                currency,
                paid_at,
                hold_days,
                default_days,
                product_ids,
                rows,
                job_kind,
                at,
            )
        if hold_days is None:
            policies = await self.conn.execute(
                select(products.c.id, products.c.refund_policy).where(
                    products.c.id.in_(list(product_ids))
                )
            )
            windows = {r.id: (r.refund_policy or {}).get("window_days") for r in policies}
            hold_days = hold_days_of([windows.get(p) for p in product_ids], default_days)
        release = paid_at + timedelta(days=hold_days)
        await self.ensure_creator_payees([r.payee_id for r in rows], at)
        if not await self.add_hold(
            payment_id=payment_id,
            order_id=order_id,
            currency=currency,
            paid_at=paid_at,
            release_at=release,
            at=at,
        ):
            return None
        await self.add_earnings(rows)
        await self.conn.execute(
            insert_ignoring_conflicts(self.conn, jobs),
            {
                "kind": job_kind,
                "key": f"{job_kind}:{payment_id}",
                "status": "queued",
                "attempts": 0,
                "run_at": release,
                "created_at": at,
                "updated_at": at,
            },
        )
        return release

    async def _hold_in_one_statement(
        self,
        payment_id: str,
        order_id: str,
        currency: str,
        paid_at: datetime,
        hold_days: int | None,
        default_days: int,
        product_ids: Sequence[str],
        rows: Sequence[EarningRecord],
        job_kind: str,
        at: datetime,
    ) -> datetime | None:
        held = await HOLD_SQL.first(
            self.conn,
            {
                "payment_id": payment_id,
                "order_id": order_id,
                "currency": currency,
                "paid_at": paid_at.astimezone(UTC),
                "at": at.astimezone(UTC),
                "hold_days": hold_days,
                "default_days": default_days,
                "product_ids": list(product_ids),
                "creator_ids": sorted({r.payee_id for r in rows}),
                "ids": [r.id for r in rows],
                "payee_ids": [r.payee_id for r in rows],
                "roles": [r.role for r in rows],
                "line_indexes": [r.line_index for r in rows],
                "line_products": [r.product_id for r in rows],
                "base_amounts": [r.base_amount for r in rows],
                "rates": [str(r.rate) for r in rows],
                "amounts": [r.amount for r in rows],
                "job_kind": job_kind,
                "job_key": f"{job_kind}:{payment_id}",
            },
        )
        release = None if held is None else held["release_at"]
        return None if release is None else release.astimezone(UTC)
