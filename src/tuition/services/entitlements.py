"""Entitlements: access to bought content, granted with payment, revoked with refund."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from tuition.domain.access_scope import membership_term
from tuition.domain.catalog import ProductKind
from tuition.domain.errors import NotFound
from tuition.domain.ids import new_id
from tuition.domain.orders import OrderLine, entitlements_for_paid_order
from tuition.services.subscription_periods import (
    membership_paid,
    subscription_access_until,
    subscription_term,
)
from tuition.store.orders import EntitlementRecord, OrderRecord
from tuition.store.uow import UnitOfWork


async def grant_for_order(uow: UnitOfWork, order: OrderRecord, *, paid_at: datetime) -> None:
    """Inside an open unit of work: grant what ``order`` buys (staged: the grants go out
    with the commit). Re-granting is a no-op.

    A membership bought while the buyer still holds it extends from its current end
    (:func:`~tuition.domain.access_scope.membership_term`); a membership order raised by
    a subscription also moves that subscription on (services/subscription_periods.py).
    """
    catalog = await uow.catalog.products_by_ids([line.product_id for line in order.lines])
    lines = []
    for line in order.lines:
        product = catalog.get(line.product_id)
        if product is None:  # products are archived, never deleted
            raise NotFound(f"product {line.product_id} of order {order.id} is missing")
        lines.append(OrderLine(product, line.quantity))
    grants = entitlements_for_paid_order(lines, paid_at)
    terms: dict[int, tuple[datetime, datetime]] = {}
    for index, grant in enumerate(grants):
        bought = lines[grant.line_index]
        if bought.product.kind is ProductKind.MEMBERSHIP and grant.source_product_id is None:
            # Serialise purchases of this membership by this customer, then read the end
            # the one before us committed (each statement reads the latest commit).
            await uow.memberships.lock(order.customer_id, bought.product.id, at=paid_at)
            current_end = await _membership_end(uow, order.customer_id, bought.product.id, paid_at)
            term = await subscription_term(
                uow,
                order.id,
                bought.product,
                bought.quantity,
                paid_at=paid_at,
                current_end=current_end,
            )
            start, end = term or membership_term(
                paid_at, current_end, bought.product, bought.quantity
            )
            terms[grant.line_index] = (start, end)
            grants[index] = replace(grant, expires_at=end)
    uow.orders.stage_grants(
        [
            EntitlementRecord(
                id=new_id("ent"),
                customer_id=order.customer_id,
                product_id=g.product_id,
                order_id=order.id,
                line_index=g.line_index,
                source_product_id=g.source_product_id,
                granted_at=paid_at,
                expires_at=g.expires_at,
                revoked_at=None,
            )
            for g in grants
        ]
    )
    if terms:
        await uow.staged.flush()  # the membership's periods read its grants back
        await membership_paid(uow, order, terms, paid_at=paid_at)


async def _membership_end(
    uow: UnitOfWork, customer_id: str, membership_id: str, now: datetime
) -> datetime | None:
    """The latest end of the customer's grants of ``membership_id`` still in force. A
    family member's shared grant (no order) is not counted: it can be revoked at any
    time, so a purchase starts now rather than after it."""
    records = await uow.orders.entitlements_of(customer_id, product_id=membership_id)
    ends = [
        r.expires_at
        for r in records
        if r.active_at(now) and r.expires_at is not None and r.order_id is not None
    ]
    return max(ends, default=None)


async def revoke_for_refund(
    uow: UnitOfWork, order_id: str, *, line_index: int | None, at: datetime
) -> list[EntitlementRecord]:
    """Inside an open unit of work: take back access a refund returns (one line, or all);
    the grants it ended."""
    return await uow.orders.revoke(order_id, line_index, at)


@dataclass(frozen=True, slots=True)
class Access:
    customer_id: str
    product_id: str
    has_access: bool
    expires_at: datetime | None
    via: tuple[EntitlementRecord, ...]
    via_membership: str | None = None
    """The membership whose scope covers the product, when access comes through one."""
    via_subscription: str | None = None
    """The subscription that holds that membership (trial or grace), if any."""


async def customer_entitlements(
    uow: UnitOfWork, customer_id: str, *, now: datetime, include_inactive: bool = False
) -> list[EntitlementRecord]:
    async with uow:
        records = await uow.orders.entitlements_of(customer_id)
    return [r for r in records if include_inactive or r.active_at(now)]


async def check_access(
    uow: UnitOfWork,
    customer_id: str,
    product_id: str,
    *,
    now: datetime,
    grace: timedelta = timedelta(0),
) -> Access:
    """Whether the customer may use ``product_id`` now.

    Any active grant of the product itself suffices; otherwise an active membership
    whose scope covers the product does (held by a grant, by a trialing subscription,
    or by a ``past_due`` one within ``grace`` of its period end), and the answer names
    it.
    """
    async with uow:
        records = await uow.orders.entitlements_of(customer_id, product_id=product_id)
        active = tuple(r for r in records if r.active_at(now))
        if active:
            return Access(customer_id, product_id, True, _expiry(active), active)
        held = await _held_memberships(uow, customer_id, now=now, grace=grace)
        if not held:
            return Access(customer_id, product_id, False, None, ())
        wanted = await uow.catalog.products_by_ids([product_id, *held])
        product = wanted.get(product_id)
        scopes = await uow.memberships.scopes(list(held))
    if product is None:
        return Access(customer_id, product_id, False, None, ())
    covering = [
        (until, membership_id, sub_id, grants)
        for membership_id, (until, sub_id, grants) in held.items()
        if membership_id in wanted
        and wanted[membership_id].kind is ProductKind.MEMBERSHIP
        and scopes[membership_id].covers(product)
    ]
    if not covering:
        return Access(customer_id, product_id, False, None, ())
    until, membership_id, sub_id, grants = max(covering, key=lambda c: (c[0], c[1]))
    return Access(
        customer_id,
        product_id,
        True,
        until,
        grants,
        via_membership=membership_id,
        via_subscription=sub_id,
    )


_Holding = tuple[datetime, str | None, tuple[EntitlementRecord, ...]]


async def _held_memberships(
    uow: UnitOfWork, customer_id: str, *, now: datetime, grace: timedelta
) -> dict[str, _Holding]:
    """membership id -> (held until, subscription id, grants) for what is held now."""
    held: dict[str, _Holding] = {}
    for r in await uow.orders.entitlements_of(customer_id):
        end = r.expires_at
        if r.active_at(now) and end is not None and r.source_product_id is None:
            # Memberships are the only grants that expire (the caller checks the kind).
            until, sub, grants = held.get(r.product_id, (end, None, ()))
            held[r.product_id] = (max(until, end), sub, (*grants, r))
    for sub_record in await uow.subscriptions.holding(customer_id):
        sub_until = subscription_access_until(sub_record, grace)
        if sub_until is None or sub_until <= now:
            continue
        current = held.get(sub_record.product_id)
        if current is None or current[0] < sub_until:
            grants = current[2] if current is not None else ()
            held[sub_record.product_id] = (sub_until, sub_record.id, grants)
    return held


def _expiry(active: tuple[EntitlementRecord, ...]) -> datetime | None:
    if all(r.expires_at is not None for r in active):
        return max(r.expires_at for r in active if r.expires_at is not None)
    return None
