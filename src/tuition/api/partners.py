"""Partner platforms (跨平台结算) over REST: register a partner with its agreement (its
share of a sale and the currency it is settled in), read one, and quote what a sale
would owe it in its currency at the rate in force. A partner is a payee: its balance
and statements are the payees API's (``/v1/payees/{id}/…``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from tuition.api.deps import ActorDep, ContainerDep
from tuition.api.payees import PayeeIdPath
from tuition.api.routing import v1_router
from tuition.api.schemas_catalog import Body, Name, RateText, rate
from tuition.domain.earnings import TaxProfile
from tuition.domain.money import MAX_AMOUNT
from tuition.services import partners as partner_service
from tuition.store.commissions import PartnerRecord
from tuition.store.earnings import PayeeRecord

router = v1_router(tags=["partners"])


class PartnerCreate(Body):
    name: Name
    share: RateText = Field(description="The partner's share of a sale, net of tax")
    currency: str = Field(
        min_length=3, max_length=3, description="ISO 4217: the partner is settled in it"
    )
    tax_profile: TaxProfile = TaxProfile.COMPANY


class PartnerOut(BaseModel):
    id: str = Field(description="The partner's payee id")
    object: str = "partner"
    name: str
    share: str
    currency: str
    tax_profile: str
    created_at: datetime


class FxOut(BaseModel):
    rate: Decimal = Field(description="Units of the partner's currency per unit of the sale's")
    source: str = Field(description="Where the rate came from")
    at: datetime = Field(description="The time the rate is for")


class ShareQuoteOut(BaseModel):
    object: str = "partner_share_quote"
    partner_id: str
    base_currency: str
    base_amount: int
    share_rate: Decimal
    share: int = Field(description="In the sale's currency")
    currency: str = Field(description="The partner's currency")
    amount: int = Field(description="The share in the partner's currency, rounded half up")
    fx: FxOut


def _out(payee: PayeeRecord, partner: PartnerRecord) -> PartnerOut:
    return PartnerOut(
        id=payee.id,
        name=payee.name,
        share=str(partner.share),
        currency=partner.currency,
        tax_profile=payee.tax_profile,
        created_at=partner.created_at,
    )


@router.post(
    "/partners",
    status_code=201,
    response_model=PartnerOut,
    summary="Register a partner platform (a payee of kind partner) with its agreement",
)
async def create_partner(
    body: PartnerCreate, container: ContainerDep, actor: ActorDep
) -> PartnerOut:
    payee, partner = await partner_service.create_partner(
        container.uow(),
        partner_service.NewPartner(
            name=body.name,
            share=rate(body.share, param="share"),
            currency=body.currency,
            tax_profile=body.tax_profile,
        ),
        at=container.clock.now(),
        actor=actor,
    )
    return _out(payee, partner)


@router.get("/partners/{partner_id}", response_model=PartnerOut, summary="A partner platform")
async def get_partner(partner_id: PayeeIdPath, container: ContainerDep) -> PartnerOut:
    payee, partner = await partner_service.partner_of(container.uow(), partner_id)
    return _out(payee, partner)


@router.get(
    "/partners/{partner_id}/share_quote",
    response_model=ShareQuoteOut,
    summary="What a sale would owe the partner now, in its currency, with the rate used",
    description="404 `fx_rate_missing` when no rate from the sale's currency to the "
    "partner's is known. Nothing is recorded.",
)
async def quote_share(
    partner_id: PayeeIdPath,
    container: ContainerDep,
    amount: Annotated[int, Query(ge=0, le=MAX_AMOUNT, description="Minor units, net of tax")],
    currency: Annotated[str, Query(min_length=3, max_length=3)],
) -> ShareQuoteOut:
    got = await partner_service.quote_share(
        container.uow(),
        partner_id,
        amount=amount,
        currency=currency,
        at=container.clock.now(),
        rates=container.rate_source(),
    )
    return ShareQuoteOut(
        partner_id=partner_id,
        base_currency=got.base_currency,
        base_amount=got.base_amount,
        share_rate=got.share_rate,
        share=got.share,
        currency=got.quote_currency,
        amount=got.amount,
        fx=FxOut(rate=got.fx.rate, source=got.fx.source, at=got.fx.at),
    )


routers: list[APIRouter] = [router]
