"""Catalog use cases: creators, products (every kind, bundles included) and tax rates.

Each function validates with the domain's rules, then writes in one transaction; any
refusal raises before the commit, so a bad request never leaves a partial row behind.
Products are archived, never deleted: orders and entitlements keep pointing at them.
Every change writes its audit record (who, before and after) in its own transaction;
the console and the API both pass their ``actor``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Generic, TypeVar

from tuition.clock import Clock
from tuition.domain.catalog import (
    Creator,
    MembershipPeriod,
    Product,
    ProductKind,
    ProductStatus,
    Promotion,
    validate_bundle_components,
    validate_creator,
    validate_product,
    validate_rate,
)
from tuition.domain.errors import Conflict, NotFound, ValidationFailed
from tuition.domain.ids import Prefix, is_valid_id, new_id
from tuition.domain.pricing import TaxRule
from tuition.services import audit, audit_snapshots
from tuition.services.audit import Actor
from tuition.store.catalog import CreatorRecord, ProductFilter, ProductRecord, TaxRateRecord
from tuition.store.uow import UnitOfWork

T = TypeVar("T")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class Keep(Enum):
    """The value of a PATCH field that was left out, where ``None`` means "clear it"."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True, slots=True)
class PageQuery:
    limit: int = DEFAULT_LIMIT
    starting_after: str | None = None


def check_page(query: PageQuery, prefix: Prefix) -> None:
    """Refuse a limit outside 1..100 or a cursor that is not an id of this kind."""
    if type(query.limit) is not int or not 1 <= query.limit <= MAX_LIMIT:
        raise ValidationFailed(
            f"limit must be an integer from 1 to {MAX_LIMIT}", code="limit_invalid", param="limit"
        )
    if query.starting_after is not None and not is_valid_id(query.starting_after, prefix):
        raise ValidationFailed(
            f"starting_after must be a {prefix}_… id from a previous page",
            code="cursor_invalid",
            param="starting_after",
        )


# --- creators ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewCreator:
    name: str
    default_revenue_share: Decimal = Decimal("0.7")
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class CreatorChanges:
    creator_id: str
    name: str | None = None
    default_revenue_share: Decimal | None = None
    external_id: str | Keep | None = KEEP


def in_utc(moment: datetime | None) -> datetime | None:
    """An aware datetime moved to UTC, so what is stored is what a create returns."""
    return None if moment is None else moment.astimezone(UTC)


def _utc_promotion(product: Product) -> Product:
    promotion = product.promotion
    if promotion is None:
        return product
    in_utc = replace(
        promotion,
        starts_at=promotion.starts_at.astimezone(UTC),
        ends_at=promotion.ends_at.astimezone(UTC),
    )
    return replace(product, promotion=in_utc)


def _keep(new: Decimal | None, old: Decimal) -> Decimal:
    # Not `new or old`: a share of 0 is a real value and falsy.
    return old if new is None else new


def _external_id_taken(external_id: str | None) -> Conflict:
    return Conflict(
        f"another creator already has external_id {external_id!r}",
        code="creator_external_id_taken",
        param="external_id",
    )


async def create_creator(
    cmd: NewCreator, uow: UnitOfWork, *, clock: Clock, actor: Actor = audit.SYSTEM
) -> CreatorRecord:
    creator = Creator(new_id(Prefix.CREATOR), cmd.name.strip(), cmd.default_revenue_share)
    validate_creator(creator)
    now = clock.now()
    record = CreatorRecord(creator, cmd.external_id, now, now)
    async with uow:
        if not await uow.catalog.add_creator(record):
            raise _external_id_taken(cmd.external_id)
        await audit.record(
            uow.conn,
            actor,
            "creator.created",
            creator.id,
            clock=clock,
            after=audit_snapshots.creator(record),
        )
        await uow.commit()
    await audit.seal(uow)
    return record


async def get_creator(creator_id: str, uow: UnitOfWork) -> CreatorRecord:
    async with uow:
        found = await uow.catalog.get_creator(creator_id)
    if found is None:
        raise NotFound(f"no creator {creator_id!r}", param="creator_id")
    return found


async def update_creator(
    cmd: CreatorChanges, uow: UnitOfWork, *, clock: Clock, actor: Actor = audit.SYSTEM
) -> CreatorRecord:
    """Change a creator. A new default share applies to products created afterwards only."""
    async with uow:
        found = await uow.catalog.get_creator(cmd.creator_id, for_update=True)
        if found is None:
            raise NotFound(f"no creator {cmd.creator_id!r}", param="creator_id")
        creator = replace(
            found.creator,
            name=found.creator.name if cmd.name is None else cmd.name.strip(),
            default_revenue_share=_keep(
                cmd.default_revenue_share, found.creator.default_revenue_share
            ),
        )
        validate_creator(creator)
        external_id = found.external_id if cmd.external_id is KEEP else cmd.external_id
        record = replace(found, creator=creator, external_id=external_id, updated_at=clock.now())
        if not await uow.catalog.update_creator(record):
            raise _external_id_taken(external_id)
        await audit.record(
            uow.conn,
            actor,
            "creator.updated",
            creator.id,
            clock=clock,
            before=audit_snapshots.creator(found),
            after=audit_snapshots.creator(record),
        )
        await uow.commit()
    await audit.seal(uow)
    return record


async def list_creators(query: PageQuery, uow: UnitOfWork) -> tuple[list[CreatorRecord], bool]:
    check_page(query, Prefix.CREATOR)
    async with uow:
        return await uow.catalog.list_creators(
            limit=query.limit, starting_after=query.starting_after
        )


# --- products ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewProduct:
    creator_id: str
    kind: ProductKind
    title: str
    prices: Mapping[str, int]
    description: str = ""
    revenue_share: Decimal | None = None
    """None takes the creator's default share."""
    components: tuple[str, ...] = ()
    period: MembershipPeriod | None = None
    topup_credit: int | None = None
    topup_coins: int | None = None
    topup_bonus_coins: int | None = None
    surface_prices: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    promotion: Promotion | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    # Refund rules as given (checked by domain.refunds.parse_policy); None: the default.
    refund_policy: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ProductChanges:
    """A PATCH: ``None`` keeps a field; ``promotion=None`` removes the promotion."""

    product_id: str
    title: str | None = None
    description: str | None = None
    prices: Mapping[str, int] | None = None
    surface_prices: Mapping[str, Mapping[str, int]] | None = None
    revenue_share: Decimal | None = None
    promotion: Promotion | Keep | None = KEEP
    metadata: Mapping[str, str] | None = None
    refund_policy: Mapping[str, Any] | Keep | None = KEEP


async def _check_components(bundle: Product, uow: UnitOfWork, *, require_active: bool) -> None:
    catalog = await uow.catalog.products_by_ids(bundle.components)
    validate_bundle_components(bundle, catalog)
    if not require_active:
        return
    for index, component_id in enumerate(bundle.components):
        if not catalog[component_id].is_active:
            raise ValidationFailed(
                f"component {component_id!r} is archived",
                code="bundle_component_archived",
                param=f"components[{index}]",
            )


async def _check_bundles_still_priced(product: Product, uow: UnitOfWork) -> None:
    """A component must keep a price in every currency of the active bundles holding it:
    a bundle sale is split across its components by those prices."""
    for bundle in await uow.catalog.bundles_containing(product.id):
        missing = sorted(set(bundle.prices) - set(product.prices)) if bundle.is_active else []
        if missing:
            raise ValidationFailed(
                f"bundle {bundle.id!r} is sold in {', '.join(missing)} and needs this "
                "product priced in it too",
                code="bundle_component_not_priced",
                param="prices",
            )


async def create_product(
    cmd: NewProduct, uow: UnitOfWork, *, clock: Clock, actor: Actor = audit.SYSTEM
) -> ProductRecord:
    now = clock.now()
    async with uow:
        creator = await uow.catalog.get_creator(cmd.creator_id)
        if creator is None:
            raise NotFound(f"no creator {cmd.creator_id!r}", param="creator_id")
        share = cmd.revenue_share
        product = Product(
            id=new_id(Prefix.PRODUCT),
            creator_id=cmd.creator_id,
            kind=cmd.kind,
            title=cmd.title.strip(),
            revenue_share=creator.creator.default_revenue_share if share is None else share,
            prices=dict(cmd.prices),
            components=tuple(cmd.components),
            period=cmd.period,
            topup_credit=cmd.topup_credit,
            topup_coins=cmd.topup_coins,
            topup_bonus_coins=cmd.topup_bonus_coins,
            surface_prices={s: dict(p) for s, p in cmd.surface_prices.items()},
            promotion=cmd.promotion,
        )
        validate_product(product)
        product = _utc_promotion(product)
        if product.kind is ProductKind.BUNDLE:
            await _check_components(product, uow, require_active=True)
        record = ProductRecord(
            product,
            cmd.description,
            dict(cmd.metadata),
            now,
            now,
            None if cmd.refund_policy is None else dict(cmd.refund_policy),
        )
        await uow.catalog.add_product(record)
        await audit.record(
            uow.conn,
            actor,
            "product.created",
            product.id,
            clock=clock,
            after=audit_snapshots.product(record),
        )
        await uow.commit()
    await audit.seal(uow)
    return record


async def get_product(product_id: str, uow: UnitOfWork) -> ProductRecord:
    async with uow:
        found = await uow.catalog.get_product(product_id)
    if found is None:
        raise NotFound(f"no product {product_id!r}", param="product_id")
    return found


async def update_product(
    cmd: ProductChanges, uow: UnitOfWork, *, clock: Clock, actor: Actor = audit.SYSTEM
) -> ProductRecord:
    async with uow:
        found = await uow.catalog.get_product(cmd.product_id, for_update=True)
        if found is None:
            raise NotFound(f"no product {cmd.product_id!r}", param="product_id")
        old = found.product
        product = replace(
            old,
            title=old.title if cmd.title is None else cmd.title.strip(),
            prices=old.prices if cmd.prices is None else dict(cmd.prices),
            surface_prices=old.surface_prices
            if cmd.surface_prices is None
            else {s: dict(p) for s, p in cmd.surface_prices.items()},
            revenue_share=_keep(cmd.revenue_share, old.revenue_share),
            promotion=old.promotion if cmd.promotion is KEEP else cmd.promotion,
        )
        validate_product(product)
        product = _utc_promotion(product)
        if cmd.prices is not None:
            if product.kind is ProductKind.BUNDLE:
                # Components may have been archived since; that does not stop a reprice.
                await _check_components(product, uow, require_active=False)
            else:
                await _check_bundles_still_priced(product, uow)
        record = replace(
            found,
            product=product,
            description=found.description if cmd.description is None else cmd.description,
            metadata=found.metadata if cmd.metadata is None else dict(cmd.metadata),
            refund_policy=(
                found.refund_policy if isinstance(cmd.refund_policy, Keep) else cmd.refund_policy
            ),
            updated_at=clock.now(),
        )
        await uow.catalog.update_product(record)
        await audit.record(
            uow.conn,
            actor,
            "product.updated",
            product.id,
            clock=clock,
            before=audit_snapshots.product(found),
            after=audit_snapshots.product(record),
        )
        await uow.commit()
    await audit.seal(uow)
    return record


async def set_product_status(
    product_id: str,
    status: ProductStatus,
    uow: UnitOfWork,
    *,
    clock: Clock,
    actor: Actor = audit.SYSTEM,
) -> ProductRecord:
    """Archive or unarchive. Asking for the status a product already has changes nothing
    (and records nothing), so a retried request without an Idempotency-Key is harmless."""
    other = ProductStatus.ARCHIVED if status is ProductStatus.ACTIVE else ProductStatus.ACTIVE
    async with uow:
        changed = await uow.catalog.set_product_status(
            product_id, expected=other, status=status, at=clock.now()
        )
        found = await uow.catalog.get_product(product_id)
        if found is None:
            raise NotFound(f"no product {product_id!r}", param="product_id")
        if changed:
            action = (
                "product.archived" if status is ProductStatus.ARCHIVED else "product.unarchived"
            )
            await audit.record(
                uow.conn,
                actor,
                action,
                product_id,
                clock=clock,
                before={"status": str(other)},
                after={"status": str(status)},
            )
        await uow.commit()
    if changed:
        await audit.seal(uow)
    return found


async def list_products(
    where: ProductFilter, query: PageQuery, uow: UnitOfWork
) -> tuple[list[ProductRecord], bool]:
    check_page(query, Prefix.PRODUCT)
    async with uow:
        return await uow.catalog.list_products(
            where, limit=query.limit, starting_after=query.starting_after
        )


@dataclass(frozen=True, slots=True)
class Browse(Generic[T]):
    """A console page of a list: newest first, whether newer or older pages exist, and
    the total of the list."""

    items: list[T]
    newer: bool
    older: bool
    total: int


def check_cursors(after: str | None, before: str | None, prefix: Prefix) -> None:
    for cursor, name in ((after, "after"), (before, "before")):
        if cursor is not None and not is_valid_id(cursor, prefix):
            raise ValidationFailed(f"{name} must be a {prefix}_… id", param=name)


def browsed(
    found: list[T], more: bool, total: int, *, after: str | None, before: str | None
) -> Browse[T]:
    """The page read below ``after`` or above ``before`` (``more``: another that way)."""
    if before is not None:
        return Browse(found, newer=more, older=bool(found), total=total)
    return Browse(found, newer=after is not None and bool(found), older=more, total=total)


async def browse_products(
    where: ProductFilter,
    uow: UnitOfWork,
    *,
    limit: int,
    after: str | None = None,
    before: str | None = None,
) -> Browse[ProductRecord]:
    """Products as :func:`list_products` pages them, either way: the page below ``after``
    (older) or above ``before`` (newer), with the number of all that match."""
    check_cursors(after, before, Prefix.PRODUCT)
    check_page(PageQuery(limit), Prefix.PRODUCT)
    async with uow:
        found, more = await uow.catalog.list_products(
            where, limit=limit, starting_after=after, ending_before=before
        )
        total = await uow.catalog.count_products(where)
    return browsed(found, more, total, after=after, before=before)


async def browse_creators(
    uow: UnitOfWork, *, limit: int, after: str | None = None, before: str | None = None
) -> Browse[CreatorRecord]:
    """Creators as :func:`list_creators` pages them, either way, with their total."""
    check_cursors(after, before, Prefix.CREATOR)
    check_page(PageQuery(limit), Prefix.CREATOR)
    async with uow:
        found, more = await uow.catalog.list_creators(
            limit=limit, starting_after=after, ending_before=before
        )
        total = await uow.catalog.count_creators()
    return browsed(found, more, total, after=after, before=before)


# --- tax rates --------------------------------------------------------------------------

# One spelling per region (as for currencies): "CN" and "cn" must not be two rates.
_REGION = re.compile(r"[A-Z0-9][A-Z0-9_-]{0,31}")


@dataclass(frozen=True, slots=True)
class TaxRateInput:
    region: str
    rate: Decimal
    inclusive: bool = False


def check_region(region: str) -> str:
    if _REGION.fullmatch(region) is None:
        raise ValidationFailed(
            f"region must be 1-32 upper-case letters, digits, '-' or '_' (e.g. 'CN'), "
            f"got {region!r}",
            code="region_invalid",
            param="region",
        )
    return region


async def put_tax_rate(
    cmd: TaxRateInput, uow: UnitOfWork, *, clock: Clock, actor: Actor = audit.SYSTEM
) -> TaxRateRecord:
    """Create or replace a region's rate; orders priced earlier keep the rate they got."""
    rule = TaxRule(validate_rate(cmd.rate, param="rate"), cmd.inclusive, check_region(cmd.region))
    record = TaxRateRecord(rule, clock.now())
    async with uow:
        old = await uow.catalog.tax_rate(rule.region)
        await uow.catalog.put_tax_rate(rule, record.updated_at)
        await audit.record(
            uow.conn,
            actor,
            "tax_rate.set" if old is None else "tax_rate.updated",
            rule.region,
            clock=clock,
            before=None if old is None else audit_snapshots.tax_rate(old),
            after=audit_snapshots.tax_rate(record),
        )
        await uow.commit()
    await audit.seal(uow)
    return record


async def get_tax_rate(region: str, uow: UnitOfWork) -> TaxRateRecord:
    async with uow:
        found = await uow.catalog.tax_rate(region)
    if found is None:
        raise NotFound(f"no tax rate for region {region!r}", param="region")
    return found


async def list_tax_rates(uow: UnitOfWork) -> list[TaxRateRecord]:
    async with uow:
        return await uow.catalog.list_tax_rates()
