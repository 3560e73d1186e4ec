"""Orders and entitlements over REST."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from tuition.api.deps import Container, ContainerDep
from tuition.api.fields import CustomerId, CustomerIdPath, CustomerIdQuery, Metadata
from tuition.api.idempotency import replayed_by
from tuition.api.listing import CreatedGte, CreatedLt, Page, page_of
from tuition.api.payments import payment_deps
from tuition.api.routing import v1_router
from tuition.config import Settings
from tuition.domain.catalog import DEFAULT_SURFACE, SURFACE_PATTERN
from tuition.domain.ids import Prefix
from tuition.domain.orders import MAX_QUANTITY, OrderStatus
from tuition.domain.risk import Client
from tuition.services import closing, free_orders
from tuition.services import entitlements as entitlement_service
from tuition.services import orders as order_service
from tuition.services import risk as risk_service
from tuition.services.refunds import line_id
from tuition.store.orders import EntitlementRecord, OrderFilter, OrderRecord
from tuition.web.links import checkout_url

router = v1_router(tags=["orders"])
customers = v1_router(tags=["entitlements"])


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product_id: str = Field(min_length=1, max_length=40)
    quantity: int = Field(default=1, ge=1, le=MAX_QUANTITY, strict=True)


class ClientIn(BaseModel):
    """The buyer's client, for risk control (velocity and blocklists by IP and device)."""

    model_config = ConfigDict(extra="forbid")
    ip: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[0-9A-Fa-f:.]+$")
    device_id: str | None = Field(default=None, min_length=1, max_length=200)
    user_agent: str | None = Field(default=None, max_length=500)


class Payer(BaseModel):
    """What a channel needs to know of the buyer, when the platform knows it already."""

    model_config = ConfigDict(extra="forbid")
    wechat_openid: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,128}$",
        description="The buyer's openid under the merchant's official account: the "
        "checkout page opened inside WeChat pays by JSAPI with it, without WeChat OAuth",
    )


class OrderCreate(BaseModel):
    """A new order. Amounts are computed by Tuition, never sent by the platform."""

    model_config = ConfigDict(extra="forbid")
    customer_id: CustomerId = Field(description="The platform's own id for the buyer")
    currency: str = Field(min_length=3, max_length=3, description="ISO 4217, e.g. CNY")
    items: list[Item] = Field(max_length=50)
    coupon_code: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    referral_code: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="A promoter's referral code: its commissions are fixed with the order",
    )
    partner_id: str | None = Field(
        default=None,
        pattern=r"^pye_[A-Za-z0-9]{1,36}$",
        description="The partner platform (pye_…) that sold the order: its share per its "
        "agreement is fixed with the order and settled in its currency",
    )
    tax_region: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_-]{1,32}$", description="e.g. CN; case-insensitive"
    )
    surcharge_channel: str | None = Field(
        default=None,
        max_length=32,
        description="Surcharge mode: the buyer pays amount x (1 + this channel's fee rate)",
    )
    return_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://")
    metadata: Metadata = Field(default_factory=dict)
    surface: str = Field(
        default=DEFAULT_SURFACE,
        pattern=SURFACE_PATTERN,
        description='Where the buyer pays ("web", "ios", …): products priced for that '
        "surface (`surface_prices`) sell at that price there",
    )
    client: ClientIn | None = Field(
        default=None, description="The buyer's ip, device_id, user_agent"
    )
    payer: Payer | None = None


class LineOut(BaseModel):
    id: str = Field(description="The line's id, `<order id>:<index>`: refunds name lines by it")
    index: int
    product_id: str
    kind: str
    title: str
    quantity: int
    unit_price: int
    list_amount: int
    promotion_discount: int
    coupon_discount: int
    tax: int
    surcharge: int
    total: int
    components: list[dict[str, Any]]
    amount_refunded: int = Field(description="Refunded so far, by succeeded refunds")


class OrderOut(BaseModel):
    id: str
    object: str = "order"
    customer_id: str
    currency: str
    status: OrderStatus
    subtotal: int = Field(description="List price of all items, minor units")
    discount_total: int
    tax_total: int
    surcharge: int
    total: int = Field(description="What the buyer pays, minor units")
    amount_refunded: int
    coupon_code: str | None
    referral_code: str | None = Field(
        default=None, description="The promoter's referral code the order was placed with"
    )
    partner_id: str | None = Field(
        default=None, description="The partner platform that sold the order"
    )
    tax_region: str | None
    pricing: dict[str, Any] = Field(description="Every pricing step, as computed")
    surface: str = Field(description="The price list the order was priced from")
    risk: dict[str, Any] | None = Field(
        default=None, description="Risk control's decision: {score, decision, reasons}"
    )
    fx: list[dict[str, Any]] | None = Field(
        default=None,
        description="The exchange rates its prices were converted at, if any (docs/fx.md)",
    )
    payer: dict[str, str] | None = Field(default=None, description="As given when placed")
    lines: list[LineOut]
    return_url: str | None
    checkout_url: str | None = Field(
        default=None,
        description="The signed link to this order's hosted checkout page; send the buyer there",
    )
    metadata: dict[str, Any]
    expires_at: datetime
    paid_at: datetime | None
    closed_at: datetime | None
    created_at: datetime


class OrderList(BaseModel):
    data: list[OrderOut]
    has_more: bool


class EntitlementOut(BaseModel):
    id: str
    customer_id: str
    product_id: str
    order_id: str | None = Field(
        description="The order that bought it; null for access an App Store family-shared "
        "transaction gives (no money moved for it)"
    )
    source_product_id: str | None
    granted_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    active: bool


class EntitlementList(BaseModel):
    data: list[EntitlementOut]


class AccessOut(BaseModel):
    customer_id: str
    product_id: str
    has_access: bool
    expires_at: datetime | None = Field(description="None while any grant never expires")
    entitlements: list[EntitlementOut]
    via_membership: str | None = Field(
        default=None, description="The membership whose access scope covers the product"
    )
    via_subscription: str | None = Field(
        default=None, description="The subscription holding it (a trial or a grace period)"
    )


def order_out(order: OrderRecord, settings: Settings | None = None) -> OrderOut:
    return OrderOut(
        id=order.id,
        customer_id=order.customer_id,
        currency=order.currency,
        status=order.status,
        subtotal=order.subtotal,
        discount_total=order.discount_total,
        tax_total=order.tax_total,
        surcharge=order.surcharge,
        total=order.total,
        amount_refunded=order.amount_refunded,
        coupon_code=order.coupon_code,
        referral_code=order.referral_code,
        partner_id=order.partner_id,
        tax_region=order.tax_region,
        pricing=order.pricing,
        surface=order.surface,
        fx=order.pricing.get("fx"),
        payer=order.payer,
        lines=[
            LineOut(
                id=line_id(order.id, line.line_index),
                index=line.line_index,
                product_id=line.product_id,
                kind=line.kind,
                title=line.title,
                quantity=line.quantity,
                unit_price=line.unit_price,
                list_amount=line.list_amount,
                promotion_discount=line.promotion_discount,
                coupon_discount=line.coupon_discount,
                tax=line.tax,
                surcharge=line.surcharge,
                total=line.total,
                components=line.components,
                amount_refunded=line.amount_refunded,
            )
            for line in order.lines
        ],
        return_url=order.return_url,
        checkout_url=None if settings is None else checkout_url(settings, order.id),
        metadata=order.metadata,
        expires_at=order.expires_at,
        paid_at=order.paid_at,
        closed_at=order.closed_at,
        created_at=order.created_at,
    )


def _entitlement_out(record: EntitlementRecord, now: datetime) -> EntitlementOut:
    return EntitlementOut(
        id=record.id,
        customer_id=record.customer_id,
        product_id=record.product_id,
        order_id=record.order_id,
        source_product_id=record.source_product_id,
        granted_at=record.granted_at,
        expires_at=record.expires_at,
        revoked_at=record.revoked_at,
        active=record.active_at(now),
    )


def _policy(container: ContainerDep) -> order_service.OrderPolicy:
    settings = container.settings
    return order_service.OrderPolicy(
        order_ttl=timedelta(seconds=settings.order_ttl_seconds),
        channel_fee_rates=settings.channel_fee_rates,
        fx_markup=settings.fx_markup,
        risk=settings.risk_thresholds(),
        rates=container.rate_source(),
    )


@router.post(
    "/orders",
    status_code=201,
    response_model=OrderOut,
    summary="Create a priced order",
    description="Prices the items (promotion → coupon → tax → surcharge), counts the "
    "coupon use atomically and stores a `pending_payment` order that expires after the "
    "configured time. A customer who already owns a course, article or column for good "
    "cannot buy it again (409 `already_entitled`).",
)
@replayed_by(lambda c, _, order_id: _order_now(c, order_id))
async def create_order(body: OrderCreate, container: ContainerDep) -> OrderOut:
    cmd = order_service.CreateOrder(
        customer_id=body.customer_id,
        currency=body.currency,
        items=tuple(order_service.ItemRequest(i.product_id, i.quantity) for i in body.items),
        coupon_code=body.coupon_code,
        referral_code=body.referral_code,
        partner_id=body.partner_id,
        tax_region=body.tax_region.upper() if body.tax_region else None,
        surcharge_channel=body.surcharge_channel,
        return_url=body.return_url,
        metadata=body.metadata,
        surface=body.surface,
        client=Client(**body.client.model_dump()) if body.client else Client(),
        payer=None
        if body.payer is None
        else {k: v for k, v in body.payer.model_dump().items() if v is not None},
    )
    order = await order_service.create_order(
        cmd, container.uow(), clock=container.clock, policy=_policy(container)
    )
    return await _with_risk(container, order_out(order, container.settings), cmd.client)


async def _with_risk(container: Container, out: OrderOut, client: Client | None = None) -> OrderOut:
    out.risk = await risk_service.order_risk(container.uow(), out.id, client=client)
    return out


async def _order_now(container: Container, order_id: str | None) -> OrderOut | None:
    """An Idempotency-Key replay whose first answer was lost: the order as it is now."""
    if order_id is None:
        return None
    order = await order_service.get_order(container.uow(), order_id)
    return await _with_risk(container, order_out(order, container.settings))


@router.get("/orders/{order_id}", response_model=OrderOut, summary="Get an order")
async def get_order(order_id: str, container: ContainerDep) -> OrderOut:
    order = await order_service.get_order(container.uow(), order_id)
    return await _with_risk(container, order_out(order, container.settings))


@router.get(
    "/orders",
    response_model=OrderList,
    summary="List orders (transaction records)",
    description="Newest first. Filter by customer, status and creation time "
    "(`created_gte` ≤ created_at < `created_lt`); page with `starting_after` = the last "
    "id of the previous page.",
)
async def list_orders(
    container: ContainerDep,
    page: Annotated[Page, page_of(Prefix.ORDER)],
    customer_id: CustomerIdQuery = None,
    status: OrderStatus | None = None,
    created_gte: CreatedGte = None,
    created_lt: CreatedLt = None,
) -> OrderList:
    orders, has_more = await order_service.list_orders(
        container.uow(),
        OrderFilter(customer_id, status, created_gte, created_lt),
        limit=page.limit,
        starting_after=page.starting_after,
    )
    risks = await risk_service.orders_risk(container.uow(), [o.id for o in orders])
    data = [order_out(o, container.settings) for o in orders]
    for out in data:
        out.risk = risks.get(out.id)
    return OrderList(data=data, has_more=has_more)


@router.post(
    "/orders/{order_id}/cancel",
    response_model=OrderOut,
    summary="Cancel an unpaid order",
    description="Only a `pending_payment` order can be cancelled (409 otherwise). Its open "
    "payment attempts are closed on their channels first, so the buyer can no longer pay "
    "them (a channel timeout answers 502 and leaves the order as it was); its coupon use "
    "is given back.",
)
@replayed_by(lambda c, request, _: _order_now(c, request.path_params["order_id"]))
async def cancel_order(order_id: str, container: ContainerDep) -> OrderOut:
    return order_out(
        await closing.cancel_order(container.uow(), order_id, deps=payment_deps(container)),
        container.settings,
    )


@router.post(
    "/orders/{order_id}/complete",
    response_model=OrderOut,
    summary="Complete a free order",
    description="An order whose total is 0 (a 100 % coupon) is paid with no channel: the "
    "order turns `paid`, access is granted and `order.paid` is sent, with no payment, no "
    "gateway call and no ledger entry. Asked again, it answers the paid order. An order "
    "that costs something is refused (409 `order_not_free`), as is a top-up (409 "
    "`topup_not_free`) and an order that is not payable (409 `order_not_payable`). "
    "Starting a payment for a free order answers 409 `order_is_free`.",
)
@replayed_by(lambda c, request, _: _order_now(c, request.path_params["order_id"]))
async def complete_order(order_id: str, container: ContainerDep) -> OrderOut:
    return order_out(
        await free_orders.complete_free_order(order_id, container.uow(), clock=container.clock),
        container.settings,
    )


@customers.get(
    "/customers/{customer_id}/entitlements",
    response_model=EntitlementList,
    summary="What a customer has access to",
    description="Active grants; `include_inactive=true` adds expired and revoked ones.",
)
async def list_entitlements(
    customer_id: CustomerIdPath,
    container: ContainerDep,
    include_inactive: bool = False,
) -> EntitlementList:
    now = container.clock.now()
    records = await entitlement_service.customer_entitlements(
        container.uow(), customer_id, now=now, include_inactive=include_inactive
    )
    return EntitlementList(data=[_entitlement_out(r, now) for r in records])


@customers.get(
    "/customers/{customer_id}/entitlements/{product_id}",
    response_model=AccessOut,
    summary="Check access to one product",
)
async def check_entitlement(
    customer_id: CustomerIdPath,
    product_id: Annotated[str, Path(max_length=40)],
    container: ContainerDep,
) -> AccessOut:
    now = container.clock.now()
    access = await entitlement_service.check_access(
        container.uow(),
        customer_id,
        product_id,
        now=now,
        grace=timedelta(days=container.settings.subscription_grace_days),
    )
    return AccessOut(
        customer_id=customer_id,
        product_id=product_id,
        has_access=access.has_access,
        expires_at=access.expires_at,
        entitlements=[_entitlement_out(r, now) for r in access.via],
        via_membership=access.via_membership,
        via_subscription=access.via_subscription,
    )


routers: list[APIRouter] = [router, customers]
