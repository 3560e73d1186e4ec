"""Request and response bodies of the catalog API, and their mapping to use-case commands.

Money is ``int`` minor units keyed by ISO 4217 code (``{"CNY": 19900}``). Rates are
decimal strings (``"0.7"``): a JSON number is a binary float on most clients, so it is
refused rather than silently rounded. Datetimes are ISO 8601 strings with an offset.
Request bodies forbid unknown fields, so a misspelt field is a 422 naming it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from tuition.api.fields import IsoDatetime, Metadata, NoNul
from tuition.domain.catalog import MembershipPeriod, ProductKind, ProductStatus, Promotion
from tuition.domain.coupons import CouponKind
from tuition.domain.errors import ValidationFailed
from tuition.domain.money import parse_rate
from tuition.domain.refunds import parse_policy
from tuition.store.catalog import CouponRecord, CreatorRecord, ProductRecord, TaxRateRecord

# --- field types ------------------------------------------------------------------------


def _rate_text(value: object) -> object:
    if not isinstance(value, str):
        raise PydanticCustomError(
            "rate_not_string",
            'must be a decimal string such as "0.15"; JSON numbers are refused because '
            "they are binary floats",
        )
    return value


# Strings bounded by their column's length and free of NUL characters.
_NoNul = NoNul
Name = Annotated[str, Field(min_length=1, max_length=200), _NoNul]
Title = Annotated[str, Field(max_length=300), _NoNul]  # blank: the domain's title_required
Description = Annotated[str, Field(max_length=20_000), _NoNul]
CouponCode = Annotated[str, Field(min_length=1, max_length=64), _NoNul]
# The column is a 32-bit INTEGER; the lower bound is the domain's (code limit_invalid).
Limit = Annotated[StrictInt, Field(le=1_000_000_000)]
ObjectId = Annotated[str, Field(min_length=1, max_length=40), _NoNul]

RateText = Annotated[
    str,
    BeforeValidator(_rate_text),
    WithJsonSchema({"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$", "examples": ["0.7"]}),
]


AmountMap = Annotated[
    dict[str, StrictInt],
    Field(description="Minor units per ISO 4217 currency code", examples=[{"CNY": 19900}]),
]
SurfacePrices = Annotated[
    dict[str, AmountMap],
    Field(
        max_length=20,
        description="Price lists per surface, over `prices` for orders made there "
        '(an order\'s `surface`, default "web")',
        examples=[{"ios": {"CNY": 1200}}],
    ),
]
CoinCount = Annotated[StrictInt, Field(ge=1)]


def rate(text: str, *, param: str) -> Decimal:
    """A decimal string as a Decimal in [0, 1], or ValidationFailed naming ``param``."""
    return parse_rate(text, param=param).copy_abs()  # "-0" is stored as "0"


def optional_rate(text: str | None, *, param: str) -> Decimal | None:
    return None if text is None else rate(text, param=param)


def refuse_nulls(body: BaseModel, *names: str) -> None:
    """In a PATCH, leaving a field out keeps it; an explicit null is refused for fields
    that cannot be empty, since it would otherwise be silently ignored."""
    for name in names:
        if name in body.model_fields_set and getattr(body, name) is None:
            raise ValidationFailed(
                f"{name} cannot be null; leave it out to keep the current value",
                code="field_not_nullable",
                param=name,
            )


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- creators ---------------------------------------------------------------------------


class CreatorCreate(Body):
    name: Name
    default_revenue_share: RateText = Field(
        default="0.7", description="The creator's share of a sale, as a decimal string"
    )
    external_id: Name | None = Field(
        default=None, description="Your own id for this creator; unique"
    )


class CreatorUpdate(Body):
    name: Name | None = None
    default_revenue_share: RateText | None = None
    external_id: Name | None = None


class CreatorOut(BaseModel):
    id: str
    name: str
    default_revenue_share: str = Field(description="Applied to new products that set none")
    external_id: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, record: CreatorRecord) -> CreatorOut:
        creator = record.creator
        return cls(
            id=creator.id,
            name=creator.name,
            default_revenue_share=str(creator.default_revenue_share),
            external_id=record.external_id,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class CreatorList(BaseModel):
    data: list[CreatorOut]
    has_more: bool


# --- products ---------------------------------------------------------------------------


class PromotionIn(Body):
    """A limited-time cut, active in [starts_at, ends_at); exactly one discount is set."""

    starts_at: IsoDatetime
    ends_at: IsoDatetime
    percent_off: RateText | None = None
    amount_off: AmountMap | None = None

    def to_domain(self) -> Promotion:
        return Promotion(
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            percent_off=optional_rate(self.percent_off, param="promotion.percent_off"),
            amount_off=self.amount_off,
        )


class PromotionOut(BaseModel):
    starts_at: datetime
    ends_at: datetime
    percent_off: str | None
    amount_off: dict[str, int] | None

    @classmethod
    def of(cls, promotion: Promotion | None) -> PromotionOut | None:
        if promotion is None:
            return None
        return cls(
            starts_at=promotion.starts_at,
            ends_at=promotion.ends_at,
            percent_off=None if promotion.percent_off is None else str(promotion.percent_off),
            amount_off=None if promotion.amount_off is None else dict(promotion.amount_off),
        )


class RefundPolicyIn(Body):
    """Refund rules for one product; a field left out takes the platform's default."""

    window_days: Annotated[StrictInt, Field(ge=0, le=3650)] | None = Field(
        default=None, description="Days after payment a refund may be asked for; null: no limit"
    )
    consumption: Literal["limit", "prorate"] | None = Field(
        default=None,
        description="limit: no refund above max_progress; prorate: refund the unconsumed share",
    )
    max_progress: str | None = Field(
        default=None, max_length=20, description='With consumption=limit, e.g. "0.3"'
    )
    revoke_on_partial: StrictBool | None = Field(
        default=None, description="Whether a partial refund also ends access (default: no)"
    )

    def to_domain(self) -> dict[str, Any]:
        """The rules as given, checked (ValidationFailed names the field)."""
        given = self.model_dump(exclude_unset=True)
        parse_policy(given)
        return given


class ProductCreate(Body):
    creator_id: ObjectId
    kind: ProductKind
    title: Title
    description: Description = ""
    prices: AmountMap
    revenue_share: RateText | None = Field(
        default=None, description="The creator's share; defaults to the creator's default"
    )
    components: list[ObjectId] = Field(
        default_factory=list, max_length=100, description="Bundles only: the products inside"
    )
    period: MembershipPeriod | None = Field(default=None, description="Memberships only")
    topup_credit: StrictInt | None = Field(
        default=None, description="Top-ups only: minor units credited to the wallet per unit"
    )
    topup_coins: CoinCount | None = Field(
        default=None, description="Coin packs only (instead of topup_credit): coins per unit"
    )
    topup_bonus_coins: CoinCount | None = Field(
        default=None, description="Coin packs only: bonus coins per unit, worth nothing"
    )
    surface_prices: SurfacePrices = Field(default_factory=dict)
    promotion: PromotionIn | None = None
    refund_policy: RefundPolicyIn | None = Field(
        default=None, description="Refund rules; left out: the platform's default"
    )
    metadata: Metadata = Field(default_factory=dict)


class ProductUpdate(Body):
    """Left-out fields keep their value; ``"promotion": null`` removes the promotion."""

    title: Title | None = None
    description: Description | None = None
    prices: AmountMap | None = Field(default=None, description="Replaces all prices")
    surface_prices: SurfacePrices | None = Field(
        default=None, description="Replaces every surface's prices"
    )
    revenue_share: RateText | None = None
    promotion: PromotionIn | None = None
    refund_policy: RefundPolicyIn | None = Field(
        default=None, description="Replaces the refund rules; null: the platform's default"
    )
    metadata: Metadata | None = Field(default=None, description="Replaces all metadata")


class ProductOut(BaseModel):
    id: str
    creator_id: str
    kind: ProductKind
    status: ProductStatus
    title: str
    description: str
    prices: dict[str, int]
    revenue_share: str
    components: list[str]
    period: MembershipPeriod | None
    topup_credit: int | None
    topup_coins: int | None = None
    topup_bonus_coins: int | None = None
    surface_prices: dict[str, dict[str, int]] = Field(default_factory=dict)
    promotion: PromotionOut | None
    refund_policy: dict[str, Any] | None = Field(
        description="The refund rules set on the product; null: the platform's default"
    )
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, record: ProductRecord) -> ProductOut:
        product = record.product
        return cls(
            id=product.id,
            creator_id=product.creator_id,
            kind=product.kind,
            status=product.status,
            title=product.title,
            description=record.description,
            prices=dict(product.prices),
            revenue_share=str(product.revenue_share),
            components=list(product.components),
            period=product.period,
            topup_credit=product.topup_credit,
            topup_coins=product.topup_coins,
            topup_bonus_coins=product.topup_bonus_coins,
            surface_prices={s: dict(p) for s, p in product.surface_prices.items()},
            promotion=PromotionOut.of(product.promotion),
            refund_policy=None if record.refund_policy is None else dict(record.refund_policy),
            metadata=dict(record.metadata),
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class ProductList(BaseModel):
    data: list[ProductOut]
    has_more: bool


# --- tax rates --------------------------------------------------------------------------


class TaxRatePut(Body):
    rate: RateText = Field(description='A fraction in [0, 1], e.g. "0.06" for 6 %')
    inclusive: StrictBool = Field(
        default=False, description="True: prices already contain the tax; false: added on top"
    )


class TaxRateOut(BaseModel):
    region: str
    rate: str
    inclusive: bool
    updated_at: datetime

    @classmethod
    def of(cls, record: TaxRateRecord) -> TaxRateOut:
        rule = record.rule
        return cls(
            region=rule.region,
            rate=str(rule.rate),
            inclusive=rule.inclusive,
            updated_at=record.updated_at,
        )


class TaxRateList(BaseModel):
    data: list[TaxRateOut]
    has_more: bool


# --- coupons ----------------------------------------------------------------------------


class CouponCreate(Body):
    code: CouponCode = Field(description="Matched case-insensitively; stored upper case")
    kind: CouponKind | None = Field(
        default=None, description="Optional: follows from percent_off / amount_off"
    )
    percent_off: RateText | None = None
    amount_off: AmountMap | None = None
    min_spend: AmountMap | None = None
    applies_to_products: list[ObjectId] = Field(default_factory=list, max_length=100)
    applies_to_kinds: list[ProductKind] = Field(default_factory=list, max_length=10)
    starts_at: IsoDatetime | None = None
    ends_at: IsoDatetime | None = None
    max_redemptions: Limit | None = None
    max_per_customer: Limit | None = None
    stacks_with_promotions: StrictBool = False
    active: StrictBool = True


class CouponUpdate(Body):
    """Only the end, the redemption limit and the switch change; ``null`` removes a limit."""

    ends_at: IsoDatetime | None = None
    max_redemptions: Limit | None = None
    active: StrictBool | None = None


class CouponOut(BaseModel):
    id: str
    code: str
    kind: CouponKind
    percent_off: str | None
    amount_off: dict[str, int] | None
    min_spend: dict[str, int] | None
    applies_to_products: list[str]
    applies_to_kinds: list[ProductKind]
    starts_at: datetime | None
    ends_at: datetime | None
    max_redemptions: int | None
    max_per_customer: int | None
    stacks_with_promotions: bool
    active: bool
    times_redeemed: int = Field(description="Counted by placed orders; read-only")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, record: CouponRecord) -> CouponOut:
        coupon = record.coupon
        return cls(
            id=record.id,
            code=coupon.code,
            kind=coupon.kind,
            percent_off=None if coupon.percent_off is None else str(coupon.percent_off),
            amount_off=None if coupon.amount_off is None else dict(coupon.amount_off),
            min_spend=None if coupon.min_spend is None else dict(coupon.min_spend),
            applies_to_products=sorted(coupon.applies_to_products),
            applies_to_kinds=sorted(coupon.applies_to_kinds),
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


class CouponList(BaseModel):
    data: list[CouponOut]
    has_more: bool
