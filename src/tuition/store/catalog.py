"""Catalog repository: creators, products, prices, bundles, tax rates and coupons.

Rows come back as the domain's own objects (``Product``, ``Coupon``, ``TaxRule``) so
pricing and orders never see a row; what only the API shows (description, metadata,
timestamps, redemption count) rides beside them in small records.

Lists are pages over the time-ordered id, newest first: ``starting_after`` is the last
id the caller saw and the page holds the ``limit`` ids below it.

Lookups by a malformed id or a key holding NUL answer "not found" without querying:
such a value names no row, and PostgreSQL would refuse the NUL with an error (a 500).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    RowMapping,
    Select,
    String,
    any_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    insert,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.domain.catalog import (
    Creator,
    MembershipPeriod,
    Product,
    ProductKind,
    ProductStatus,
    Promotion,
)
from tuition.domain.coupons import Coupon, CouponKind, normalize_code
from tuition.domain.ids import Prefix, is_valid_id
from tuition.domain.pricing import TaxRule
from tuition.store.db import comma_joined
from tuition.store.direct import Direct
from tuition.store.tables import (
    bundle_components,
    coupon_redemptions,
    coupons,
    creators,
    member_prices,
    orders,
    product_prices,
    product_surface_prices,
    products,
    tax_rates,
)


@dataclass(frozen=True, slots=True)
class CreatorRecord:
    creator: Creator
    external_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ProductRecord:
    product: Product
    description: str
    metadata: Mapping[str, str]
    created_at: datetime
    updated_at: datetime
    # The refund rules set on the product, as given (a checked, possibly partial
    # RefundPolicy in JSON form, see domain/refunds.py); None: the platform's default.
    refund_policy: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CouponRecord:
    id: str
    coupon: Coupon
    times_redeemed: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class TaxRateRecord:
    rule: TaxRule
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ProductFilter:
    """Conditions a listed product meets; ``currency`` means "has a price in"."""

    kind: ProductKind | None = None
    status: ProductStatus | None = None
    creator_id: str | None = None
    currency: str | None = None
    text: str | None = None
    """The product's id, or a part of its title in any case (the console's search)."""


@dataclass(frozen=True, slots=True)
class Redemption:
    """One order's use of a coupon; ``released_at`` set when the order did not complete."""

    order_id: str
    customer_id: str
    redeemed_at: datetime
    released_at: datetime | None
    currency: str
    discount_total: int
    total: int
    status: str


def _paged(
    stmt: Select[Any], id_column: ColumnElement[str], limit: int, starting_after: str | None
) -> Select[Any]:
    if starting_after is not None:
        stmt = stmt.where(id_column < starting_after)
    # One row more than asked for tells whether another page follows.
    return stmt.order_by(id_column.desc()).limit(limit + 1)


def _product_filter(stmt: Select[Any], where: ProductFilter) -> Select[Any] | None:
    """``stmt`` narrowed to the products ``where`` describes; None when none can match."""
    if where.text:
        text = where.text.strip()
        stmt = stmt.where(
            or_(
                products.c.id == text,
                func.lower(products.c.title).contains(text.lower(), autoescape=True),
            )
        )
    if where.kind is not None:
        stmt = stmt.where(products.c.kind == str(where.kind))
    if where.status is not None:
        stmt = stmt.where(products.c.status == str(where.status))
    if where.creator_id is not None:
        if not is_valid_id(where.creator_id, Prefix.CREATOR):
            return None
        stmt = stmt.where(products.c.creator_id == where.creator_id)
    if where.currency is not None:
        stmt = stmt.where(
            exists().where(
                product_prices.c.product_id == products.c.id,
                product_prices.c.currency == where.currency,
            )
        )
    return stmt


def _either_way(
    stmt: Select[Any],
    id_column: ColumnElement[str],
    limit: int,
    starting_after: str | None,
    ending_before: str | None,
) -> tuple[Select[Any], bool]:
    """As :func:`_paged`, or (``ending_before`` given) the ``limit`` ids just above it,
    read upwards: True then, and the caller reverses them to newest first."""
    if ending_before is None:
        return _paged(stmt, id_column, limit, starting_after), False
    return stmt.where(id_column > ending_before).order_by(id_column.asc()).limit(limit + 1), True


def _json_or_null(value: Mapping[str, Any] | None) -> Any:
    # JSON columns store Python None as the JSON literal 'null'; write SQL NULL instead.
    return null() if value is None else dict(value)


def _promotion_json(promotion: Promotion | None) -> dict[str, Any] | None:
    if promotion is None:
        return None
    return {
        "starts_at": promotion.starts_at.isoformat(),
        "ends_at": promotion.ends_at.isoformat(),
        "percent_off": None if promotion.percent_off is None else str(promotion.percent_off),
        "amount_off": None if promotion.amount_off is None else dict(promotion.amount_off),
    }


def _promotion_from(data: Mapping[str, Any] | None) -> Promotion | None:
    if data is None:
        return None
    percent = data.get("percent_off")
    amount = data.get("amount_off")
    return Promotion(
        starts_at=datetime.fromisoformat(data["starts_at"]),
        ends_at=datetime.fromisoformat(data["ends_at"]),
        percent_off=None if percent is None else Decimal(percent),
        amount_off=None if amount is None else {str(k): int(v) for k, v in amount.items()},
    )


def _creator(row: RowMapping) -> CreatorRecord:
    return CreatorRecord(
        creator=Creator(row["id"], row["name"], row["default_revenue_share"]),
        external_id=row["external_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _coupon(row: RowMapping) -> CouponRecord:
    coupon = Coupon(
        code=row["code"],
        kind=CouponKind(row["kind"]),
        percent_off=row["percent_off"],
        amount_off=row["amount_off"],
        min_spend=row["min_spend"],
        applies_to_products=frozenset(row["applies_to_products"]),
        applies_to_kinds=frozenset(ProductKind(k) for k in row["applies_to_kinds"]),
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        max_redemptions=row["max_redemptions"],
        max_per_customer=row["max_per_customer"],
        stacks_with_promotions=row["stacks_with_promotions"],
        active=row["active"],
    )
    return CouponRecord(
        row["id"], coupon, row["times_redeemed"], row["created_at"], row["updated_at"]
    )


class CatalogRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def _first(self, stmt: Select[Any]) -> RowMapping | None:
        row: RowMapping | None = (await self.conn.execute(stmt)).mappings().first()
        return row

    async def _insert_unique(self, stmt: Any) -> bool:
        """Run an INSERT/UPDATE; False if a UNIQUE constraint refused it (savepoint kept)."""
        try:
            async with self.conn.begin_nested():
                await self.conn.execute(stmt)
        except IntegrityError:
            return False
        return True

    # --- creators -----------------------------------------------------------------------

    async def add_creator(self, record: CreatorRecord) -> bool:
        """Insert a creator; False if its ``external_id`` is taken."""
        return await self._insert_unique(
            insert(creators).values(
                id=record.creator.id,
                name=record.creator.name,
                default_revenue_share=record.creator.default_revenue_share,
                external_id=record.external_id,
                created_at=record.created_at,
                updated_at=record.updated_at,
            )
        )

    async def update_creator(self, record: CreatorRecord) -> bool:
        """Write a creator's mutable fields; False if its ``external_id`` is taken."""
        return await self._insert_unique(
            update(creators)
            .where(creators.c.id == record.creator.id)
            .values(
                name=record.creator.name,
                default_revenue_share=record.creator.default_revenue_share,
                external_id=record.external_id,
                updated_at=record.updated_at,
            )
        )

    async def get_creator(
        self, creator_id: str, *, for_update: bool = False
    ) -> CreatorRecord | None:
        if not is_valid_id(creator_id, Prefix.CREATOR):
            return None
        stmt = select(creators).where(creators.c.id == creator_id)
        row = await self._first(stmt.with_for_update() if for_update else stmt)
        return _creator(row) if row else None

    async def list_creators(
        self, *, limit: int, starting_after: str | None, ending_before: str | None = None
    ) -> tuple[list[CreatorRecord], bool]:
        stmt, back = _either_way(
            select(creators), creators.c.id, limit, starting_after, ending_before
        )
        rows = (await self.conn.execute(stmt)).mappings().all()
        found = [_creator(row) for row in rows[:limit]]
        return (list(reversed(found)) if back else found), len(rows) > limit

    async def count_creators(self) -> int:
        return int(await self.conn.scalar(select(func.count()).select_from(creators)) or 0)

    async def creators_by_ids(self, ids: Collection[str]) -> dict[str, CreatorRecord]:
        """The creators with these ids (unknown ones absent): names for pages that list
        products or accounts by creator id."""
        wanted = sorted({i for i in ids if is_valid_id(i, Prefix.CREATOR)})
        if not wanted:
            return {}
        rows = await self.conn.execute(select(creators).where(creators.c.id.in_(wanted)))
        return {r["id"]: _creator(r) for r in rows.mappings()}

    # --- products -----------------------------------------------------------------------

    async def add_product(self, record: ProductRecord) -> None:
        product = record.product
        await self.conn.execute(
            insert(products).values(
                id=product.id,
                creator_id=product.creator_id,
                kind=str(product.kind),
                status=str(product.status),
                period=None if product.period is None else str(product.period),
                topup_credit=product.topup_credit,
                topup_coins=product.topup_coins,
                topup_bonus_coins=product.topup_bonus_coins,
                created_at=record.created_at,
                **self._mutable_product_values(record),
            )
        )
        await self._write_prices(product)
        if product.components:
            await self.conn.execute(
                insert(bundle_components),
                [
                    {"bundle_id": product.id, "component_id": component, "position": position}
                    for position, component in enumerate(product.components)
                ],
            )

    async def update_product(self, record: ProductRecord) -> None:
        """Write the fields a product may change after creation, prices included."""
        await self.conn.execute(
            update(products)
            .where(products.c.id == record.product.id)
            .values(**self._mutable_product_values(record))
        )
        for table in (product_prices, product_surface_prices):
            await self.conn.execute(delete(table).where(table.c.product_id == record.product.id))
        await self._write_prices(record.product)

    @staticmethod
    def _mutable_product_values(record: ProductRecord) -> dict[str, Any]:
        product = record.product
        return {
            "title": product.title,
            "description": record.description,
            "revenue_share": product.revenue_share,
            "promotion": _json_or_null(_promotion_json(product.promotion)),
            "refund_policy": _json_or_null(record.refund_policy),
            "metadata": dict(record.metadata),
            "updated_at": record.updated_at,
        }

    async def _write_prices(self, product: Product) -> None:
        await self.conn.execute(
            insert(product_prices),
            [
                {"product_id": product.id, "currency": currency, "amount": amount}
                for currency, amount in product.prices.items()
            ],
        )
        surface_rows = [
            {"product_id": product.id, "surface": surface, "currency": currency, "amount": amount}
            for surface, prices in product.surface_prices.items()
            for currency, amount in prices.items()
        ]
        if surface_rows:
            await self.conn.execute(insert(product_surface_prices), surface_rows)

    async def set_product_status(
        self, product_id: str, *, expected: ProductStatus, status: ProductStatus, at: datetime
    ) -> bool:
        """Compare-and-set the status; False if the product is not in ``expected``."""
        if not is_valid_id(product_id, Prefix.PRODUCT):
            return False
        result = await self.conn.execute(
            update(products)
            .where(products.c.id == product_id, products.c.status == str(expected))
            .values(status=str(status), updated_at=at)
        )
        return result.rowcount == 1

    async def get_product(
        self, product_id: str, *, for_update: bool = False
    ) -> ProductRecord | None:
        if not is_valid_id(product_id, Prefix.PRODUCT):
            return None
        if for_update:
            # Lock first, then read. One locking statement would return the product row
            # as committed by a writer it waited for but its prices (subqueries) as they
            # stood before the wait, and a concurrent price change would be written back.
            locked = select(products.c.id).where(products.c.id == product_id).with_for_update()
            if (await self.conn.execute(locked)).first() is None:
                return None
        found = await self._load(select(*_PRODUCT).where(products.c.id == product_id))
        return found[0] if found else None

    async def list_products(
        self,
        where: ProductFilter,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None = None,
    ) -> tuple[list[ProductRecord], bool]:
        """A page newest first: below ``starting_after``, or (for a page back) the
        ``limit`` ids just above ``ending_before``; and whether more lie that way."""
        stmt = _product_filter(select(*_PRODUCT), where)
        if stmt is None:
            return [], False
        paged, back = _either_way(stmt, products.c.id, limit, starting_after, ending_before)
        rows = await self._load(paged)
        found = rows[:limit]
        return (list(reversed(found)) if back else found), len(rows) > limit

    async def count_products(self, where: ProductFilter) -> int:
        stmt = _product_filter(select(func.count()).select_from(products), where)
        return 0 if stmt is None else int(await self.conn.scalar(stmt) or 0)

    async def products_by_ids(self, ids: Collection[str]) -> dict[str, Product]:
        """The products with these ids, plus every component of a bundle among them.

        Unknown ids are simply absent from the result. Components are included so the
        mapping can be handed to pricing as its ``catalog`` unchanged.
        """
        wanted = {i for i in ids if is_valid_id(i, Prefix.PRODUCT)}
        found = {r.product.id: r.product for r in await self._by_ids(wanted)}
        # Components are never bundles (a rule enforced on creation), so one more level
        # completes the mapping.
        missing = {c for p in found.values() for c in p.components} - found.keys()
        if missing:
            found.update((r.product.id, r.product) for r in await self._by_ids(missing))
        return found

    async def refund_policies(self, ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """The refund rules set on these products, as given (those on the default are
        absent); read them over the default with ``domain.refunds.parse_policy``."""
        rows = await self.conn.execute(
            select(products.c.id, products.c.refund_policy).where(
                products.c.id.in_(list(ids)), products.c.refund_policy.is_not(None)
            )
        )
        return {r.id: dict(r.refund_policy) for r in rows if r.refund_policy is not None}

    async def bundles_containing(self, product_id: str) -> list[Product]:
        """Every bundle that lists ``product_id`` as a component, archived ones included."""
        bundle_ids = select(bundle_components.c.bundle_id).where(
            bundle_components.c.component_id == product_id
        )
        stmt = select(*_PRODUCT).where(products.c.id.in_(bundle_ids)).order_by(products.c.id)
        return [r.product for r in await self._load(stmt)]

    async def _by_ids(self, ids: Collection[str]) -> list[ProductRecord]:
        rows = await _SELECT_PRODUCTS.rows(self.conn, {"ids": list(ids)})
        return [_product(row) for row in rows]

    async def _load(
        self, stmt: Select[Any], params: Mapping[str, Any] | None = None
    ) -> list[ProductRecord]:
        """Run a ``select(*_PRODUCT)``: products with their prices and components."""
        rows = (await self.conn.execute(stmt, params)).mappings().all()
        return [_product(row) for row in rows]

    # --- tax rates ----------------------------------------------------------------------

    async def put_tax_rate(self, rule: TaxRule, at: datetime) -> None:
        """Insert or replace the rate of ``rule.region`` in one statement (no race)."""
        values = {"rate": rule.rate, "inclusive": rule.inclusive, "updated_at": at}
        keys = [tax_rates.c.region]
        if self.conn.dialect.name == "postgresql":
            pg = postgresql.insert(tax_rates).values(region=rule.region, **values)
            await self.conn.execute(pg.on_conflict_do_update(index_elements=keys, set_=values))
        else:
            lite = sqlite.insert(tax_rates).values(region=rule.region, **values)
            await self.conn.execute(lite.on_conflict_do_update(index_elements=keys, set_=values))

    async def tax_rate(self, region: str) -> TaxRateRecord | None:
        if "\x00" in region:
            return None
        row = await self._first(select(tax_rates).where(tax_rates.c.region == region))
        return _tax_rate(row) if row else None

    async def tax_rule(self, region: str) -> TaxRule | None:
        found = await self.tax_rate(region)
        return None if found is None else found.rule

    async def list_tax_rates(self) -> list[TaxRateRecord]:
        rows = await self.conn.execute(select(tax_rates).order_by(tax_rates.c.region))
        return [_tax_rate(row) for row in rows.mappings()]

    # --- coupons ------------------------------------------------------------------------

    async def add_coupon(self, record: CouponRecord) -> bool:
        """Insert a coupon; False if its code is taken (the UNIQUE constraint decides)."""
        coupon = record.coupon
        return await self._insert_unique(
            insert(coupons).values(
                id=record.id,
                code=coupon.code,
                kind=str(coupon.kind),
                percent_off=coupon.percent_off,
                amount_off=_json_or_null(coupon.amount_off),
                min_spend=_json_or_null(coupon.min_spend),
                applies_to_products=sorted(coupon.applies_to_products),
                applies_to_kinds=sorted(str(k) for k in coupon.applies_to_kinds),
                starts_at=coupon.starts_at,
                ends_at=coupon.ends_at,
                max_redemptions=coupon.max_redemptions,
                max_per_customer=coupon.max_per_customer,
                stacks_with_promotions=coupon.stacks_with_promotions,
                active=coupon.active,
                times_redeemed=record.times_redeemed,
                created_at=record.created_at,
                updated_at=record.updated_at,
            )
        )

    async def coupon_record(self, code: str, *, for_update: bool = False) -> CouponRecord | None:
        """The coupon with this code, matched case-insensitively."""
        if "\x00" in code:
            return None
        stmt = select(coupons).where(coupons.c.code == normalize_code(code))
        row = await self._first(stmt.with_for_update() if for_update else stmt)
        return _coupon(row) if row else None

    async def coupon_by_code(self, code: str) -> tuple[str, Coupon] | None:
        """``(coupon id, Coupon)`` for a code matched case-insensitively, or None."""
        found = await self.coupon_record(code)
        return None if found is None else (found.id, found.coupon)

    async def update_coupon(
        self,
        coupon_id: str,
        *,
        ends_at: datetime | None,
        max_redemptions: int | None,
        active: bool,
        at: datetime,
    ) -> None:
        """Write the fields a coupon may change; ``times_redeemed`` is never touched here."""
        await self.conn.execute(
            update(coupons)
            .where(coupons.c.id == coupon_id)
            .values(ends_at=ends_at, max_redemptions=max_redemptions, active=active, updated_at=at)
        )

    async def list_coupons(
        self, *, limit: int, starting_after: str | None, ending_before: str | None = None
    ) -> tuple[list[CouponRecord], bool]:
        stmt, back = _either_way(
            select(coupons), coupons.c.id, limit, starting_after, ending_before
        )
        rows = (await self.conn.execute(stmt)).mappings().all()
        found = [_coupon(row) for row in rows[:limit]]
        return (list(reversed(found)) if back else found), len(rows) > limit

    async def count_coupons(self) -> int:
        return int(await self.conn.scalar(select(func.count()).select_from(coupons)) or 0)

    async def redemptions(
        self, coupon_id: str, *, limit: int, offset: int
    ) -> tuple[list[Redemption], int]:
        """A coupon's redemptions, newest first, with their orders' amounts; and how many."""
        total = await self.conn.scalar(
            select(func.count())
            .select_from(coupon_redemptions)
            .where(coupon_redemptions.c.coupon_id == coupon_id)
        )
        rows = await self.conn.execute(
            select(
                coupon_redemptions,
                orders.c.currency,
                orders.c.discount_total,
                orders.c.total,
                orders.c.status,
            )
            .join(orders, orders.c.id == coupon_redemptions.c.order_id)
            .where(coupon_redemptions.c.coupon_id == coupon_id)
            .order_by(coupon_redemptions.c.redeemed_at.desc(), coupon_redemptions.c.order_id)
            .limit(limit)
            .offset(offset)
        )
        found = [
            Redemption(
                order_id=r["order_id"],
                customer_id=r["customer_id"],
                redeemed_at=r["redeemed_at"],
                released_at=r["released_at"],
                currency=r["currency"],
                discount_total=int(r["discount_total"]),
                total=int(r["total"]),
                status=r["status"],
            )
            for r in rows.mappings()
        ]
        return found, int(total or 0)


def _tax_rate(row: RowMapping) -> TaxRateRecord:
    return TaxRateRecord(TaxRule(row["rate"], row["inclusive"], row["region"]), row["updated_at"])


def _pairs(aggregated: str | None) -> list[tuple[str, str]]:
    """``"a:1,b:2"`` (see ``_PRICES``) as ``[("a", "1"), ("b", "2")]``; None is no pairs."""
    if not aggregated:
        return []
    return [(left, right) for left, _, right in (p.partition(":") for p in aggregated.split(","))]


def _product(row: Mapping[str, Any]) -> ProductRecord:
    prices = {currency: int(amount) for currency, amount in _pairs(row["prices__"])}
    surface_prices: dict[str, dict[str, int]] = {}
    for surface, priced in _pairs(row["surface_prices__"]):
        currency, _, amount = priced.partition(":")
        surface_prices.setdefault(surface, {})[currency] = int(amount)
    positioned = sorted(_pairs(row["components__"]), key=lambda pair: int(pair[0]))
    components = [component for _, component in positioned]
    product = Product(
        id=row["id"],
        creator_id=row["creator_id"],
        kind=ProductKind(row["kind"]),
        title=row["title"],
        revenue_share=row["revenue_share"],
        prices=prices,
        status=ProductStatus(row["status"]),
        components=tuple(components),
        period=None if row["period"] is None else MembershipPeriod(row["period"]),
        topup_credit=row["topup_credit"],
        promotion=_promotion_from(row["promotion"]),
        topup_coins=row["topup_coins"],
        topup_bonus_coins=row["topup_bonus_coins"],
        surface_prices=surface_prices,
        has_member_price=bool(row["has_member_price__"]),
    )
    return ProductRecord(
        product,
        row["description"],
        row["metadata"],
        row["created_at"],
        row["updated_at"],
        row["refund_policy"],
    )


# A product row carries its prices and a bundle's components, aggregated in the same
# statement as "CNY:9900,USD:1500" and "0:prod_…,1:prod_…" (``aggregate_strings`` is
# string_agg on PostgreSQL, group_concat on SQLite). Currency codes and ids never hold
# ":" or ",", and aggregation order is not relied on: components carry their position.
_PRICES = (
    select(comma_joined(product_prices.c.currency + ":" + cast(product_prices.c.amount, String)))
    .where(product_prices.c.product_id == products.c.id)
    .scalar_subquery()
    .label("prices__")
)
_COMPONENTS = (
    select(
        comma_joined(
            cast(bundle_components.c.position, String) + ":" + bundle_components.c.component_id
        )
    )
    .where(bundle_components.c.bundle_id == products.c.id)
    .scalar_subquery()
    .label("components__")
)
# "ios:CNY:1200,…": a surface slug holds no ":" or "," either.
_SURFACE_PRICES = (
    select(
        comma_joined(
            product_surface_prices.c.surface
            + ":"
            + product_surface_prices.c.currency
            + ":"
            + cast(product_surface_prices.c.amount, String)
        )
    )
    .where(product_surface_prices.c.product_id == products.c.id)
    .scalar_subquery()
    .label("surface_prices__")
)
# Whether any membership gives a member price on the product: an order for products
# without one needs no member-price query (see services/memberships.py).
_HAS_MEMBER_PRICE = (
    exists().where(member_prices.c.product_id == products.c.id).label("has_member_price__")
)
_PRODUCT = (products, _PRICES, _COMPONENTS, _SURFACE_PRICES, _HAS_MEMBER_PRICE)

# Statements of the payment flow, built once (see ``store/db.py`` on prebuilt statements).
# On PostgreSQL ``= ANY($1)`` (one statement whatever the number of ids, run on the
# driver: store/direct.py); SQLite expands the IN list.
_SELECT_PRODUCTS = Direct(
    select(*_PRODUCT).where(
        products.c.id == any_(bindparam("ids", type_=postgresql.ARRAY(products.c.id.type)))
    ),
    sqlite=select(*_PRODUCT).where(products.c.id.in_(bindparam("ids", expanding=True))),
)
