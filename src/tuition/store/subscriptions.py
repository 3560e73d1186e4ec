"""Membership scopes, member prices, subscriptions and the orders they raise."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import RowMapping, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.domain.access_scope import AccessScope, MemberPrice
from tuition.domain.catalog import MembershipPeriod, ProductKind
from tuition.domain.subscriptions import SubscriptionFact, SubscriptionStatus
from tuition.store.db import dialect_insert, insert_ignoring_conflicts
from tuition.store.tables import (
    member_prices,
    membership_locks,
    membership_scope_products,
    membership_scopes,
    product_prices,
    products,
    subscription_orders,
    subscription_plans,
    subscriptions,
)


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    id: str
    customer_id: str
    product_id: str
    currency: str
    status: SubscriptionStatus
    channel: str
    method: str
    auto_renew: bool
    cancel_at_period_end: bool
    trial_ends_at: datetime | None
    current_period_start: datetime | None
    current_period_end: datetime | None
    period_index: int
    credit_balance: int
    metadata: dict[str, Any]
    canceled_at: datetime | None
    ended_at: datetime | None
    created_at: datetime
    updated_at: datetime
    # Placed with each of its orders: a promoter's code and the partner that sold it.
    referral_code: str | None = None
    partner_id: str | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionOrder:
    order_id: str
    subscription_id: str
    period_index: int
    kind: str
    product_id: str
    amount: int
    status: str
    attempts: int = 0
    first_failed_at: datetime | None = None
    next_attempt_at: datetime | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    created_at: datetime | None = None
    paid_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionFilter:
    customer_id: str | None = None
    status: SubscriptionStatus | None = None
    statuses: Sequence[SubscriptionStatus] = field(default_factory=tuple)


_SUB_FIELDS = list(SubscriptionRecord.__dataclass_fields__)
_SO_FIELDS = list(SubscriptionOrder.__dataclass_fields__)


def _sub(m: RowMapping) -> SubscriptionRecord:
    values = {f: m[f] for f in _SUB_FIELDS}
    values["status"] = SubscriptionStatus(values["status"])
    return SubscriptionRecord(**values)


def _so(m: RowMapping) -> SubscriptionOrder:
    return SubscriptionOrder(**{f: m[f] for f in _SO_FIELDS})


class MembershipRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def put_scope(self, scope: AccessScope, *, at: datetime) -> None:
        """Replace the scope's rule parts; the listed set is only ever added to here."""
        values = {
            "everything": scope.everything,
            "creator_ids": sorted(scope.creator_ids),
            "kinds": sorted(k.value for k in scope.kinds),
            "updated_at": at,
        }
        stmt = dialect_insert(self.conn, membership_scopes).values(
            membership_id=scope.membership_id, **values
        )
        await self.conn.execute(
            stmt.on_conflict_do_update(index_elements=["membership_id"], set_=values)
        )
        await self.add_products(scope.membership_id, sorted(scope.product_ids), at=at)

    async def add_products(
        self, membership_id: str, product_ids: Sequence[str], *, at: datetime
    ) -> None:
        if product_ids:
            await self.conn.execute(
                insert_ignoring_conflicts(self.conn, membership_scope_products),
                [
                    {"membership_id": membership_id, "product_id": p, "added_at": at}
                    for p in product_ids
                ],
            )

    async def remove_products(self, membership_id: str, product_ids: Sequence[str]) -> None:
        if product_ids:
            await self.conn.execute(
                membership_scope_products.delete().where(
                    membership_scope_products.c.membership_id == membership_id,
                    membership_scope_products.c.product_id.in_(list(product_ids)),
                )
            )

    async def scopes(self, membership_ids: Collection[str]) -> dict[str, AccessScope]:
        """The scope of each membership among ``membership_ids`` (itself only if unset)."""
        ids = list(membership_ids)
        if not ids:
            return {}
        rows = (
            await self.conn.execute(
                select(membership_scopes).where(membership_scopes.c.membership_id.in_(ids))
            )
        ).mappings()
        listed: dict[str, set[str]] = {}
        for r in await self.conn.execute(
            select(
                membership_scope_products.c.membership_id, membership_scope_products.c.product_id
            ).where(membership_scope_products.c.membership_id.in_(ids))
        ):
            listed.setdefault(r[0], set()).add(r[1])
        found = {
            r["membership_id"]: AccessScope(
                membership_id=r["membership_id"],
                everything=bool(r["everything"]),
                creator_ids=frozenset(r["creator_ids"]),
                kinds=frozenset(ProductKind(k) for k in r["kinds"]),
                product_ids=frozenset(listed.get(r["membership_id"], ())),
            )
            for r in rows
        }
        for membership_id in ids:
            if membership_id not in found:
                found[membership_id] = AccessScope(
                    membership_id, product_ids=frozenset(listed.get(membership_id, ()))
                )
        return found

    async def lock(self, customer_id: str, membership_id: str, *, at: datetime) -> None:
        """Hold the customer's membership row until the transaction ends (an upsert takes
        its row lock, waiting for a concurrent holder to commit)."""
        stmt = dialect_insert(self.conn, membership_locks).values(
            customer_id=customer_id, membership_id=membership_id, touched_at=at
        )
        await self.conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["customer_id", "membership_id"],
                set_={"touched_at": stmt.excluded.touched_at},
            )
        )

    async def put_member_price(self, rule: MemberPrice, *, at: datetime) -> None:
        values = {
            "percent_off": rule.percent_off,
            "amounts": dict(rule.amounts) if rule.amounts else None,
            "updated_at": at,
        }
        stmt = dialect_insert(self.conn, member_prices).values(
            product_id=rule.product_id, membership_id=rule.membership_id, **values
        )
        await self.conn.execute(
            stmt.on_conflict_do_update(index_elements=["product_id", "membership_id"], set_=values)
        )

    async def member_prices_for(self, product_ids: Collection[str]) -> list[MemberPrice]:
        rows = await self.conn.execute(
            select(member_prices).where(member_prices.c.product_id.in_(list(product_ids)))
        )
        return [
            MemberPrice(
                product_id=r.product_id,
                membership_id=r.membership_id,
                percent_off=Decimal(r.percent_off) if r.percent_off is not None else None,
                amounts=dict(r.amounts or {}),
            )
            for r in rows
        ]

    async def put_plan(
        self, membership_id: str, first_period_prices: dict[str, int], *, at: datetime
    ) -> None:
        values = {"first_period_prices": first_period_prices, "updated_at": at}
        stmt = dialect_insert(self.conn, subscription_plans).values(
            membership_id=membership_id, **values
        )
        await self.conn.execute(
            stmt.on_conflict_do_update(index_elements=["membership_id"], set_=values)
        )

    async def first_period_prices(self, membership_id: str) -> dict[str, int]:
        row = (
            await self.conn.execute(
                select(subscription_plans.c.first_period_prices).where(
                    subscription_plans.c.membership_id == membership_id
                )
            )
        ).first()
        return {} if row is None else dict(row[0])


class SubscriptionRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def facts(self) -> list[SubscriptionFact]:
        """Every subscription with its plan's price and period, for MRR and churn."""
        rows = await self.conn.execute(
            select(
                subscriptions.c.status,
                subscriptions.c.currency,
                subscriptions.c.created_at,
                subscriptions.c.ended_at,
                products.c.period,
                product_prices.c.amount,
            )
            .join(products, products.c.id == subscriptions.c.product_id)
            .join(
                product_prices,
                (product_prices.c.product_id == subscriptions.c.product_id)
                & (product_prices.c.currency == subscriptions.c.currency),
            )
        )
        return [
            SubscriptionFact(
                status=SubscriptionStatus(r.status),
                currency=r.currency,
                period_price=r.amount,
                period_months=MembershipPeriod(r.period).months,
                created_at=r.created_at,
                ended_at=r.ended_at,
            )
            for r in rows
        ]

    async def add(self, record: SubscriptionRecord) -> bool:
        """Insert; False when the customer already has a live subscription to it."""
        result = await self.conn.execute(
            insert_ignoring_conflicts(self.conn, subscriptions),
            {f: getattr(record, f) for f in _SUB_FIELDS} | {"status": record.status.value},
        )
        return result.rowcount == 1

    async def get(
        self, subscription_id: str, *, for_update: bool = False
    ) -> SubscriptionRecord | None:
        query = select(subscriptions).where(subscriptions.c.id == subscription_id)
        if for_update and self.conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = (await self.conn.execute(query)).mappings().first()
        return None if row is None else _sub(row)

    async def find(
        self, filt: SubscriptionFilter, *, limit: int, starting_after: str | None = None
    ) -> tuple[list[SubscriptionRecord], bool]:
        query = select(subscriptions)
        if filt.customer_id is not None:
            query = query.where(subscriptions.c.customer_id == filt.customer_id)
        if filt.status is not None:
            query = query.where(subscriptions.c.status == filt.status.value)
        if filt.statuses:
            query = query.where(subscriptions.c.status.in_([s.value for s in filt.statuses]))
        if starting_after is not None:
            query = query.where(subscriptions.c.id < starting_after)
        rows = (
            await self.conn.execute(query.order_by(subscriptions.c.id.desc()).limit(limit + 1))
        ).mappings()
        found = [_sub(r) for r in rows]
        return found[:limit], len(found) > limit

    async def holding(self, customer_id: str) -> list[SubscriptionRecord]:
        """The customer's subscriptions that may still give access (not ended)."""
        rows = (
            await self.conn.execute(
                select(subscriptions).where(
                    subscriptions.c.customer_id == customer_id,
                    subscriptions.c.status.in_(["trialing", "active", "past_due"]),
                )
            )
        ).mappings()
        return [_sub(r) for r in rows]

    async def update(
        self,
        subscription_id: str,
        *,
        expected: Collection[SubscriptionStatus],
        at: datetime,
        period_index_was: int | None = None,
        **values: Any,
    ) -> bool:
        """Compare-and-set on the status (and the period index, if given): True for the
        one caller whose update landed."""
        if "status" in values:
            values["status"] = SubscriptionStatus(values["status"]).value
        conditions = [
            subscriptions.c.id == subscription_id,
            subscriptions.c.status.in_([s.value for s in expected]),
        ]
        if period_index_was is not None:
            conditions.append(subscriptions.c.period_index == period_index_was)
        result = await self.conn.execute(
            update(subscriptions).where(*conditions).values(updated_at=at, **values)
        )
        return result.rowcount == 1

    async def due_for_renewal(self, *, before: datetime, limit: int) -> list[SubscriptionRecord]:
        """Active subscriptions whose period ends before ``before`` and that renew."""
        rows = (
            await self.conn.execute(
                select(subscriptions)
                .where(
                    subscriptions.c.status.in_(["active", "trialing"]),
                    subscriptions.c.current_period_end.is_not(None),
                    subscriptions.c.current_period_end <= before,
                    subscriptions.c.cancel_at_period_end.is_(False),
                )
                .order_by(subscriptions.c.current_period_end)
                .limit(limit)
            )
        ).mappings()
        return [_sub(r) for r in rows]

    async def never_started(self, *, before: datetime, limit: int) -> list[SubscriptionRecord]:
        """Active subscriptions created before ``before`` whose first period is unpaid."""
        rows = (
            await self.conn.execute(
                select(subscriptions)
                .where(
                    subscriptions.c.status == "active",
                    subscriptions.c.current_period_end.is_(None),
                    subscriptions.c.created_at <= before,
                )
                .order_by(subscriptions.c.created_at)
                .limit(limit)
            )
        ).mappings()
        return [_sub(r) for r in rows]

    async def ended_before(
        self, *, statuses: Sequence[str], before: datetime, limit: int
    ) -> list[SubscriptionRecord]:
        rows = (
            await self.conn.execute(
                select(subscriptions)
                .where(
                    subscriptions.c.status.in_(list(statuses)),
                    subscriptions.c.current_period_end.is_not(None),
                    subscriptions.c.current_period_end <= before,
                )
                .order_by(subscriptions.c.current_period_end)
                .limit(limit)
            )
        ).mappings()
        return [_sub(r) for r in rows]

    # --- the orders a subscription raises -----------------------------------------------

    async def add_order(self, record: SubscriptionOrder) -> bool:
        """Record an order for a period; False if that period already has one (UNIQUE)."""
        result = await self.conn.execute(
            insert_ignoring_conflicts(self.conn, subscription_orders),
            {f: getattr(record, f) for f in _SO_FIELDS},
        )
        return result.rowcount == 1

    async def order_for_period(
        self, subscription_id: str, period_index: int, kind: str
    ) -> SubscriptionOrder | None:
        row = (
            (
                await self.conn.execute(
                    select(subscription_orders).where(
                        subscription_orders.c.subscription_id == subscription_id,
                        subscription_orders.c.period_index == period_index,
                        subscription_orders.c.kind == kind,
                    )
                )
            )
            .mappings()
            .first()
        )
        return None if row is None else _so(row)

    async def order_by_order_id(self, order_id: str) -> SubscriptionOrder | None:
        row = (
            (
                await self.conn.execute(
                    select(subscription_orders).where(subscription_orders.c.order_id == order_id)
                )
            )
            .mappings()
            .first()
        )
        return None if row is None else _so(row)

    async def orders_of(self, subscription_id: str) -> list[SubscriptionOrder]:
        rows = (
            await self.conn.execute(
                select(subscription_orders)
                .where(subscription_orders.c.subscription_id == subscription_id)
                .order_by(subscription_orders.c.period_index, subscription_orders.c.created_at)
            )
        ).mappings()
        return [_so(r) for r in rows]

    async def set_order(self, order_id: str, *, expected: Collection[str], **values: Any) -> bool:
        result = await self.conn.execute(
            update(subscription_orders)
            .where(
                subscription_orders.c.order_id == order_id,
                subscription_orders.c.status.in_(list(expected)),
            )
            .values(**values)
        )
        return result.rowcount == 1

    async def set_order_status_for_period(
        self, subscription_id: str, period_index: int, *, expected: Collection[str], status: str
    ) -> None:
        await self.conn.execute(
            update(subscription_orders)
            .where(
                subscription_orders.c.subscription_id == subscription_id,
                subscription_orders.c.period_index == period_index,
                subscription_orders.c.status.in_(list(expected)),
            )
            .values(status=status, next_attempt_at=None)
        )

    async def set_order_attempt(
        self, order_id: str, *, attempts: int, next_attempt_at: datetime | None
    ) -> bool:
        """Count one more attempt, compare-and-set on the count read."""
        result = await self.conn.execute(
            update(subscription_orders)
            .where(
                subscription_orders.c.order_id == order_id,
                subscription_orders.c.attempts == attempts,
                subscription_orders.c.status == "failed",
            )
            .values(attempts=attempts + 1, next_attempt_at=next_attempt_at)
        )
        return result.rowcount == 1

    async def retries_due(self, *, now: datetime, limit: int) -> list[SubscriptionOrder]:
        rows = (
            await self.conn.execute(
                select(subscription_orders)
                .where(
                    subscription_orders.c.status.in_(["pending", "failed"]),
                    subscription_orders.c.next_attempt_at.is_not(None),
                    subscription_orders.c.next_attempt_at <= now,
                )
                .order_by(subscription_orders.c.next_attempt_at)
                .limit(limit)
            )
        ).mappings()
        return [_so(r) for r in rows]
