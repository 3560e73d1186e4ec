"""Payees over REST: a payee, its balances (pending and available) and its earnings."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from tuition.api.deps import ContainerDep
from tuition.api.listing import Page, page_of
from tuition.api.routing import v1_router
from tuition.domain.earnings import mask_account
from tuition.domain.ids import Prefix
from tuition.services import earnings as earnings_service
from tuition.services import statements as statement_service
from tuition.store.earnings import EarningView, PayeeRecord

router = v1_router(tags=["payees"])

PayeeIdPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=40,
        pattern=r"^[a-z]{1,8}_[0-9A-Z]{26}$",
        description="The payee's id; a creator's payee id is the creator's id",
    ),
]


class PayeeOut(BaseModel):
    id: str
    object: str = "payee"
    kind: str = Field(description="creator, promoter or partner")
    name: str
    tax_profile: str = Field(description="individual (tax withheld) or company")
    payout_method: str | None
    payout_account: str | None = Field(description="Masked: only its last characters")
    created_at: datetime


class BalanceOut(BaseModel):
    currency: str
    pending: int = Field(description="Minor units still in their refund hold")
    available: int = Field(
        description="Minor units released from the hold; below zero after a clawback of "
        "released earnings, netted against later earnings"
    )
    in_payout: int = Field(description="Net of tax: payouts not yet paid")
    paid_out: int = Field(description="Net of tax: payouts paid")
    tax_withheld: int = Field(description="Withheld from payouts not given back")


class PayeeBalanceOut(BaseModel):
    object: str = "payee_balance"
    payee_id: str
    balances: list[BalanceOut]


class SettlementOut(BaseModel):
    currency: str = Field(description="The partner's currency")
    amount: int = Field(description="The released share converted, minor units")
    clawed_back: int = Field(description="Taken back since by refunds, in this currency")
    from_currency: str
    from_amount: int = Field(description="What was released, in the sale's currency")
    rate: Decimal = Field(description="Units of the partner's currency per unit of the sale's")
    rate_source: str = Field(description="Where the rate came from")
    rate_at: datetime = Field(description="The time the rate is for")
    settled_at: datetime


class EarningOut(BaseModel):
    id: str
    object: str = "earning"
    payee_id: str
    role: str = Field(description="creator, promoter_l1, promoter_l2 or partner")
    order_id: str
    payment_id: str
    line_index: int
    product_id: str
    currency: str
    base_amount: int = Field(description="The line's amount the rate applies to (net of tax)")
    rate: Decimal
    amount: int = Field(description="The share earned, minor units")
    clawed_back: int = Field(description="Taken back by refunds, in or after the hold")
    status: str = Field(description="pending (in the refund hold) or released")
    release_at: datetime
    released_at: datetime | None
    created_at: datetime
    settlement: SettlementOut | None = Field(
        default=None,
        description="A partner's earning once released: converted into the partner's "
        "currency at a recorded rate (null before, and for every other payee)",
    )


class EarningList(BaseModel):
    data: list[EarningOut]
    has_more: bool


def payee_out(payee: PayeeRecord) -> PayeeOut:
    return PayeeOut(
        id=payee.id,
        kind=payee.kind,
        name=payee.name,
        tax_profile=payee.tax_profile,
        payout_method=payee.payout_method,
        payout_account=mask_account(payee.payout_account),
        created_at=payee.created_at,
    )


def _earning_out(view: EarningView) -> EarningOut:
    e = view.earning
    return EarningOut(
        id=e.id,
        payee_id=e.payee_id,
        role=e.role,
        order_id=e.order_id,
        payment_id=e.payment_id,
        line_index=e.line_index,
        product_id=e.product_id,
        currency=e.currency,
        base_amount=e.base_amount,
        rate=e.rate,
        amount=e.amount,
        clawed_back=e.clawed_pending + e.clawed_available,
        status=view.status.value,
        release_at=view.release_at,
        released_at=view.released_at,
        created_at=e.created_at,
        settlement=None
        if view.settlement is None
        else SettlementOut(
            currency=view.settlement.currency,
            amount=view.settlement.amount,
            clawed_back=view.settlement.clawed,
            from_currency=view.settlement.from_currency,
            from_amount=view.settlement.from_amount,
            rate=view.settlement.rate,
            rate_source=view.settlement.rate_source,
            rate_at=view.settlement.rate_at,
            settled_at=view.settlement.created_at,
        ),
    )


@router.get("/payees/{payee_id}", response_model=PayeeOut, summary="A payee")
async def get_payee(payee_id: PayeeIdPath, container: ContainerDep) -> PayeeOut:
    uow = container.uow()
    async with uow:
        payee = await earnings_service.payee_of(uow, payee_id)
    return payee_out(payee)


@router.get(
    "/payees/{payee_id}/balance",
    response_model=PayeeBalanceOut,
    summary="A payee's balances per currency: pending in the refund hold, and available",
)
async def get_balance(payee_id: PayeeIdPath, container: ContainerDep) -> PayeeBalanceOut:
    _payee, balances = await earnings_service.balance_of(container.uow(), payee_id)
    return PayeeBalanceOut(
        payee_id=payee_id,
        balances=[
            BalanceOut(
                currency=b.currency,
                pending=b.pending,
                available=b.available,
                in_payout=b.in_payout,
                paid_out=b.paid_out,
                tax_withheld=b.tax_withheld,
            )
            for b in balances
        ],
    )


@router.get(
    "/payees/{payee_id}/earnings",
    response_model=EarningList,
    summary="A payee's earnings, newest first, each with its order, rate and release date",
)
async def list_earnings(
    payee_id: PayeeIdPath,
    container: ContainerDep,
    page: Annotated[Page, page_of(Prefix.EARNING)],
) -> EarningList:
    items, has_more = await earnings_service.earnings_of(
        container.uow(), payee_id, limit=page.limit, starting_after=page.starting_after
    )
    return EarningList(data=[_earning_out(v) for v in items], has_more=has_more)


class StatementLineOut(BaseModel):
    kind: str = Field(description="earning, clawback, tax, payout or conversion")
    amount: int = Field(description="Signed minor units: + owed more, - owed less")
    occurred_at: datetime
    order_id: str | None
    payout_id: str | None
    source: str = Field(description="The journal entry the line is")


class StatementOut(BaseModel):
    object: str = "payee_statement"
    payee_id: str
    payee_name: str
    period: str
    currency: str
    opening_balance: int
    earnings: int
    clawbacks: int
    payouts: int
    tax: int
    conversions: int = Field(
        default=0,
        description="A partner's shares converted between the sale's currency and its own "
        "(this currency's side of each conversion)",
    )
    closing_balance: int = Field(
        description="opening + earnings + clawbacks + payouts + tax + conversions"
    )
    lines: list[StatementLineOut]


Period = Annotated[str, Path(min_length=7, max_length=7, description="A month: 2026-11")]
Format = Annotated[str, Query(pattern="^(json|csv|html)$", description="json, csv or html")]


@router.get(
    "/payees/{payee_id}/statements/{period}",
    response_model=StatementOut,
    summary="A payee's month: opening balance, each movement traced to its order or "
    "payout, closing balance (JSON, or CSV / printable HTML with format=)",
)
async def get_statement(
    payee_id: PayeeIdPath,
    period: Period,
    container: ContainerDep,
    format: Format = "json",
    currency: Annotated[str, Query(min_length=3, max_length=3)] = "CNY",
) -> StatementOut | Response:
    statement = await statement_service.statement_of(
        container.uow(), payee_id, period, currency=currency
    )
    if format == "csv":
        return Response(
            statement_service.statement_csv(statement),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{payee_id}-{period}.csv"'},
        )
    if format == "html":
        return Response(statement_service.statement_html(statement), media_type="text/html")
    return StatementOut(
        payee_id=statement.payee_id,
        payee_name=statement.payee_name,
        period=statement.period,
        currency=statement.currency,
        opening_balance=statement.opening,
        earnings=statement.total("earning"),
        clawbacks=statement.total("clawback"),
        payouts=statement.total("payout"),
        tax=statement.total("tax"),
        conversions=statement.total("conversion"),
        closing_balance=statement.closing,
        lines=[
            StatementLineOut(
                kind=line.kind,
                amount=line.amount,
                occurred_at=line.occurred_at,
                order_id=line.order_id,
                payout_id=line.payout_id,
                source=line.source,
            )
            for line in statement.lines
        ],
    )


@router.get(
    "/withholding_reports/{period}",
    summary="The month's income tax withheld from individual payees, as CSV for filing",
    response_class=Response,
)
async def get_withholding_report(period: Period, container: ContainerDep) -> Response:
    text = await statement_service.withholding_report(container.uow(), period)
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="withholding-{period}.csv"'},
    )


routers: list[APIRouter] = [router]
