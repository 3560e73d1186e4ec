"""Membership use cases: set what a membership unlocks, and member prices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from tuition.clock import Clock
from tuition.domain.access_scope import (
    AccessScope,
    MemberPrice,
    validate_member_price,
    validate_scope,
    with_member_price,
)
from tuition.domain.catalog import Product, ProductKind, validate_amount_map
from tuition.domain.errors import NotFound, ValidationFailed
from tuition.domain.orders import OrderLine
from tuition.store.uow import UnitOfWork


@dataclass(frozen=True, slots=True)
class ScopeInput:
    membership_id: str
    everything: bool = False
    creator_ids: Sequence[str] = ()
    kinds: Sequence[ProductKind] = ()
    product_ids: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class MemberPriceInput:
    product_id: str
    membership_id: str
    percent_off: Decimal | None = None
    amounts: Mapping[str, int] = field(default_factory=dict)


async def _product(uow: UnitOfWork, product_id: str, *, param: str) -> Product:
    found = (await uow.catalog.products_by_ids([product_id])).get(product_id)
    if found is None:
        raise NotFound(f"no product {product_id!r}", code="product_not_found", param=param)
    return found


async def _check_products(uow: UnitOfWork, product_ids: Sequence[str], *, param: str) -> None:
    found = await uow.catalog.products_by_ids(product_ids)
    for index, product_id in enumerate(product_ids):
        if product_id not in found:
            raise ValidationFailed(
                f"unknown product {product_id!r}",
                code="product_not_found",
                param=f"{param}[{index}]",
            )


async def put_scope(cmd: ScopeInput, uow: UnitOfWork, *, clock: Clock) -> AccessScope:
    """Set what ``cmd.membership_id`` unlocks; listed products are added to the set."""
    async with uow:
        membership = await _product(uow, cmd.membership_id, param="product_id")
        scope = AccessScope(
            membership_id=cmd.membership_id,
            everything=cmd.everything,
            creator_ids=frozenset(cmd.creator_ids),
            kinds=frozenset(cmd.kinds),
            product_ids=frozenset(cmd.product_ids),
        )
        validate_scope(scope, membership)
        await _check_products(uow, list(cmd.product_ids), param="product_ids")
        for index, creator_id in enumerate(cmd.creator_ids):
            if await uow.catalog.get_creator(creator_id) is None:
                raise ValidationFailed(
                    f"unknown creator {creator_id!r}",
                    code="creator_not_found",
                    param=f"creator_ids[{index}]",
                )
        await uow.memberships.put_scope(scope, at=clock.now())
        current = (await uow.memberships.scopes([cmd.membership_id]))[cmd.membership_id]
        await uow.commit()
    return current


async def change_scope_products(
    membership_id: str,
    uow: UnitOfWork,
    *,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    clock: Clock,
) -> AccessScope:
    """Add products to (or take them out of) a membership's listed set."""
    async with uow:
        membership = await _product(uow, membership_id, param="product_id")
        validate_scope(AccessScope(membership_id), membership)
        await _check_products(uow, list(add), param="add")
        await uow.memberships.add_products(membership_id, list(add), at=clock.now())
        await uow.memberships.remove_products(membership_id, list(remove))
        current = (await uow.memberships.scopes([membership_id]))[membership_id]
        await uow.commit()
    return current


async def get_scope(membership_id: str, uow: UnitOfWork) -> AccessScope:
    async with uow:
        membership = await _product(uow, membership_id, param="product_id")
        validate_scope(AccessScope(membership_id), membership)
        return (await uow.memberships.scopes([membership_id]))[membership_id]


async def put_member_price(cmd: MemberPriceInput, uow: UnitOfWork, *, clock: Clock) -> MemberPrice:
    rule = MemberPrice(cmd.product_id, cmd.membership_id, cmd.percent_off, dict(cmd.amounts))
    async with uow:
        product = await _product(uow, cmd.product_id, param="product_id")
        membership = await _product(uow, cmd.membership_id, param="membership_id")
        validate_member_price(rule, product, membership)
        await uow.memberships.put_member_price(rule, at=clock.now())
        await uow.commit()
    return rule


async def member_prices_of(product_id: str, uow: UnitOfWork) -> list[MemberPrice]:
    async with uow:
        await _product(uow, product_id, param="product_id")
        return await uow.memberships.member_prices_for([product_id])


async def held_memberships(uow: UnitOfWork, customer_id: str, *, now: datetime) -> set[str]:
    """Inside an open unit of work: the memberships the customer holds by a grant now."""
    return {
        r.product_id
        for r in await uow.orders.entitlements_of(customer_id)
        if r.active_at(now) and r.expires_at is not None and r.source_product_id is None
    }


async def apply_member_prices(
    uow: UnitOfWork,
    lines: list[OrderLine],
    *,
    customer_id: str,
    currency: str,
    now: datetime,
    unit_prices: Mapping[str, int] | None = None,
) -> list[OrderLine]:
    """Inside an open unit of work: ``lines`` with the buyer's member prices applied.

    ``unit_prices`` (product id -> unit price, set by Tuition for a subscription's
    first period or a proration) win over member prices. No query when no product of
    the order has a member price (``Product.has_member_price``, read with the product).
    """
    fixed = unit_prices or {}
    if not fixed and not any(line.product.has_member_price for line in lines):
        return lines  # the product rows said so: no query at all
    rules = await uow.memberships.member_prices_for([line.product.id for line in lines])
    if not rules and not fixed:
        return lines
    held = await held_memberships(uow, customer_id, now=now) if rules else set()
    priced = []
    for line in lines:
        product = line.product
        if product.id in fixed:
            rule = MemberPrice(product.id, "", amounts={currency: fixed[product.id]})
            product, _ = with_member_price(product, [rule], {""}, currency=currency, now=now)
        else:
            product, _ = with_member_price(product, rules, held, currency=currency, now=now)
        priced.append(replace(line, product=product))
    return priced


async def put_plan(
    membership_id: str, first_period_prices: Mapping[str, int], uow: UnitOfWork, *, clock: Clock
) -> dict[str, int]:
    """Set a membership's first-period prices (each below its list price)."""
    async with uow:
        membership = await _product(uow, membership_id, param="product_id")
        validate_scope(AccessScope(membership_id), membership)
        if first_period_prices:
            validate_amount_map(first_period_prices, param="first_period_prices")
        for code, amount in first_period_prices.items():
            listed = membership.price_in(code)
            if listed is None or amount >= listed:
                raise ValidationFailed(
                    f"the first-period price in {code} must be below the list price",
                    code="first_period_price_invalid",
                    param=f"first_period_prices.{code}",
                )
        await uow.memberships.put_plan(membership_id, dict(first_period_prices), at=clock.now())
        await uow.commit()
    return dict(first_period_prices)
