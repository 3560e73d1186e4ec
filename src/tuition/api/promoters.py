"""Promoters (分销) over REST: register a promoter with its referral code, read them,
and set a product's promoter commissions. A promoter is a payee: its balance, earnings
and statements are the payees API's (``/v1/payees/{id}/…``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from tuition.api.deps import ActorDep, ContainerDep
from tuition.api.fields import CustomerId
from tuition.api.listing import Page, page_of
from tuition.api.payees import PayeeIdPath
from tuition.api.routing import v1_router
from tuition.api.schemas_catalog import Body, Name, RateText, rate
from tuition.domain.commissions import CommissionBearer, CommissionRates
from tuition.domain.earnings import TaxProfile
from tuition.domain.errors import NotFound
from tuition.domain.ids import Prefix
from tuition.services import commissions as commission_service
from tuition.store.commissions import ProductCommission, PromoterRecord
from tuition.store.earnings import PayeeRecord

router = v1_router(tags=["promoters"])

ReferralCode = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
ProductId = Annotated[str, Path(description="A product id, prod_…")]


class PromoterCreate(Body):
    name: Name
    code: ReferralCode = Field(description="The referral code buyers' orders carry; unique")
    recruited_by: str | None = Field(
        default=None,
        max_length=40,
        description="The promoter who recruited this one: the level 2 of its referrals",
    )
    customer_id: CustomerId | None = Field(
        default=None, description="The promoter's own buyer id: it cannot refer its own orders"
    )
    tax_profile: TaxProfile = TaxProfile.INDIVIDUAL


class PromoterOut(BaseModel):
    id: str = Field(description="The promoter's payee id")
    object: str = "promoter"
    name: str
    code: str
    recruited_by: str | None
    customer_id: str | None
    tax_profile: str
    created_at: datetime


class PromoterList(BaseModel):
    data: list[PromoterOut]
    has_more: bool


def _out(payee: PayeeRecord, promoter: PromoterRecord) -> PromoterOut:
    return PromoterOut(
        id=payee.id,
        name=payee.name,
        code=promoter.code,
        recruited_by=promoter.recruited_by,
        customer_id=promoter.customer_id,
        tax_profile=payee.tax_profile,
        created_at=promoter.created_at,
    )


@router.post(
    "/promoters",
    status_code=201,
    response_model=PromoterOut,
    summary="Register a promoter (a payee of kind promoter) with its referral code",
    description="409 `referral_code_taken` for a code another promoter has; 422 "
    "`promoter_not_found` for an unknown `recruited_by`.",
)
async def create_promoter(
    body: PromoterCreate, container: ContainerDep, actor: ActorDep
) -> PromoterOut:
    payee, promoter = await commission_service.create_promoter(
        container.uow(),
        commission_service.NewPromoter(
            name=body.name,
            code=body.code,
            recruited_by=body.recruited_by,
            customer_id=body.customer_id,
            tax_profile=body.tax_profile,
        ),
        at=container.clock.now(),
        actor=actor,
    )
    return _out(payee, promoter)


@router.get("/promoters", response_model=PromoterList, summary="Promoters, newest first")
async def list_promoters(
    container: ContainerDep, page: Annotated[Page, page_of(Prefix.PAYEE)]
) -> PromoterList:
    items, has_more = await commission_service.list_promoters(
        container.uow(), limit=page.limit, starting_after=page.starting_after
    )
    return PromoterList(data=[_out(p, r) for p, r in items], has_more=has_more)


@router.get("/promoters/{promoter_id}", response_model=PromoterOut, summary="A promoter")
async def get_promoter(promoter_id: PayeeIdPath, container: ContainerDep) -> PromoterOut:
    payee, promoter = await commission_service.promoter_of(container.uow(), promoter_id)
    return _out(payee, promoter)


# --- a product's commissions ----------------------------------------------------------


class CommissionPut(Body):
    level1: RateText = Field(description="The level-1 promoter's rate of the line, net of tax")
    level2: RateText = Field(default="0", description="The level-2 promoter's rate")
    bearer: CommissionBearer = Field(
        description="platform: out of the platform's share; creator: out of the creator's"
    )


class CommissionOut(BaseModel):
    object: str = "product_commission"
    product_id: str
    level1: str
    level2: str
    bearer: CommissionBearer
    updated_at: datetime


def _commission_out(setting: ProductCommission) -> CommissionOut:
    return CommissionOut(
        product_id=setting.product_id,
        level1=str(setting.rates.level1),
        level2=str(setting.rates.level2),
        bearer=setting.bearer,
        updated_at=setting.updated_at,
    )


@router.put(
    "/products/{product_id}/commission",
    response_model=CommissionOut,
    summary="Set a product's promoter commissions",
    description="Orders placed from now on with a `referral_code` pay them; 422 "
    "`commission_exceeds_share` when the bearer's share cannot.",
)
async def put_commission(
    product_id: ProductId, body: CommissionPut, container: ContainerDep, actor: ActorDep
) -> CommissionOut:
    setting = await commission_service.set_product_commission(
        container.uow(),
        product_id,
        rates=CommissionRates(rate(body.level1, param="level1"), rate(body.level2, param="level2")),
        bearer=body.bearer,
        at=container.clock.now(),
        actor=actor,
    )
    return _commission_out(setting)


@router.get(
    "/products/{product_id}/commission",
    response_model=CommissionOut,
    summary="A product's promoter commissions",
    description="404 `commission_not_set` when the product pays none.",
)
async def get_commission(product_id: ProductId, container: ContainerDep) -> CommissionOut:
    setting = await commission_service.product_commission(container.uow(), product_id)
    if setting is None:
        raise NotFound(f"product {product_id} pays no commission", code="commission_not_set")
    return _commission_out(setting)


routers: list[APIRouter] = [router]
