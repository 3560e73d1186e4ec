"""Coupon use cases: create, read, list and change a coupon's window, limit and switch.

Codes are normalised (trimmed, upper case) and unique by a UNIQUE constraint. The
redemption count belongs to order placement, which moves it by conditional UPDATE; no
use case here writes it. Creating and changing a coupon is audited in its transaction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from tuition.clock import Clock
from tuition.domain.catalog import ProductKind
from tuition.domain.coupons import Coupon, CouponKind, normalize_code, validate_coupon
from tuition.domain.errors import Conflict, NotFound, ValidationFailed
from tuition.domain.ids import Prefix, new_id
from tuition.services import audit, audit_snapshots
from tuition.services.audit import Actor
from tuition.services.catalog import (
    KEEP,
    Browse,
    Keep,
    PageQuery,
    browsed,
    check_cursors,
    check_page,
    in_utc,
)
from tuition.store.catalog import CouponRecord, Redemption
from tuition.store.uow import UnitOfWork

# Codes are typed by buyers and printed on posters: keep them to unambiguous ASCII.
_CODE = re.compile(r"[A-Z0-9][A-Z0-9_-]{0,63}")


@dataclass(frozen=True, slots=True)
class NewCoupon:
    """``kind`` may be left out: it follows from which of percent_off/amount_off is set."""

    code: str
    kind: CouponKind | None = None
    percent_off: Decimal | None = None
    amount_off: Mapping[str, int] | None = None
    min_spend: Mapping[str, int] | None = None
    applies_to_products: tuple[str, ...] = ()
    applies_to_kinds: frozenset[ProductKind] = frozenset()
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    max_redemptions: int | None = None
    max_per_customer: int | None = None
    stacks_with_promotions: bool = False
    active: bool = True


@dataclass(frozen=True, slots=True)
class CouponChanges:
    """A PATCH: left-out fields keep their value; ``None`` removes an end or a limit."""

    code: str
    ends_at: datetime | Keep | None = KEEP
    max_redemptions: int | Keep | None = KEEP
    active: bool | None = None


def _code(text: str) -> str:
    code = normalize_code(text)
    if _CODE.fullmatch(code) is None:
        raise ValidationFailed(
            "code must be 1-64 letters, digits, '-' or '_', starting with a letter or digit",
            code="coupon_code_invalid",
            param="code",
        )
    return code


def _kind(cmd: NewCoupon) -> CouponKind:
    if cmd.kind is not None:
        return cmd.kind
    # Neither or both set: pick one and let validate_coupon name the mismatch.
    return CouponKind.AMOUNT if cmd.amount_off is not None else CouponKind.PERCENT


async def create_coupon(
    cmd: NewCoupon, uow: UnitOfWork, *, clock: Clock, actor: Actor = audit.SYSTEM
) -> CouponRecord:
    coupon = Coupon(
        code=_code(cmd.code),
        kind=_kind(cmd),
        percent_off=cmd.percent_off,
        amount_off=None if cmd.amount_off is None else dict(cmd.amount_off),
        min_spend=None if cmd.min_spend is None else dict(cmd.min_spend),
        applies_to_products=frozenset(cmd.applies_to_products),
        applies_to_kinds=frozenset(cmd.applies_to_kinds),
        starts_at=cmd.starts_at,
        ends_at=cmd.ends_at,
        max_redemptions=cmd.max_redemptions,
        max_per_customer=cmd.max_per_customer,
        stacks_with_promotions=cmd.stacks_with_promotions,
        active=cmd.active,
    )
    validate_coupon(coupon)
    coupon = replace(coupon, starts_at=in_utc(coupon.starts_at), ends_at=in_utc(coupon.ends_at))
    now = clock.now()
    record = CouponRecord(new_id(Prefix.COUPON), coupon, 0, now, now)
    async with uow:
        known = await uow.catalog.products_by_ids(cmd.applies_to_products)
        for index, product_id in enumerate(cmd.applies_to_products):
            if product_id not in known:
                raise NotFound(f"no product {product_id!r}", param=f"applies_to_products[{index}]")
        if not await uow.catalog.add_coupon(record):
            raise Conflict(
                f"a coupon with code {coupon.code!r} already exists",
                code="coupon_code_taken",
                param="code",
            )
        await audit.record(
            uow.conn,
            actor,
            "coupon.created",
            record.id,
            clock=clock,
            after=audit_snapshots.coupon(record),
        )
        await uow.commit()
    await audit.seal(uow)
    return record


async def get_coupon(code: str, uow: UnitOfWork) -> CouponRecord:
    async with uow:
        found = await uow.catalog.coupon_record(code)
    if found is None:
        raise NotFound(f"no coupon with code {code!r}", param="code")
    return found


async def update_coupon(
    cmd: CouponChanges, uow: UnitOfWork, *, clock: Clock, actor: Actor = audit.SYSTEM
) -> CouponRecord:
    """Change the end, the redemption limit or the active switch of a coupon.

    A limit below the redemptions already made is refused: it could never be met and
    would read as a mistake. Setting it equal to them stops further redemptions.
    """
    async with uow:
        found = await uow.catalog.coupon_record(cmd.code, for_update=True)
        if found is None:
            raise NotFound(f"no coupon with code {cmd.code!r}", param="code")
        old = found.coupon
        coupon = replace(
            old,
            ends_at=old.ends_at if cmd.ends_at is KEEP else cmd.ends_at,
            max_redemptions=(
                old.max_redemptions if cmd.max_redemptions is KEEP else cmd.max_redemptions
            ),
            active=old.active if cmd.active is None else cmd.active,
        )
        validate_coupon(coupon)
        coupon = replace(coupon, ends_at=in_utc(coupon.ends_at))
        limit = coupon.max_redemptions
        if limit is not None and limit < found.times_redeemed:
            raise ValidationFailed(
                f"max_redemptions cannot be below the {found.times_redeemed} redemptions "
                "already made",
                code="max_redemptions_below_redeemed",
                param="max_redemptions",
            )
        record = replace(found, coupon=coupon, updated_at=clock.now())
        await uow.catalog.update_coupon(
            found.id,
            ends_at=coupon.ends_at,
            max_redemptions=coupon.max_redemptions,
            active=coupon.active,
            at=record.updated_at,
        )
        await audit.record(
            uow.conn,
            actor,
            "coupon.updated",
            found.id,
            clock=clock,
            before=audit_snapshots.coupon(found),
            after=audit_snapshots.coupon(record),
        )
        await uow.commit()
    await audit.seal(uow)
    return record


async def list_coupons(query: PageQuery, uow: UnitOfWork) -> tuple[list[CouponRecord], bool]:
    check_page(query, Prefix.COUPON)
    async with uow:
        return await uow.catalog.list_coupons(
            limit=query.limit, starting_after=query.starting_after
        )


async def redemptions(
    code: str, uow: UnitOfWork, *, limit: int, offset: int
) -> tuple[CouponRecord, list[Redemption], int]:
    """A coupon with a page of its redemptions (newest first) and how many there are."""
    async with uow:
        found = await uow.catalog.coupon_record(code)
        if found is None:
            raise NotFound(f"no coupon with code {code!r}", param="code")
        used, total = await uow.catalog.redemptions(found.id, limit=limit, offset=offset)
    return found, used, total


async def browse_coupons(
    uow: UnitOfWork, *, limit: int, after: str | None = None, before: str | None = None
) -> Browse[CouponRecord]:
    """Coupons as :func:`list_coupons` pages them, either way, with their total."""
    check_cursors(after, before, Prefix.COUPON)
    check_page(PageQuery(limit), Prefix.COUPON)
    async with uow:
        found, more = await uow.catalog.list_coupons(
            limit=limit, starting_after=after, ending_before=before
        )
        total = await uow.catalog.count_coupons()
    return browsed(found, more, total, after=after, before=before)
