"""Order repository: orders, lines, coupon redemptions and entitlements.

Status changes are compare-and-set (``UPDATE … WHERE status = :expected``); coupon use
is counted by conditional UPDATEs; a grant is unique per order line and product. So two
racing requests produce one change, and a retried one is a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    any_,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.domain.orders import OrderStatus
from tuition.store.db import insert_ignoring_conflicts, status_change
from tuition.store.direct import Direct
from tuition.store.staged import StagedWrites
from tuition.store.tables import (
    coupon_customer_usage,
    coupon_redemptions,
    coupons,
    entitlements,
    order_lines,
    orders,
)


@dataclass(frozen=True, slots=True)
class LineRecord:
    line_index: int
    product_id: str
    kind: str
    title: str
    creator_id: str
    revenue_share: Decimal
    quantity: int
    unit_price: int
    list_amount: int
    promotion_discount: int
    coupon_discount: int
    tax: int
    surcharge: int
    total: int
    components: list[dict[str, Any]]
    refund_reserved: int = 0  # held by pending and succeeded refunds
    amount_refunded: int = 0


@dataclass(frozen=True, slots=True)
class OrderRecord:
    id: str
    customer_id: str
    currency: str
    status: OrderStatus
    subtotal: int
    discount_total: int
    tax_total: int
    surcharge: int
    total: int
    amount_refunded: int
    coupon_code: str | None
    tax_region: str | None
    pricing: dict[str, Any]
    return_url: str | None
    metadata: dict[str, Any]
    expires_at: datetime
    paid_at: datetime | None
    closed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    lines: tuple[LineRecord, ...] = ()
    surface: str = "web"  # the price list it was priced from (see Product.surface_prices)
    # What channels need to know of the buyer: {"wechat_openid": …} for WeChat JSAPI.
    payer: dict[str, str] | None = None
    referral_code: str | None = None  # a promoter's code: its split is order_commissions
    partner_id: str | None = None  # the partner platform that sold it: order_partner_shares


@dataclass(frozen=True, slots=True)
class EntitlementRecord:
    id: str
    customer_id: str
    product_id: str
    order_id: str | None  # None for a family member's App Store grant
    line_index: int
    source_product_id: str | None
    granted_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def active_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True, slots=True)
class OrderFilter:
    customer_id: str | None = None
    status: OrderStatus | None = None
    created_gte: datetime | None = None
    created_lt: datetime | None = None


class OrderRepository:
    def __init__(self, conn: AsyncConnection, staged: StagedWrites) -> None:
        self.conn, self.staged = conn, staged

    # --- orders -------------------------------------------------------------------------

    async def add(self, order: OrderRecord) -> None:
        """Stage the order and its lines (they go out with the commit): nothing may read
        them back in this transaction, and rows referencing them are staged too or
        written after ``staged.flush()``."""
        self.staged.insert(orders, {f: getattr(order, f) for f in _ORDER_FIELDS})
        self.staged.insert(
            order_lines,
            [
                {"order_id": order.id, **{f: getattr(line, f) for f in _LINE_FIELDS}}
                for line in order.lines
            ],
        )

    async def get(self, order_id: str, *, with_lines: bool = True) -> OrderRecord | None:
        if not with_lines:
            row = await _SELECT_ORDER.first(self.conn, {"order_id": order_id})
            return None if row is None else _order(row, ())
        # The order's columns repeat on each of its lines' rows: one round trip.
        rows = await _SELECT_ORDER_WITH_LINES.rows(self.conn, {"order_id": order_id})
        if not rows:
            return None
        lines = tuple(
            LineRecord(**{f: r[f"line__{f}"] for f in _LINE_FIELDS})
            for r in rows
            if r["line__line_index"] is not None
        )
        return _order(rows[0], lines)

    async def get_with_summary(self, order_id: str) -> tuple[OrderRecord, str | None, int] | None:
        """The order without its lines, its first line's title and its number of lines, in
        one statement: what starting a payment needs (the gateway's subject line)."""
        m = await _SELECT_ORDER_SUMMARY.first(self.conn, {"order_id": order_id})
        if m is None:
            return None
        return _order(m, ()), m["first_line_title__"], int(m["line_count__"])

    async def paid_with_kind(self, kind: str) -> list[str]:
        """Ids of orders ever paid that have a line of ``kind``, oldest first."""
        rows = await self.conn.execute(
            select(orders.c.id)
            .where(
                orders.c.status.in_(["paid", "partially_refunded", "refunded"]),
                exists().where(order_lines.c.order_id == orders.c.id, order_lines.c.kind == kind),
            )
            .order_by(orders.c.id)
        )
        return [r[0] for r in rows]

    async def find(
        self, filt: OrderFilter, *, limit: int, starting_after: str | None
    ) -> tuple[list[OrderRecord], bool]:
        query: Select[Any] = select(orders)
        if filt.customer_id is not None:
            query = query.where(orders.c.customer_id == filt.customer_id)
        if filt.status is not None:
            query = query.where(orders.c.status == filt.status.value)
        if filt.created_gte is not None:
            query = query.where(orders.c.created_at >= filt.created_gte)
        if filt.created_lt is not None:
            query = query.where(orders.c.created_at < filt.created_lt)
        if starting_after is not None:
            query = query.where(orders.c.id < starting_after)
        rows = (await self.conn.execute(query.order_by(orders.c.id.desc()).limit(limit + 1))).all()
        page = rows[:limit]
        lines = await self._lines([r.id for r in page])
        return [_order(r._mapping, lines.get(r.id, ())) for r in page], len(rows) > limit

    async def set_status(
        self,
        order_id: str,
        *,
        expected: OrderStatus,
        target: OrderStatus,
        at: datetime,
        **values: Any,
    ) -> bool:
        """Compare-and-set: True only for the caller whose expected status still held."""
        changed = await _UPDATE_ORDER_IF_STATUS.rowcount(
            self.conn,
            {
                "where_id": order_id,
                "where_status": expected.value,
                **status_change(orders, target.value, at, values),
            },
        )
        return changed == 1

    async def due_for_expiry(self, now: datetime, limit: int) -> list[str]:
        rows = await self.conn.execute(
            select(orders.c.id)
            .where(
                orders.c.status == OrderStatus.PENDING_PAYMENT.value,
                orders.c.expires_at <= now,
            )
            .order_by(orders.c.expires_at)
            .limit(limit)
        )
        return [r.id for r in rows]

    async def _lines(self, order_ids: Sequence[str]) -> dict[str, tuple[LineRecord, ...]]:
        if not order_ids:
            return {}
        rows = await self.conn.execute(_SELECT_LINES, {"order_ids": list(order_ids)})
        out: dict[str, list[LineRecord]] = {}
        for row in rows:
            m = row._mapping
            out.setdefault(m["order_id"], []).append(LineRecord(**{f: m[f] for f in _LINE_FIELDS}))
        return {k: tuple(v) for k, v in out.items()}

    # --- coupon redemptions -------------------------------------------------------------

    async def coupon_usage(self, coupon_id: str, customer_id: str) -> tuple[int, int]:
        """(times redeemed by everyone, by this customer): for messages, not for limits."""
        total = (
            await self.conn.execute(
                select(coupons.c.times_redeemed).where(coupons.c.id == coupon_id)
            )
        ).scalar_one()
        mine = (
            await self.conn.execute(
                select(coupon_customer_usage.c.times_redeemed).where(
                    coupon_customer_usage.c.coupon_id == coupon_id,
                    coupon_customer_usage.c.customer_id == customer_id,
                )
            )
        ).scalar()
        return int(total), int(mine or 0)

    async def redeem_coupon(
        self,
        *,
        coupon_id: str,
        order_id: str,
        customer_id: str,
        max_redemptions: int | None,
        max_per_customer: int | None,
        at: datetime,
    ) -> str | None:
        """Count one use atomically; the refusal code when a limit is reached, else None.

        For an order that held a coupon before, call :meth:`release_coupon` first.

        Conditional UPDATEs are the guard: concurrent checkouts serialise on the coupon
        row and each re-checks the limit against the committed count. Its redemption row
        references the order, which may be staged: staged writes go out first.
        """
        await self.staged.flush()
        taken = await self.conn.execute(
            update(coupons)
            .where(
                coupons.c.id == coupon_id,
                or_(
                    coupons.c.max_redemptions.is_(None),
                    coupons.c.times_redeemed < coupons.c.max_redemptions,
                ),
            )
            .values(times_redeemed=coupons.c.times_redeemed + 1)
        )
        if taken.rowcount != 1:
            return "coupon_exhausted"
        await self.conn.execute(
            insert_ignoring_conflicts(self.conn, coupon_customer_usage).values(
                coupon_id=coupon_id, customer_id=customer_id, times_redeemed=0
            )
        )
        usage = coupon_customer_usage.c
        mine = await self.conn.execute(
            update(coupon_customer_usage)
            .where(
                usage.coupon_id == coupon_id,
                usage.customer_id == customer_id,
                usage.times_redeemed < max_per_customer if max_per_customer is not None else true(),
            )
            .values(times_redeemed=usage.times_redeemed + 1)
        )
        if mine.rowcount != 1:
            return "coupon_customer_limit_reached"
        # An order has one redemption row (order_id is its key): a re-priced order whose
        # earlier coupon was released takes its row over; a new order inserts one.
        reused = await self.conn.execute(
            update(coupon_redemptions)
            .where(
                coupon_redemptions.c.order_id == order_id,
                coupon_redemptions.c.released_at.is_not(None),
            )
            .values(coupon_id=coupon_id, customer_id=customer_id, redeemed_at=at, released_at=None)
        )
        if reused.rowcount != 1:
            await self.conn.execute(
                insert(coupon_redemptions).values(
                    order_id=order_id, coupon_id=coupon_id, customer_id=customer_id, redeemed_at=at
                )
            )
        return None

    async def release_coupon(self, order_id: str, at: datetime) -> bool:
        """Give an order's coupon use back, once; False if it had none or already did."""
        row = (
            await self.conn.execute(
                update(coupon_redemptions)
                .where(
                    coupon_redemptions.c.order_id == order_id,
                    coupon_redemptions.c.released_at.is_(None),
                )
                .values(released_at=at)
                .returning(coupon_redemptions.c.coupon_id, coupon_redemptions.c.customer_id)
            )
        ).first()
        if row is None:
            return False
        await self.conn.execute(
            update(coupons)
            .where(coupons.c.id == row.coupon_id)
            .values(times_redeemed=coupons.c.times_redeemed - 1)
        )
        await self.conn.execute(
            update(coupon_customer_usage)
            .where(
                coupon_customer_usage.c.coupon_id == row.coupon_id,
                coupon_customer_usage.c.customer_id == row.customer_id,
            )
            .values(times_redeemed=coupon_customer_usage.c.times_redeemed - 1)
        )
        return True

    # --- entitlements -------------------------------------------------------------------

    async def grant(self, records: Sequence[EntitlementRecord]) -> int:
        """Insert grants; ones already made for the same order line are skipped."""
        if not records:
            return 0
        result = await self.conn.execute(
            insert_ignoring_conflicts(self.conn, entitlements),
            [{f: getattr(r, f) for f in _ENTITLEMENT_FIELDS} for r in records],
        )
        return max(result.rowcount, 0)

    def stage_grants(self, records: Sequence[EntitlementRecord]) -> None:
        """Stage :meth:`grant` (the grants go out with the commit or the next flush)."""
        self.staged.insert(
            entitlements,
            [{f: getattr(r, f) for f in _ENTITLEMENT_FIELDS} for r in records],
            ignore_conflicts=True,
        )

    async def revoke(
        self, order_id: str, line_index: int | None, at: datetime
    ) -> list[EntitlementRecord]:
        """End the grants of one line (or of the whole order) that are still in force; the
        grants this call ended, so each revocation is reported once."""
        conditions = [entitlements.c.order_id == order_id, entitlements.c.revoked_at.is_(None)]
        if line_index is not None:
            conditions.append(entitlements.c.line_index == line_index)
        rows = await self.conn.execute(
            update(entitlements)
            .where(and_(*conditions))
            .values(revoked_at=at)
            .returning(*entitlements.c)
        )
        return [EntitlementRecord(**{f: r._mapping[f] for f in _ENTITLEMENT_FIELDS}) for r in rows]

    async def entitlements_of(
        self, customer_id: str, *, product_id: str | None = None
    ) -> list[EntitlementRecord]:
        query = select(entitlements).where(entitlements.c.customer_id == customer_id)
        if product_id is not None:
            query = query.where(entitlements.c.product_id == product_id)
        rows = await self.conn.execute(query.order_by(entitlements.c.id))
        return [EntitlementRecord(**{f: r._mapping[f] for f in _ENTITLEMENT_FIELDS}) for r in rows]

    async def permanent_holdings(self, customer_id: str, product_ids: Sequence[str]) -> set[str]:
        """Which of ``product_ids`` the customer holds for good (unrevoked, no expiry)."""
        rows = await _SELECT_PERMANENT_HOLDINGS.rows(
            self.conn, {"customer_id": customer_id, "product_ids": list(product_ids)}
        )
        return {r["product_id"] for r in rows}

    # --- re-pricing (the hosted checkout page's coupon) -------------------------------

    async def hold_total(self, order_id: str, *, total: int, at: datetime) -> bool:
        """Bump the order's version if it is still payable at ``total`` (row lock held)."""
        held = await _HOLD_TOTAL.rowcount(
            self.conn, {"where_id": order_id, "where_total": total, "updated_at": at}
        )
        return held == 1

    async def extend_expiry(self, order_id: str, *, until: datetime, at: datetime) -> bool:
        """Move a pending order's expiry later (never earlier); True if it moved."""
        result = await self.conn.execute(
            update(orders)
            .where(
                orders.c.id == order_id,
                orders.c.status == OrderStatus.PENDING_PAYMENT.value,
                orders.c.expires_at < until,
            )
            .values(expires_at=until, updated_at=at)
        )
        return result.rowcount == 1

    async def claim_version(
        self, order_id: str, *, coupon_code: str | None, seen: datetime, at: datetime
    ) -> bool:
        """Compare-and-set on the version the caller read: still ``pending_payment``, still
        the same coupon, not updated since ``seen``. Takes the order's row lock, so a
        concurrent change (a re-pricing, a new payment attempt) waits here and then finds
        the order changed."""
        same_coupon = (
            orders.c.coupon_code.is_(None)
            if coupon_code is None
            else orders.c.coupon_code == coupon_code
        )
        result = await self.conn.execute(
            update(orders)
            .where(
                orders.c.id == order_id,
                orders.c.status == OrderStatus.PENDING_PAYMENT.value,
                orders.c.updated_at == seen,
                same_coupon,
            )
            .values(updated_at=at)
        )
        return result.rowcount == 1

    async def write_pricing(self, order: OrderRecord, *, at: datetime) -> bool:
        """Store ``order``'s new amounts, coupon, breakdown and line amounts (same lines)."""
        result = await self.conn.execute(
            update(orders)
            .where(
                orders.c.id == order.id,
                orders.c.status == OrderStatus.PENDING_PAYMENT.value,
            )
            .values(
                subtotal=order.subtotal,
                discount_total=order.discount_total,
                tax_total=order.tax_total,
                surcharge=order.surcharge,
                total=order.total,
                coupon_code=order.coupon_code,
                pricing=order.pricing,
                updated_at=at,
            )
        )
        if result.rowcount != 1:
            return False
        for line in order.lines:
            await self.conn.execute(
                update(order_lines)
                .where(
                    order_lines.c.order_id == order.id,
                    order_lines.c.line_index == line.line_index,
                )
                .values(
                    promotion_discount=line.promotion_discount,
                    coupon_discount=line.coupon_discount,
                    tax=line.tax,
                    surcharge=line.surcharge,
                    total=line.total,
                    components=line.components,
                )
            )
        return True


_ORDER_FIELDS = [f for f in OrderRecord.__dataclass_fields__ if f != "lines"]
_LINE_FIELDS = list(LineRecord.__dataclass_fields__)
_ENTITLEMENT_FIELDS = list(EntitlementRecord.__dataclass_fields__)

# The payment flow's statements, built once (see ``store/db.py`` on prebuilt statements).
# In an UPDATE the SET columns are the parameters named after columns; WHERE parameters
# are named ``where_*`` so they never collide with them.
_SELECT_ORDER = Direct(select(orders).where(orders.c.id == bindparam("order_id")))
_SELECT_ORDER_WITH_LINES = Direct(
    select(orders, *(order_lines.c[f].label(f"line__{f}") for f in _LINE_FIELDS))
    .outerjoin(order_lines, order_lines.c.order_id == orders.c.id)
    .where(orders.c.id == bindparam("order_id"))
    .order_by(order_lines.c.line_index)
)
_SELECT_ORDER_SUMMARY = Direct(
    select(
        orders,
        select(order_lines.c.title)
        .where(order_lines.c.order_id == orders.c.id)
        .order_by(order_lines.c.line_index)
        .limit(1)
        .scalar_subquery()
        .label("first_line_title__"),
        select(func.count())
        .select_from(order_lines)
        .where(order_lines.c.order_id == orders.c.id)
        .scalar_subquery()
        .label("line_count__"),
    ).where(orders.c.id == bindparam("order_id"))
)
_SELECT_LINES = (
    select(order_lines)
    .where(order_lines.c.order_id.in_(bindparam("order_ids", expanding=True)))
    .order_by(order_lines.c.order_id, order_lines.c.line_index)
)
_UPDATE_ORDER_IF_STATUS = Direct(
    update(orders).where(
        orders.c.id == bindparam("where_id"), orders.c.status == bindparam("where_status")
    )
)
_HOLD_TOTAL = Direct(
    update(orders).where(
        orders.c.id == bindparam("where_id"),
        orders.c.status == OrderStatus.PENDING_PAYMENT.value,
        orders.c.total == bindparam("where_total"),
    )
)


def _permanent_holdings(product_is_wanted: ColumnElement[bool]) -> Select[Any]:
    return (
        select(entitlements.c.product_id)
        .distinct()
        .where(
            entitlements.c.customer_id == bindparam("customer_id"),
            product_is_wanted,
            entitlements.c.revoked_at.is_(None),
            entitlements.c.expires_at.is_(None),
        )
    )


# ``= ANY($1)`` on PostgreSQL (run on the driver: store/direct.py); SQLite expands IN.
_SELECT_PERMANENT_HOLDINGS = Direct(
    _permanent_holdings(
        entitlements.c.product_id
        == any_(bindparam("product_ids", type_=postgresql.ARRAY(entitlements.c.product_id.type)))
    ),
    sqlite=_permanent_holdings(
        entitlements.c.product_id.in_(bindparam("product_ids", expanding=True))
    ),
)


def _order(m: Any, lines: tuple[LineRecord, ...]) -> OrderRecord:
    values = {f: m[f] for f in _ORDER_FIELDS}
    values["status"] = OrderStatus(values["status"])
    return OrderRecord(**values, lines=lines)
