"""Orders: lines, the order state machine and what a paid order entitles the buyer to.

:func:`transition` is the only way an order's status changes; the store applies its
answer with a compare-and-set on the previous status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import assert_never

from tuition.domain.catalog import Product, ProductKind, period_end, require_aware
from tuition.domain.errors import IllegalTransition

MIN_QUANTITY = 1
MAX_QUANTITY = 99


@dataclass(frozen=True, slots=True)
class OrderLine:
    product: Product
    quantity: int = 1


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING_PAYMENT: frozenset(
        {OrderStatus.PAID, OrderStatus.CANCELLED, OrderStatus.EXPIRED}
    ),
    OrderStatus.PAID: frozenset({OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED}),
    # A second partial refund keeps the status; it is still a recorded move so the
    # store's compare-and-set serialises concurrent refunds.
    OrderStatus.PARTIALLY_REFUNDED: frozenset(
        {OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED}
    ),
    OrderStatus.REFUNDED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.EXPIRED: frozenset(),
}


def can_transition(current: OrderStatus, target: OrderStatus) -> bool:
    return target in TRANSITIONS[OrderStatus(current)]


def transition(current: OrderStatus, target: OrderStatus) -> OrderStatus:
    """Return ``target`` if an order may move there from ``current``, else raise.

    Raises IllegalTransition (code ``illegal_transition``, param ``status``) naming
    both states.
    """
    current, target = OrderStatus(current), OrderStatus(target)
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(
            f"an order cannot move from {current} to {target}",
            code="illegal_transition",
            param="status",
        )
    return target


def is_terminal(status: OrderStatus) -> bool:
    """True when no further transition exists (refunded, cancelled, expired)."""
    return not TRANSITIONS[OrderStatus(status)]


def is_paid(status: OrderStatus) -> bool:
    """True for the statuses reached only through a successful payment."""
    return OrderStatus(status) in {
        OrderStatus.PAID,
        OrderStatus.PARTIALLY_REFUNDED,
        OrderStatus.REFUNDED,
    }


@dataclass(frozen=True, slots=True)
class EntitlementGrant:
    """Access to one product; ``source_product_id`` names the bundle it came with."""

    product_id: str
    expires_at: datetime | None
    line_index: int
    source_product_id: str | None = None


def entitlements_for_paid_order(
    lines: Sequence[OrderLine], paid_at: datetime
) -> list[EntitlementGrant]:
    """What the buyer gets access to when an order with ``lines`` is paid at ``paid_at``.

    - a bundle grants each of its components (not itself), each recording the bundle
      as its source so refunding the bundle revokes exactly those grants;
    - a membership grants access until ``quantity`` periods after ``paid_at``;
    - a top-up grants nothing (it credits the wallet instead);
    - anything else grants non-expiring access.

    Quantity beyond one adds nothing for non-membership products: access is not
    countable. Grants are not merged across lines, so the same product bought alone and
    in a bundle yields two grants with different sources; access is their union.
    """
    require_aware(paid_at, param="paid_at")
    grants: list[EntitlementGrant] = []
    for index, line in enumerate(lines):
        product = line.product
        match product.kind:
            case ProductKind.TOPUP:
                continue
            case ProductKind.BUNDLE:
                grants.extend(
                    EntitlementGrant(component_id, None, index, source_product_id=product.id)
                    for component_id in product.components
                )
            case ProductKind.MEMBERSHIP:
                if product.period is None:
                    raise ValueError(f"membership {product.id} has no period")
                expires = period_end(paid_at, product.period, line.quantity)
                grants.append(EntitlementGrant(product.id, expires, index))
            case (
                ProductKind.COURSE
                | ProductKind.ARTICLE
                | ProductKind.COLUMN
                | ProductKind.CONSULTATION
            ):
                grants.append(EntitlementGrant(product.id, None, index))
            case _:
                assert_never(product.kind)
    return grants
