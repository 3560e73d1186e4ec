"""Entitlements: access to bought content, granted with payment, revoked with refund."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tuition.domain.errors import NotFound
from tuition.domain.ids import new_id
from tuition.domain.orders import OrderLine, entitlements_for_paid_order
from tuition.store.orders import EntitlementRecord, OrderRecord
from tuition.store.uow import UnitOfWork


async def grant_for_order(uow: UnitOfWork, order: OrderRecord, *, paid_at: datetime) -> int:
    """Inside an open unit of work: grant what ``order`` buys. Re-granting is a no-op."""
    catalog = await uow.catalog.products_by_ids([line.product_id for line in order.lines])
    lines = []
    for line in order.lines:
        product = catalog.get(line.product_id)
        if product is None:  # products are archived, never deleted
            raise NotFound(f"product {line.product_id} of order {order.id} is missing")
        lines.append(OrderLine(product, line.quantity))
    grants = entitlements_for_paid_order(lines, paid_at)
    return await uow.orders.grant(
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


async def customer_entitlements(
    uow: UnitOfWork, customer_id: str, *, now: datetime, include_inactive: bool = False
) -> list[EntitlementRecord]:
    async with uow:
        records = await uow.orders.entitlements_of(customer_id)
    return [r for r in records if include_inactive or r.active_at(now)]


async def check_access(
    uow: UnitOfWork, customer_id: str, product_id: str, *, now: datetime
) -> Access:
    """Whether the customer may use ``product_id`` now: any active grant suffices."""
    async with uow:
        records = await uow.orders.entitlements_of(customer_id, product_id=product_id)
    active = tuple(r for r in records if r.active_at(now))
    expiry: datetime | None = None
    if active and all(r.expires_at is not None for r in active):
        expiry = max(r.expires_at for r in active if r.expires_at is not None)
    return Access(customer_id, product_id, bool(active), expiry, active)
