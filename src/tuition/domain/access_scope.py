"""Memberships: what a membership unlocks, member prices, and the term a purchase buys.

Pure rules, no I/O. A membership product grants access to its *scope*: every product of
the platform, the products of some creators, of some kinds, or a listed set (a set the
platform adds to later). A product may carry a member price for holders of a given
membership: a percentage off or a fixed price per currency.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from tuition.domain.catalog import (
    Product,
    ProductKind,
    Promotion,
    period_end,
    require_aware,
    validate_amount_map,
    validate_rate,
)
from tuition.domain.errors import ValidationFailed
from tuition.domain.money import Rounding, apply_rate

# What a membership can unlock: content, never money (top-ups) nor other memberships.
SCOPABLE_KINDS = frozenset(
    {
        ProductKind.COURSE,
        ProductKind.ARTICLE,
        ProductKind.COLUMN,
        ProductKind.BUNDLE,
        ProductKind.CONSULTATION,
    }
)


@dataclass(frozen=True, slots=True)
class AccessScope:
    """What holding ``membership_id`` unlocks besides the membership itself.

    The parts are a union: a product is covered when ``everything`` is set, or its
    creator is listed, or its kind is listed, or it is in ``product_ids``.
    """

    membership_id: str
    everything: bool = False
    creator_ids: frozenset[str] = frozenset()
    kinds: frozenset[ProductKind] = frozenset()
    product_ids: frozenset[str] = frozenset()

    def covers(self, product: Product) -> bool:
        if product.id == self.membership_id:
            return True
        if product.kind not in SCOPABLE_KINDS:
            return False
        return (
            self.everything
            or product.creator_id in self.creator_ids
            or product.kind in self.kinds
            or product.id in self.product_ids
        )

    @property
    def is_empty(self) -> bool:
        return not (self.everything or self.creator_ids or self.kinds or self.product_ids)


def validate_scope(scope: AccessScope, membership: Product) -> None:
    """A scope belongs to a membership and lists only kinds a membership can unlock."""
    if membership.kind is not ProductKind.MEMBERSHIP:
        raise ValidationFailed(
            f"product {membership.id} is a {membership.kind}, not a membership",
            code="not_a_membership",
            param="product_id",
        )
    for kind in sorted(scope.kinds):
        if kind not in SCOPABLE_KINDS:
            raise ValidationFailed(
                f"a membership cannot unlock {kind} products",
                code="kind_not_scopable",
                param="kinds",
            )


@dataclass(frozen=True, slots=True)
class MemberPrice:
    """The price of ``product_id`` for holders of ``membership_id``.

    Exactly one of ``percent_off`` (a fraction in ``(0, 1]``) and ``amounts`` (the member
    price per currency, minor units per unit) is set.
    """

    product_id: str
    membership_id: str
    percent_off: Decimal | None = None
    amounts: Mapping[str, int] = field(default_factory=dict)

    def unit_price(self, list_price: int, currency: str) -> int | None:
        """The member unit price in ``currency``, or None when this rule has none there."""
        if self.percent_off is not None:
            return list_price - apply_rate(list_price, self.percent_off, Rounding.HALF_UP)
        amount = self.amounts.get(currency)
        return None if amount is None else min(amount, list_price)


def validate_member_price(rule: MemberPrice, product: Product, membership: Product) -> None:
    if membership.kind is not ProductKind.MEMBERSHIP:
        raise ValidationFailed(
            f"product {membership.id} is not a membership",
            code="not_a_membership",
            param="membership_id",
        )
    if product.kind is ProductKind.TOPUP:
        raise ValidationFailed(
            "a top-up has no member price", code="member_price_not_allowed", param="product_id"
        )
    if (rule.percent_off is None) == (not rule.amounts):
        raise ValidationFailed(
            "a member price sets exactly one of percent_off and amounts",
            code="member_price_ambiguous",
            param="percent_off",
        )
    if rule.percent_off is not None:
        validate_rate(rule.percent_off, param="percent_off", allow_zero=False)
    else:
        validate_amount_map(rule.amounts, param="amounts")


def with_member_price(
    product: Product,
    rules: Sequence[MemberPrice],
    held: Collection[str],
    *,
    currency: str,
    now: datetime,
) -> tuple[Product, MemberPrice | None]:
    """``product`` priced for a buyer holding the memberships ``held``.

    The lowest member unit price among the rules the buyer qualifies for becomes the
    line's promotion (price cuts do not stack), unless the product's own running
    promotion is already lower. Returns the product to price and the rule applied.
    """
    list_price = product.price_in(currency)
    if list_price is None:
        return product, None
    best: tuple[int, MemberPrice] | None = None
    for rule in rules:
        if rule.product_id != product.id or rule.membership_id not in held:
            continue
        price = rule.unit_price(list_price, currency)
        if price is not None and (best is None or price < best[0]):
            best = (price, rule)
    if best is None or best[0] >= list_price:
        return product, None
    if product.promotion is not None and product.promotion.is_active(now):
        current = _promoted_price(product.promotion, list_price, currency)
        if current <= best[0]:
            return product, None
    cut = Promotion(
        starts_at=now,
        ends_at=now + timedelta(days=1),
        amount_off={currency: list_price - best[0]},
    )
    return replace(product, promotion=cut), best[1]


def _promoted_price(promotion: Promotion, list_price: int, currency: str) -> int:
    if promotion.percent_off is not None:
        return list_price - apply_rate(list_price, promotion.percent_off, Rounding.HALF_UP)
    off = (promotion.amount_off or {}).get(currency, 0)
    return max(list_price - off, 0)


def membership_term(
    paid_at: datetime, current_end: datetime | None, product: Product, quantity: int = 1
) -> tuple[datetime, datetime]:
    """The ``(start, end)`` a membership bought at ``paid_at`` covers.

    A purchase while the membership is still active extends from its current end, not
    from now, so no paid time is lost: bought Nov 1 monthly and renewed Nov 15, it ends
    Jan 1. Months are counted from that start in one step, with day clamping (Jan 31 +
    1 month = Feb 28, or 29 in a leap year).
    """
    require_aware(paid_at, param="paid_at")
    if product.period is None:
        raise ValueError(f"membership {product.id} has no period")
    start = current_end if current_end is not None and current_end > paid_at else paid_at
    return start, period_end(start, product.period, quantity)
