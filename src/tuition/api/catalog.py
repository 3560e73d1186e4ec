"""``/v1`` routes of the catalog: creators, products, tax rates and coupons.

Handlers only translate: a request body becomes a use-case command (rates parsed from
their decimal strings here, so a bad one is named by its field), and a record becomes a
response body. The rules live in the services and the domain.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from tuition.api.deps import ActorDep, ContainerDep
from tuition.api.listing import Limit, StartingAfter
from tuition.api.routing import v1_router
from tuition.api.schemas_catalog import (
    CouponCreate,
    CouponList,
    CouponOut,
    CouponUpdate,
    CreatorCreate,
    CreatorList,
    CreatorOut,
    CreatorUpdate,
    ProductCreate,
    ProductList,
    ProductOut,
    ProductUpdate,
    TaxRateList,
    TaxRateOut,
    TaxRatePut,
    optional_rate,
    rate,
    refuse_nulls,
)
from tuition.domain.catalog import ProductKind, ProductStatus
from tuition.domain.money import get_currency
from tuition.services import catalog, coupons
from tuition.services.catalog import KEEP, PageQuery
from tuition.store.catalog import ProductFilter

CreatorId = Annotated[str, Path(description="A creator id, cre_…")]
ProductId = Annotated[str, Path(description="A product id, prod_…")]
CouponCode = Annotated[str, Path(description="The coupon code, matched case-insensitively")]
Region = Annotated[str, Path(description="An upper-case region code such as CN or CN-BJ")]

_LIST = "Newest first. Pass the last id you saw as `starting_after` for the next page."

# --- creators ---------------------------------------------------------------------------

creators_router = v1_router(tags=["creators"])


@creators_router.post(
    "/creators",
    status_code=201,
    summary="Create a creator",
    description="A creator is paid a share of each sale of their products. "
    '`default_revenue_share` (a decimal string, default `"0.7"`) is copied to new '
    "products that set none. `external_id` is your own id for them and must be unique.",
)
async def create_creator(
    body: CreatorCreate, container: ContainerDep, actor: ActorDep
) -> CreatorOut:
    command = catalog.NewCreator(
        name=body.name,
        default_revenue_share=rate(body.default_revenue_share, param="default_revenue_share"),
        external_id=body.external_id,
    )
    record = await catalog.create_creator(
        command, container.uow(), clock=container.clock, actor=actor
    )
    return CreatorOut.of(record)


@creators_router.get("/creators", summary="List creators", description=_LIST)
async def list_creators(
    container: ContainerDep, limit: Limit = 20, starting_after: StartingAfter = None
) -> CreatorList:
    page = PageQuery(limit, starting_after)
    items, has_more = await catalog.list_creators(page, container.uow())
    return CreatorList(data=[CreatorOut.of(r) for r in items], has_more=has_more)


@creators_router.get(
    "/creators/{creator_id}", summary="Get a creator", description="404 if there is none."
)
async def get_creator(creator_id: CreatorId, container: ContainerDep) -> CreatorOut:
    return CreatorOut.of(await catalog.get_creator(creator_id, container.uow()))


@creators_router.patch(
    "/creators/{creator_id}",
    summary="Update a creator",
    description="Change `name`, `default_revenue_share` or `external_id` (null removes it). "
    "A new default share applies to products created afterwards; existing products keep "
    "theirs.",
)
async def update_creator(
    creator_id: CreatorId, body: CreatorUpdate, container: ContainerDep, actor: ActorDep
) -> CreatorOut:
    refuse_nulls(body, "name", "default_revenue_share")
    fields = body.model_fields_set
    command = catalog.CreatorChanges(
        creator_id=creator_id,
        name=body.name,
        default_revenue_share=optional_rate(
            body.default_revenue_share, param="default_revenue_share"
        ),
        external_id=body.external_id if "external_id" in fields else KEEP,
    )
    record = await catalog.update_creator(
        command, container.uow(), clock=container.clock, actor=actor
    )
    return CreatorOut.of(record)


# --- products ---------------------------------------------------------------------------

products_router = v1_router(tags=["products"])


@products_router.post(
    "/products",
    status_code=201,
    summary="Create a product",
    description="Kinds: course, article, column, consultation, membership (needs `period`), "
    "topup (needs `topup_credit` in money, or `topup_coins` and optional "
    "`topup_bonus_coins` for a coin pack) and bundle (needs two or more `components`: existing, "
    "active, non-bundle content products priced in every currency the bundle is priced "
    "in). Prices are minor units per currency; `revenue_share` defaults to the creator's.",
)
async def create_product(
    body: ProductCreate, container: ContainerDep, actor: ActorDep
) -> ProductOut:
    command = catalog.NewProduct(
        creator_id=body.creator_id,
        kind=body.kind,
        title=body.title,
        prices=body.prices,
        description=body.description,
        revenue_share=optional_rate(body.revenue_share, param="revenue_share"),
        components=tuple(body.components),
        period=body.period,
        topup_credit=body.topup_credit,
        topup_coins=body.topup_coins,
        topup_bonus_coins=body.topup_bonus_coins,
        surface_prices=body.surface_prices,
        promotion=None if body.promotion is None else body.promotion.to_domain(),
        metadata=body.metadata,
        refund_policy=None if body.refund_policy is None else body.refund_policy.to_domain(),
    )
    record = await catalog.create_product(
        command, container.uow(), clock=container.clock, actor=actor
    )
    return ProductOut.of(record)


@products_router.get(
    "/products",
    summary="List products",
    description=f"{_LIST} Filter by `kind`, `status`, `creator_id` and `currency` "
    "(products with a price in it).",
)
async def list_products(
    container: ContainerDep,
    kind: ProductKind | None = None,
    status: ProductStatus | None = None,
    creator_id: Annotated[str | None, Query(max_length=40)] = None,
    currency: Annotated[str | None, Query(max_length=3)] = None,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
) -> ProductList:
    if currency is not None:
        get_currency(currency, param="currency")
    where = ProductFilter(kind=kind, status=status, creator_id=creator_id, currency=currency)
    page = PageQuery(limit, starting_after)
    items, has_more = await catalog.list_products(where, page, container.uow())
    return ProductList(data=[ProductOut.of(r) for r in items], has_more=has_more)


@products_router.get(
    "/products/{product_id}", summary="Get a product", description="404 if there is none."
)
async def get_product(product_id: ProductId, container: ContainerDep) -> ProductOut:
    return ProductOut.of(await catalog.get_product(product_id, container.uow()))


@products_router.patch(
    "/products/{product_id}",
    summary="Update a product",
    description="Change `title`, `description`, `prices` (replaced whole), `revenue_share`, "
    "`promotion` (null removes it) or `metadata` (replaced whole). Kind, creator, "
    "components, period and credit are fixed. A component cannot drop a currency an "
    "active bundle holding it is sold in. Orders already placed keep their prices.",
)
async def update_product(
    product_id: ProductId, body: ProductUpdate, container: ContainerDep, actor: ActorDep
) -> ProductOut:
    refuse_nulls(body, "title", "description", "prices", "revenue_share", "metadata")
    promotion = body.promotion.to_domain() if body.promotion is not None else None
    command = catalog.ProductChanges(
        product_id=product_id,
        title=body.title,
        description=body.description,
        prices=body.prices,
        surface_prices=body.surface_prices,
        revenue_share=optional_rate(body.revenue_share, param="revenue_share"),
        promotion=promotion if "promotion" in body.model_fields_set else KEEP,
        metadata=body.metadata,
        refund_policy=(
            (None if body.refund_policy is None else body.refund_policy.to_domain())
            if "refund_policy" in body.model_fields_set
            else KEEP
        ),
    )
    record = await catalog.update_product(
        command, container.uow(), clock=container.clock, actor=actor
    )
    return ProductOut.of(record)


@products_router.post(
    "/products/{product_id}/archive",
    summary="Archive a product",
    description="An archived product can no longer be bought; past orders and entitlements "
    "are unaffected. Products are never deleted. Archiving an archived product changes "
    "nothing.",
)
async def archive_product(
    product_id: ProductId, container: ContainerDep, actor: ActorDep
) -> ProductOut:
    record = await catalog.set_product_status(
        product_id, ProductStatus.ARCHIVED, container.uow(), clock=container.clock, actor=actor
    )
    return ProductOut.of(record)


@products_router.post(
    "/products/{product_id}/unarchive",
    summary="Unarchive a product",
    description="Put an archived product on sale again. Unarchiving an active product "
    "changes nothing.",
)
async def unarchive_product(
    product_id: ProductId, container: ContainerDep, actor: ActorDep
) -> ProductOut:
    record = await catalog.set_product_status(
        product_id, ProductStatus.ACTIVE, container.uow(), clock=container.clock, actor=actor
    )
    return ProductOut.of(record)


# --- tax rates --------------------------------------------------------------------------

tax_rates_router = v1_router(tags=["tax rates"])


@tax_rates_router.put(
    "/tax_rates/{region}",
    summary="Set a region's tax rate",
    description="Creates or replaces the rate of `region` (upper case, e.g. `CN`). `rate` "
    'is a decimal string in [0, 1] ("0.06" is 6 %). With `inclusive` true, prices already '
    "contain the tax; otherwise it is added on top. Orders priced earlier are unaffected.",
)
async def put_tax_rate(
    region: Region, body: TaxRatePut, container: ContainerDep, actor: ActorDep
) -> TaxRateOut:
    command = catalog.TaxRateInput(
        region=region, rate=rate(body.rate, param="rate"), inclusive=body.inclusive
    )
    record = await catalog.put_tax_rate(
        command, container.uow(), clock=container.clock, actor=actor
    )
    return TaxRateOut.of(record)


@tax_rates_router.get(
    "/tax_rates",
    summary="List tax rates",
    description="Every region's rate, ordered by region (one page: `has_more` is false).",
)
async def list_tax_rates(container: ContainerDep) -> TaxRateList:
    items = await catalog.list_tax_rates(container.uow())
    return TaxRateList(data=[TaxRateOut.of(r) for r in items], has_more=False)


@tax_rates_router.get(
    "/tax_rates/{region}", summary="Get a region's tax rate", description="404 if unset."
)
async def get_tax_rate(region: Region, container: ContainerDep) -> TaxRateOut:
    return TaxRateOut.of(await catalog.get_tax_rate(region, container.uow()))


# --- coupons ----------------------------------------------------------------------------

coupons_router = v1_router(tags=["coupons"])


@coupons_router.post(
    "/coupons",
    status_code=201,
    summary="Create a coupon",
    description="An order-level discount code: `percent_off` (decimal string in (0, 1]) or "
    "`amount_off` (minor units per currency). Codes are unique, case-insensitive and "
    "stored upper case; a taken code is `409 coupon_code_taken`. Optional: `min_spend`, "
    "`applies_to_products` / `applies_to_kinds` (either matches; none means all), a "
    "`starts_at`/`ends_at` window, `max_redemptions`, `max_per_customer`, "
    "`stacks_with_promotions`.",
)
async def create_coupon(body: CouponCreate, container: ContainerDep, actor: ActorDep) -> CouponOut:
    command = coupons.NewCoupon(
        code=body.code,
        kind=body.kind,
        percent_off=optional_rate(body.percent_off, param="percent_off"),
        amount_off=body.amount_off,
        min_spend=body.min_spend,
        applies_to_products=tuple(body.applies_to_products),
        applies_to_kinds=frozenset(body.applies_to_kinds),
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        max_redemptions=body.max_redemptions,
        max_per_customer=body.max_per_customer,
        stacks_with_promotions=body.stacks_with_promotions,
        active=body.active,
    )
    record = await coupons.create_coupon(
        command, container.uow(), clock=container.clock, actor=actor
    )
    return CouponOut.of(record)


@coupons_router.get("/coupons", summary="List coupons", description=_LIST)
async def list_coupons(
    container: ContainerDep, limit: Limit = 20, starting_after: StartingAfter = None
) -> CouponList:
    page = PageQuery(limit, starting_after)
    items, has_more = await coupons.list_coupons(page, container.uow())
    return CouponList(data=[CouponOut.of(r) for r in items], has_more=has_more)


@coupons_router.get(
    "/coupons/{code}",
    summary="Get a coupon",
    description="Looked up by code, case-insensitively; shows `times_redeemed`.",
)
async def get_coupon(code: CouponCode, container: ContainerDep) -> CouponOut:
    return CouponOut.of(await coupons.get_coupon(code, container.uow()))


@coupons_router.patch(
    "/coupons/{code}",
    summary="Update a coupon",
    description="Change `ends_at`, `max_redemptions` (null removes the end or the limit) or "
    "`active` (false stops new redemptions). Nothing else, and never `times_redeemed`.",
)
async def update_coupon(
    code: CouponCode, body: CouponUpdate, container: ContainerDep, actor: ActorDep
) -> CouponOut:
    refuse_nulls(body, "active")
    fields = body.model_fields_set
    command = coupons.CouponChanges(
        code=code,
        ends_at=body.ends_at if "ends_at" in fields else KEEP,
        max_redemptions=body.max_redemptions if "max_redemptions" in fields else KEEP,
        active=body.active,
    )
    record = await coupons.update_coupon(
        command, container.uow(), clock=container.clock, actor=actor
    )
    return CouponOut.of(record)


routers: list[APIRouter] = [creators_router, products_router, tax_rates_router, coupons_router]
