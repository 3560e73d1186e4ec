"""The catalog: creators, products, limited-time promotions and the rules they obey.

Pure data and validation, no I/O. Prices are ``int`` minor units per ISO 4217 currency
code; every rate (revenue share, promotion percentage) is a ``Decimal`` fraction in
``[0, 1]`` -- ``Decimal("0.15")`` means 15 %.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from tuition.domain.errors import ValidationFailed
from tuition.domain.money import check_amount, coin_unit, get_currency

# Where an order is made when it does not say (a surface is a price list: "ios", "android",
# "mini_program" …; see Product.surface_prices).
DEFAULT_SURFACE = "web"
SURFACE_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"


class ProductKind(StrEnum):
    COURSE = "course"
    ARTICLE = "article"
    COLUMN = "column"
    BUNDLE = "bundle"
    MEMBERSHIP = "membership"
    CONSULTATION = "consultation"
    TOPUP = "topup"


# Bundles hold content only: a top-up inside a bundle would credit a wallet from a
# revenue-shared sale, and a membership inside one would need its own expiry rules.
BUNDLEABLE_KINDS = frozenset(
    {ProductKind.COURSE, ProductKind.ARTICLE, ProductKind.COLUMN, ProductKind.CONSULTATION}
)


class ProductStatus(StrEnum):
    ACTIVE = "active"
    ARCHIVED = "archived"


class MembershipPeriod(StrEnum):
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"

    @property
    def months(self) -> int:
        return _PERIOD_MONTHS[self]


_PERIOD_MONTHS = {MembershipPeriod.MONTH: 1, MembershipPeriod.QUARTER: 3, MembershipPeriod.YEAR: 12}


def require_aware(moment: datetime, *, param: str) -> datetime:
    """Return ``moment`` or raise ValidationFailed if it carries no UTC offset."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValidationFailed(
            f"{param} must be a timezone-aware datetime", code="datetime_naive", param=param
        )
    return moment


def add_months(start: datetime, months: int) -> datetime:
    """Move ``start`` by whole calendar months, clamping the day to the target month.

    Jan 31 + 1 month is Feb 28 (Feb 29 in a leap year); the wall-clock time and tzinfo
    are kept.
    """
    if months < 0:
        raise ValueError(f"months must be non-negative, got {months}")
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


def period_end(start: datetime, period: MembershipPeriod, count: int = 1) -> datetime:
    """End of ``count`` consecutive membership periods beginning at aware ``start``.

    Counted from ``start`` in one step rather than period by period, so three months
    from Jan 31 end on Apr 30, not on Apr 28 (Jan 31 -> Feb 28 -> Mar 28 -> Apr 28).
    """
    require_aware(start, param="start")
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    return add_months(start, period.months * count)


@dataclass(frozen=True, slots=True)
class Creator:
    id: str
    name: str
    default_revenue_share: Decimal = Decimal("0.7")


@dataclass(frozen=True, slots=True)
class Promotion:
    """A limited-time price cut on one product, active in ``[starts_at, ends_at)``.

    Exactly one of ``percent_off`` (a fraction in ``(0, 1]``) and ``amount_off`` (minor
    units off each unit, per currency) is set. An amount-off promotion without an entry
    for the order's currency does not apply in that currency.
    """

    starts_at: datetime
    ends_at: datetime
    percent_off: Decimal | None = None
    amount_off: Mapping[str, int] | None = None

    def is_active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    creator_id: str
    kind: ProductKind
    title: str
    revenue_share: Decimal
    prices: Mapping[str, int]
    status: ProductStatus = ProductStatus.ACTIVE
    components: tuple[str, ...] = ()
    period: MembershipPeriod | None = None
    topup_credit: int | None = None
    """Minor units credited to the buyer's wallet per unit bought, in the order currency."""
    promotion: Promotion | None = None
    topup_coins: int | None = None
    """A coin pack: coins credited per unit bought (instead of ``topup_credit``)."""
    topup_bonus_coins: int | None = None
    """Of a coin pack: bonus coins beside them, a lot worth nothing (充 100 送 20)."""
    surface_prices: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """Prices that differ where the buyer pays: ``{"ios": {"CNY": 1200}}`` over ``prices``."""
    has_member_price: bool = False
    """Whether some membership gives holders a member price on it (as stored)."""

    @property
    def is_active(self) -> bool:
        return self.status is ProductStatus.ACTIVE

    def price_in(self, currency: str, surface: str = DEFAULT_SURFACE) -> int | None:
        """The unit price in ``currency`` on ``surface``: its own price list's, else the
        product's list price."""
        own = self.surface_prices.get(surface, {}).get(currency)
        return own if own is not None else self.prices.get(currency)


def _fail(message: str, code: str, param: str) -> ValidationFailed:
    return ValidationFailed(message, code=code, param=param)


def validate_rate(value: object, *, param: str, allow_zero: bool = True) -> Decimal:
    """Check ``value`` is a finite Decimal fraction in ``[0, 1]`` (``(0, 1]`` if not zero)."""
    if not isinstance(value, Decimal) or not value.is_finite():
        raise _fail(f"{param} must be a finite Decimal", "rate_invalid", param)
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= 1):
        bound = "[0, 1]" if allow_zero else "(0, 1]"
        raise _fail(f"{param} must be in {bound}, got {value}", "rate_out_of_range", param)
    return value


def validate_creator(creator: Creator) -> None:
    if not creator.id:
        raise _fail("id must not be empty", "id_required", "id")
    if not creator.name.strip():
        raise _fail("name must not be empty", "name_required", "name")
    validate_rate(creator.default_revenue_share, param="default_revenue_share")


def validate_amount_map(amounts: Mapping[str, int], *, param: str) -> None:
    """Check every key is an ISO 4217 code and every value a positive int ≤ MAX_AMOUNT."""
    if not amounts:
        raise _fail(f"{param} needs at least one currency", "amounts_required", param)
    for code, amount in amounts.items():
        where = f"{param}.{code}"
        get_currency(code, param=where)
        if type(amount) is not int or amount <= 0:  # bool is never an amount
            raise _fail(f"{where} must be a positive integer", "amount_not_positive", where)
        check_amount(amount, param=where)


def validate_promotion(promotion: Promotion, *, param: str = "promotion") -> None:
    require_aware(promotion.starts_at, param=f"{param}.starts_at")
    require_aware(promotion.ends_at, param=f"{param}.ends_at")
    if promotion.ends_at <= promotion.starts_at:
        raise _fail(
            "a promotion must end after it starts", "promotion_window_invalid", f"{param}.ends_at"
        )
    if (promotion.percent_off is None) == (promotion.amount_off is None):
        raise _fail(
            "a promotion sets exactly one of percent_off and amount_off",
            "promotion_discount_ambiguous",
            param,
        )
    if promotion.percent_off is not None:
        validate_rate(promotion.percent_off, param=f"{param}.percent_off", allow_zero=False)
    if promotion.amount_off is not None:
        validate_amount_map(promotion.amount_off, param=f"{param}.amount_off")


def validate_product(product: Product) -> None:
    """Check the rules a product obeys on its own, raising an error that names the field.

    ValidationFailed for a broken rule, CurrencyError for a price in an unknown currency,
    AmountOverflow for an amount beyond MAX_AMOUNT. Rules that need other products (what
    a bundle contains) are in :func:`validate_bundle_components`.
    """
    if not product.id:
        raise _fail("id must not be empty", "id_required", "id")
    if not product.title.strip():
        raise _fail("title must not be empty", "title_required", "title")
    validate_rate(product.revenue_share, param="revenue_share")
    validate_amount_map(product.prices, param="prices")
    kind = product.kind
    if kind is ProductKind.BUNDLE:
        if len(product.components) < 2:
            raise _fail(
                "a bundle needs at least two components", "bundle_too_few_components", "components"
            )
        if len(set(product.components)) != len(product.components):
            raise _fail(
                "a bundle lists each component once", "bundle_duplicate_component", "components"
            )
        if product.id in product.components:
            raise _fail("a bundle cannot contain itself", "bundle_contains_bundle", "components")
    elif product.components:
        raise _fail("only bundles have components", "components_not_allowed", "components")
    if kind is ProductKind.MEMBERSHIP and product.period is None:
        raise _fail("a membership needs a period", "membership_period_required", "period")
    if kind is not ProductKind.MEMBERSHIP and product.period is not None:
        raise _fail("only memberships have a period", "period_not_allowed", "period")
    if kind is ProductKind.TOPUP:
        _validate_topup(product)
    else:
        for name in ("topup_credit", "topup_coins", "topup_bonus_coins"):
            if getattr(product, name) is not None:
                raise _fail(f"only top-ups have {name}", "topup_credit_not_allowed", name)
    _validate_surface_prices(product)
    if product.promotion is not None:
        validate_promotion(product.promotion)


def _positive(value: object, param: str) -> None:
    if type(value) is not int or value <= 0:
        raise _fail(f"{param} must be a positive integer", "amount_not_positive", param)
    check_amount(value, param=param)


def _validate_topup(product: Product) -> None:
    """A top-up credits money (``topup_credit``, in the order's currency) or coins
    (``topup_coins`` and optional ``topup_bonus_coins``), never both; a coin pack is sold
    for money in one currency, the one its coins are worth."""
    credit, coins, bonus = product.topup_credit, product.topup_coins, product.topup_bonus_coins
    if (credit is None) == (coins is None):
        raise _fail(
            "a top-up credits either money (topup_credit) or coins (topup_coins)",
            "topup_credit_required",
            "topup_credit" if credit is None else "topup_coins",
        )
    if credit is not None:
        _positive(credit, "topup_credit")
        if bonus is not None:
            raise _fail(
                "bonus coins come with topup_coins", "topup_credit_not_allowed", "topup_bonus_coins"
            )
    else:
        if coin_unit() is None:
            raise _fail(
                "coins are off on this platform (TUITION_COINS)", "coins_off", "topup_coins"
            )
        _positive(coins, "topup_coins")
        if bonus is not None:
            _positive(bonus, "topup_bonus_coins")
        currencies = set(product.prices)
        for prices in product.surface_prices.values():
            currencies |= set(prices)
        if len(currencies) != 1:
            raise _fail(
                "a coin pack is priced in one currency, the money its coins are worth",
                "coin_pack_currency",
                "prices",
            )
    for code in product.prices:
        if get_currency(code).virtual:
            raise _fail(
                f"a top-up is sold for money, not {code}", "topup_priced_in_coins", "prices"
            )


def _validate_surface_prices(product: Product) -> None:
    for surface, prices in product.surface_prices.items():
        param = f"surface_prices.{surface}"
        if surface == DEFAULT_SURFACE or re.fullmatch(SURFACE_PATTERN, surface) is None:
            raise _fail(
                f"a surface is a lower-case slug other than {DEFAULT_SURFACE!r}, got {surface!r}",
                "surface_invalid",
                param,
            )
        validate_amount_map(prices, param=param)
        missing = sorted(set(prices) - set(product.prices))
        if missing:
            raise _fail(
                f"{param} prices {', '.join(missing)}, which the product has no list price in",
                "surface_price_without_list_price",
                param,
            )


def validate_bundle_components(bundle: Product, catalog: Mapping[str, Product]) -> None:
    """Check a bundle's components exist, are content, and are priced in its currencies.

    Every component needs a price in each of the bundle's currencies because a sale's
    amount is split across the components by those list prices.
    """
    for index, component_id in enumerate(bundle.components):
        param = f"components[{index}]"
        component = catalog.get(component_id)
        if component is None:
            raise _fail(f"unknown product {component_id!r}", "bundle_component_missing", param)
        if component.kind is ProductKind.BUNDLE:
            raise _fail("a bundle cannot contain a bundle", "bundle_contains_bundle", param)
        if component.kind not in BUNDLEABLE_KINDS:
            raise _fail(
                f"a bundle cannot contain a {component.kind}", "bundle_component_not_allowed", param
            )
        missing = sorted(set(bundle.prices) - set(component.prices))
        if missing:
            raise _fail(
                f"component {component_id!r} has no price in {', '.join(missing)}",
                "bundle_component_not_priced",
                param,
            )
