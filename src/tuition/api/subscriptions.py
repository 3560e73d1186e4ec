"""Memberships and subscriptions over REST: access scopes, member prices, subscriptions."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from tuition.api.deps import (
    ActorDep,
    Container,
    ContainerDep,
    audited,
    get_container,
    live_container,
)
from tuition.api.fields import CustomerId, CustomerIdQuery, Metadata
from tuition.api.listing import Page, page_of
from tuition.api.orders import OrderOut, order_out
from tuition.api.routing import v1_router
from tuition.domain.access_scope import AccessScope, MemberPrice
from tuition.domain.agreements import AgreementStatus
from tuition.domain.catalog import ProductKind
from tuition.domain.ids import Prefix
from tuition.domain.proration import Proration
from tuition.domain.subscriptions import SubscriptionStatus
from tuition.services import memberships as membership_service
from tuition.services import subscriptions as subscription_service
from tuition.services.agreements import agreement_channel, handle_agreement_notification
from tuition.services.orders import OrderPolicy
from tuition.store.agreements import AgreementRecord
from tuition.store.subscriptions import SubscriptionFilter, SubscriptionOrder, SubscriptionRecord
from tuition.web.links import agreement_url
from tuition.worker.subscriptions import renewal_policy

memberships = v1_router(tags=["memberships"])
router = v1_router(tags=["subscriptions"])

ProductIdPath = Annotated[str, Path(min_length=1, max_length=40)]
ProductId = Annotated[str, Field(min_length=1, max_length=40)]


# --- memberships ----------------------------------------------------------------------


class ScopeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    everything: StrictBool = Field(default=False, description="Every product of the platform")
    creator_ids: list[Annotated[str, Field(max_length=40)]] = Field(default=[], max_length=100)
    kinds: list[ProductKind] = Field(default=[], max_length=7)
    product_ids: list[ProductId] = Field(
        default=[], max_length=500, description="Added to the listed set (kept rows stay)"
    )


class ScopeProductsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    add: list[ProductId] = Field(default=[], max_length=500)
    remove: list[ProductId] = Field(default=[], max_length=500)


class ScopeOut(BaseModel):
    object: str = "access_scope"
    membership_id: str
    everything: bool
    creator_ids: list[str]
    kinds: list[str]
    product_ids: list[str]


def _scope_out(scope: AccessScope) -> ScopeOut:
    return ScopeOut(
        membership_id=scope.membership_id,
        everything=scope.everything,
        creator_ids=sorted(scope.creator_ids),
        kinds=sorted(k.value for k in scope.kinds),
        product_ids=sorted(scope.product_ids),
    )


@memberships.put(
    "/products/{product_id}/access_scope",
    response_model=ScopeOut,
    summary="Set what a membership unlocks",
    description="A holder of the membership has access to every product the scope "
    "covers: all of them, those of the listed creators or kinds, or the listed set "
    "(products added to it later are covered from then on).",
)
async def put_scope(product_id: ProductIdPath, body: ScopeIn, container: ContainerDep) -> ScopeOut:
    cmd = membership_service.ScopeInput(
        membership_id=product_id,
        everything=body.everything,
        creator_ids=body.creator_ids,
        kinds=body.kinds,
        product_ids=body.product_ids,
    )
    return _scope_out(
        await membership_service.put_scope(cmd, container.uow(), clock=container.clock)
    )


@memberships.get(
    "/products/{product_id}/access_scope",
    response_model=ScopeOut,
    summary="What a membership unlocks",
    description="The membership's scope as set; a membership without one unlocks itself only.",
)
async def get_scope(product_id: ProductIdPath, container: ContainerDep) -> ScopeOut:
    return _scope_out(await membership_service.get_scope(product_id, container.uow()))


@memberships.post(
    "/products/{product_id}/access_scope/products",
    response_model=ScopeOut,
    summary="Add products to (or remove them from) a membership's listed set",
    description="Only for a scope of listed products; a product added is covered for every "
    "holder from then on.",
)
async def change_scope_products(
    product_id: ProductIdPath, body: ScopeProductsIn, container: ContainerDep
) -> ScopeOut:
    scope = await membership_service.change_scope_products(
        product_id, container.uow(), add=body.add, remove=body.remove, clock=container.clock
    )
    return _scope_out(scope)


class MemberPriceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    percent_off: Decimal | None = Field(default=None, description='e.g. "0.2" for 20 % off')
    amounts: dict[str, StrictInt] = Field(
        default={}, max_length=20, description="The member unit price per currency"
    )


class MemberPriceOut(BaseModel):
    object: str = "member_price"
    product_id: str
    membership_id: str
    percent_off: str | None
    amounts: dict[str, int]


def _price_out(rule: MemberPrice) -> MemberPriceOut:
    return MemberPriceOut(
        product_id=rule.product_id,
        membership_id=rule.membership_id,
        percent_off=None if rule.percent_off is None else str(rule.percent_off),
        amounts=dict(rule.amounts),
    )


@memberships.put(
    "/products/{product_id}/member_prices/{membership_id}",
    response_model=MemberPriceOut,
    summary="Set a product's price for holders of a membership",
    description="The lowest member price the buyer qualifies for is applied as the "
    "line's promotion when it is lower than the running one.",
)
async def put_member_price(
    product_id: ProductIdPath,
    membership_id: ProductIdPath,
    body: MemberPriceIn,
    container: ContainerDep,
) -> MemberPriceOut:
    cmd = membership_service.MemberPriceInput(
        product_id, membership_id, body.percent_off, body.amounts
    )
    rule = await membership_service.put_member_price(cmd, container.uow(), clock=container.clock)
    return _price_out(rule)


class MemberPriceList(BaseModel):
    data: list[MemberPriceOut]


@memberships.get(
    "/products/{product_id}/member_prices",
    response_model=MemberPriceList,
    summary="A product's member prices",
    description="One entry per membership whose holders pay less for the product.",
)
async def list_member_prices(product_id: ProductIdPath, container: ContainerDep) -> MemberPriceList:
    rules = await membership_service.member_prices_of(product_id, container.uow())
    return MemberPriceList(data=[_price_out(r) for r in rules])


class PlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    first_period_prices: dict[str, StrictInt] = Field(
        max_length=20, description="The first period's price per currency (e.g. 首月特惠)"
    )


class PlanOut(BaseModel):
    object: str = "subscription_plan"
    membership_id: str
    first_period_prices: dict[str, int]


@memberships.put(
    "/products/{product_id}/subscription_plan",
    response_model=PlanOut,
    summary="Set a membership's first-period price",
    description="A subscription's first period is sold at this price (首月特惠), each below the "
    "membership's list price in its currency; later periods at the list price.",
)
async def put_plan(product_id: ProductIdPath, body: PlanIn, container: ContainerDep) -> PlanOut:
    prices = await membership_service.put_plan(
        product_id, body.first_period_prices, container.uow(), clock=container.clock
    )
    return PlanOut(membership_id=product_id, first_period_prices=prices)


# --- subscriptions --------------------------------------------------------------------


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: CustomerId
    product_id: ProductId = Field(description="A membership product")
    channel: str = Field(min_length=1, max_length=32)
    method: str = Field(min_length=1, max_length=32, description="e.g. page, qr, jsapi")
    auto_renew: StrictBool = True
    trial_days: int | None = Field(default=None, ge=0, le=365, strict=True)
    coupon_code: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    metadata: Metadata = Field(default_factory=dict)
    referral_code: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="A promoter's referral code: the first order and every renewal carry it",
    )
    partner_id: str | None = Field(
        default=None,
        pattern=r"^pye_[A-Za-z0-9]{1,36}$",
        description="The partner platform that sold it: every order of it is partner-sold",
    )


class PeriodOrderOut(BaseModel):
    order_id: str
    period_index: int
    kind: str
    product_id: str
    amount: int
    status: str
    attempts: int
    next_attempt_at: datetime | None
    period_start: datetime | None
    period_end: datetime | None
    paid_at: datetime | None


class SubscriptionOut(BaseModel):
    id: str
    object: str = "subscription"
    customer_id: str
    product_id: str
    currency: str
    status: SubscriptionStatus
    channel: str
    method: str
    auto_renew: bool
    cancel_at_period_end: bool
    trial_ends_at: datetime | None
    current_period_start: datetime | None
    current_period_end: datetime | None
    period_index: int
    credit_balance: int = Field(description="Carried from a downgrade, off the next renewal")
    metadata: dict[str, Any]
    canceled_at: datetime | None
    ended_at: datetime | None
    created_at: datetime
    orders: list[PeriodOrderOut] | None = None
    latest_order: OrderOut | None = Field(
        default=None, description="The order just raised, with its checkout_url"
    )
    agreement: AgreementOut | None = Field(
        default=None, description="The latest debit agreement signed (or being signed) for it"
    )
    agreement_sign_url: str | None = Field(
        default=None,
        description="With auto_renew through a channel that debits by agreement: where the "
        "buyer signs it (the checkout page links the same step)",
    )


class AgreementOut(BaseModel):
    id: str
    object: str = "agreement"
    channel: str
    status: AgreementStatus
    agreement_no: str | None
    signed_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    created_at: datetime


def agreement_out(record: AgreementRecord | None) -> AgreementOut | None:
    if record is None:
        return None
    return AgreementOut(
        id=record.id,
        channel=record.channel,
        status=record.status,
        agreement_no=record.agreement_no,
        signed_at=record.signed_at,
        ended_at=record.ended_at,
        end_reason=record.end_reason,
        created_at=record.created_at,
    )


async def _with_agreement(out: SubscriptionOut, container: Container) -> SubscriptionOut:
    async with container.uow() as uow:
        found = await uow.agreements.of_subscription(out.id)
    out.agreement = agreement_out(found[0] if found else None)
    offered = agreement_channel(container.payment_deps(), out.channel) is not None
    signed = any(a.status is AgreementStatus.ACTIVE for a in found)
    live = out.status in (
        SubscriptionStatus.TRIALING,
        SubscriptionStatus.ACTIVE,
        SubscriptionStatus.PAST_DUE,
    )
    if out.auto_renew and offered and not signed and live:
        out.agreement_sign_url = agreement_url(container.settings, out.id)
    return out


class SubscriptionList(BaseModel):
    data: list[SubscriptionOut]
    has_more: bool


def _period_out(link: SubscriptionOrder) -> PeriodOrderOut:
    return PeriodOrderOut(
        order_id=link.order_id,
        period_index=link.period_index,
        kind=link.kind,
        product_id=link.product_id,
        amount=link.amount,
        status=link.status,
        attempts=link.attempts,
        next_attempt_at=link.next_attempt_at,
        period_start=link.period_start,
        period_end=link.period_end,
        paid_at=link.paid_at,
    )


def subscription_out(
    sub: SubscriptionRecord, links: list[SubscriptionOrder] | None = None
) -> SubscriptionOut:
    return SubscriptionOut(
        id=sub.id,
        customer_id=sub.customer_id,
        product_id=sub.product_id,
        currency=sub.currency,
        status=sub.status,
        channel=sub.channel,
        method=sub.method,
        auto_renew=sub.auto_renew,
        cancel_at_period_end=sub.cancel_at_period_end,
        trial_ends_at=sub.trial_ends_at,
        current_period_start=sub.current_period_start,
        current_period_end=sub.current_period_end,
        period_index=sub.period_index,
        credit_balance=sub.credit_balance,
        metadata=sub.metadata,
        canceled_at=sub.canceled_at,
        ended_at=sub.ended_at,
        created_at=sub.created_at,
        orders=None if links is None else [_period_out(x) for x in links],
    )


def _deps(container: ContainerDep) -> subscription_service.SubscriptionDeps:
    settings = container.settings
    return subscription_service.SubscriptionDeps(
        clock=container.clock,
        orders=OrderPolicy(
            order_ttl=timedelta(seconds=settings.order_ttl_seconds),
            channel_fee_rates=settings.channel_fee_rates,
            risk=settings.risk_thresholds(),  # subscription orders are assessed when raised
            rates=container.rate_source(),  # a partner's share: as for any order
        ),
        renewal=renewal_policy(settings),
    )


@router.post(
    "/subscriptions",
    status_code=201,
    response_model=SubscriptionOut,
    summary="Subscribe a customer to a membership",
    description="Creates the subscription and, unless it starts with a trial, its first "
    "order (`latest_order`, with the checkout link). One live subscription per customer "
    "and membership (409 `subscription_exists`).",
)
async def create_subscription(
    body: SubscriptionCreate, container: ContainerDep, actor: ActorDep
) -> SubscriptionOut:
    cmd = subscription_service.NewSubscription(
        customer_id=body.customer_id,
        product_id=body.product_id,
        channel=body.channel,
        method=body.method,
        auto_renew=body.auto_renew,
        trial_days=body.trial_days,
        coupon_code=body.coupon_code,
        currency=body.currency.upper() if body.currency else None,
        metadata=body.metadata,
        referral_code=body.referral_code,
        partner_id=body.partner_id,
    )
    uow = audited(
        container,
        actor,
        "subscription.created",
        body.customer_id,
        subject_as_given=True,
        product_id=body.product_id,
    )
    made = await subscription_service.create_subscription(cmd, uow, deps=_deps(container))
    out = subscription_out(made.subscription)
    if made.order is not None:
        out.latest_order = order_out(made.order, container.settings)
    return await _with_agreement(out, container)


@router.get("/subscriptions/{subscription_id}", response_model=SubscriptionOut)
async def get_subscription(
    subscription_id: Annotated[str, Path(max_length=40)], container: ContainerDep
) -> SubscriptionOut:
    uow = container.uow()
    sub = await subscription_service.get_subscription(uow, subscription_id)
    links = await subscription_service.subscription_orders(uow, sub.id)
    return await _with_agreement(subscription_out(sub, links), container)


@router.get("/subscriptions", response_model=SubscriptionList)
async def list_subscriptions(
    container: ContainerDep,
    page: Annotated[Page, page_of(Prefix.SUBSCRIPTION)],
    customer_id: CustomerIdQuery = None,
    status: Annotated[SubscriptionStatus | None, Query()] = None,
) -> SubscriptionList:
    found, more = await subscription_service.list_subscriptions(
        container.uow(),
        SubscriptionFilter(customer_id=customer_id, status=status),
        limit=page.limit,
        starting_after=page.starting_after,
    )
    return SubscriptionList(data=[subscription_out(s) for s in found], has_more=more)


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at_period_end: StrictBool = True


@router.post("/subscriptions/{subscription_id}/cancel", response_model=SubscriptionOut)
async def cancel_subscription(
    subscription_id: Annotated[str, Path(max_length=40)],
    body: CancelIn,
    container: ContainerDep,
    actor: ActorDep,
) -> SubscriptionOut:
    action = "subscription.cancel" if body.at_period_end else "subscription.cancel_now"
    sub = await subscription_service.cancel_subscription(
        audited(container, actor, action, subscription_id),
        subscription_id,
        at_period_end=body.at_period_end,
        clock=container.clock,
    )
    return subscription_out(sub)


@router.post("/subscriptions/{subscription_id}/resume", response_model=SubscriptionOut)
async def resume_subscription(
    subscription_id: Annotated[str, Path(max_length=40)],
    container: ContainerDep,
    actor: ActorDep,
) -> SubscriptionOut:
    sub = await subscription_service.resume_subscription(
        audited(container, actor, "subscription.resumed", subscription_id),
        subscription_id,
        clock=container.clock,
    )
    return subscription_out(sub)


class ChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product_id: ProductId
    confirm: StrictBool = Field(
        default=False, description="false: only show the proration; true: make the change"
    )


class ProrationOut(BaseModel):
    period_seconds: int
    unused_seconds: int
    credit: int = Field(description="The unused time of the current plan, minor units")
    charge: int = Field(description="The new plan for the same unused time")
    amount_due: int = Field(description="To pay now (an upgrade)")
    carried_credit: int = Field(description="Off the next renewal (a downgrade)")


class ChangeOut(BaseModel):
    object: str = "plan_change"
    status: Literal["preview", "pending_payment", "changed"]
    subscription: SubscriptionOut
    product_id: str
    currency: str
    proration: ProrationOut
    order: OrderOut | None


def _proration_out(p: Proration) -> ProrationOut:
    return ProrationOut(
        period_seconds=p.period_seconds,
        unused_seconds=p.unused_seconds,
        credit=p.credit,
        charge=p.charge,
        amount_due=p.amount_due,
        carried_credit=p.carried_credit,
    )


@router.post(
    "/subscriptions/{subscription_id}/change",
    response_model=ChangeOut,
    summary="Upgrade or downgrade, prorated to the second",
    description="Without `confirm` this only shows the proration. Confirmed, an upgrade "
    "raises an order for `amount_due` (the plan switches when it is paid); a downgrade "
    "switches at once and carries `carried_credit` to the next renewal.",
)
async def change_subscription(
    subscription_id: Annotated[str, Path(max_length=40)],
    body: ChangeIn,
    container: ContainerDep,
    actor: ActorDep,
) -> ChangeOut:
    uow = (
        audited(
            container,
            actor,
            "subscription.changed",
            subscription_id,
            subject_as_given=True,
            to=body.product_id,
        )
        if body.confirm
        else container.uow()  # a preview changes nothing
    )
    change = await subscription_service.change_plan(
        uow,
        subscription_id,
        body.product_id,
        confirm=body.confirm,
        deps=_deps(container),
    )
    if not body.confirm:
        status: Literal["preview", "pending_payment", "changed"] = "preview"
    else:
        status = "pending_payment" if change.order is not None else "changed"
    return ChangeOut(
        status=status,
        subscription=subscription_out(change.subscription),
        product_id=change.product_id,
        currency=change.subscription.currency,
        proration=_proration_out(change.proration),
        order=None if change.order is None else order_out(change.order, container.settings),
    )


notify = APIRouter(prefix="/v1", tags=["notifications"])


@notify.post(
    "/notify/{channel}/agreements",
    summary="A channel's agreement sign / unsign notifications (for gateways)",
    description="Authenticated by the channel's signature, not an API key; answers in the "
    "channel's own ACK format. Alipay's dut_user_sign / dut_user_unsign, WeChat Pay's "
    "papay contract notifications.",
    response_class=Response,
)
async def agreement_notification(
    channel: Annotated[str, Path(max_length=32)], request: Request
) -> Response:
    return await _agreement_notification(channel, request, live_container(request))


@notify.post(
    "/notify/test/{channel}/agreements",
    summary="Test mode's agreement notifications (for gateways)",
    description="As `/v1/notify/{channel}/agreements`, for test mode's agreements.",
    response_class=Response,
)
async def test_agreement_notification(
    channel: Annotated[str, Path(max_length=32)], request: Request
) -> Response:
    request.state.mode = "test"
    return await _agreement_notification(channel, request, get_container(request))


async def _agreement_notification(channel: str, request: Request, container: Container) -> Response:
    ack = await handle_agreement_notification(
        channel,
        dict(request.headers),
        await request.body(),
        container.uow(),
        deps=container.payment_deps(),
    )
    return Response(content=ack.body, status_code=ack.status_code, media_type=ack.media_type)


routers: list[APIRouter] = [memberships, router, notify]
