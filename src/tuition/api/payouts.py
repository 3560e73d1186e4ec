"""Payouts over REST: create, read, list; the bank route's batch file and outcomes; a
payee's payout details."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from tuition.api.deps import ActorDep, ApiKeyDep, ContainerDep
from tuition.api.fields import NoNul
from tuition.api.listing import Page, page_of
from tuition.api.payees import PayeeIdPath, PayeeOut, payee_out
from tuition.api.routing import v1_router
from tuition.container import Container
from tuition.domain.earnings import TaxProfile
from tuition.domain.ids import Prefix
from tuition.domain.money import MAX_AMOUNT
from tuition.domain.payouts import PayoutMethod, PayoutStatus
from tuition.services import earnings as earnings_service
from tuition.services import payouts as payout_service
from tuition.store.payouts import PayoutRecord

router = v1_router(tags=["payouts"])

PayoutIdPath = Annotated[
    str, Path(min_length=1, max_length=40, pattern=r"^po_[0-9A-Z]{26}$", description="po_…")
]


class PayoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payee_id: str = Field(min_length=1, max_length=40, pattern=r"^[a-z]{1,8}_[0-9A-Z]{26}$")
    currency: str = Field(min_length=3, max_length=3)
    amount: StrictInt | None = Field(
        default=None, ge=1, le=MAX_AMOUNT, description="Gross minor units; omit for all available"
    )


class PayoutOut(BaseModel):
    id: str
    object: str = "payout"
    payee_id: str
    currency: str
    amount: int = Field(description="Gross minor units taken from available")
    tax_withheld: int
    net: int = Field(description="What the payee receives: amount - tax_withheld")
    tax_month: str
    method: str
    destination: str | None = Field(description="Masked payout account")
    status: str
    reference: str | None
    failure_code: str | None
    failure_message: str | None
    requested_by: str
    created_at: datetime
    paid_at: datetime | None
    failed_at: datetime | None
    transfer_package: str | None = Field(
        default=None,
        description="While a WeChat Pay transfer waits for the payee to confirm it: the "
        "package_info the platform's app hands to WeChat (requestMerchantTransfer)",
    )


class PayoutList(BaseModel):
    data: list[PayoutOut]
    has_more: bool


class BankBatchOut(BaseModel):
    object: str = "bank_batch"
    livemode: bool = Field(description="False: a test mode file, never to be sent to a bank")
    filename: str = Field(
        description="The name to save it under; a test mode file's starts TEST-MODE-DO-NOT-SEND"
    )
    payouts: int = Field(description="Payouts in the file, now processing")
    csv: str


class MarkPaidIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reference: Annotated[str, Field(min_length=1, max_length=200), NoNul]


class MarkFailedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, Field(min_length=1, max_length=64), NoNul]
    message: Annotated[str, Field(min_length=1, max_length=500), NoNul]


class PayeeUpdateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=200), NoNul] | None = None
    tax_profile: TaxProfile | None = None
    payout_method: PayoutMethod | None = None
    payout_account: Annotated[str, Field(min_length=1, max_length=200), NoNul] | None = None


def payout_deps(container: Container) -> payout_service.PayoutDeps:
    return container.payout_deps()


def _out(p: PayoutRecord) -> PayoutOut:
    return PayoutOut(
        id=p.id,
        payee_id=p.payee_id,
        currency=p.currency,
        amount=p.amount,
        tax_withheld=p.tax_withheld,
        net=p.net,
        tax_month=p.tax_month,
        method=p.method,
        destination=p.destination,
        status=p.status.value,
        reference=p.reference,
        failure_code=p.failure_code,
        failure_message=p.failure_message,
        requested_by=p.requested_by,
        created_at=p.created_at,
        paid_at=p.paid_at,
        failed_at=p.failed_at,
        transfer_package=p.transfer_package,
    )


@router.post(
    "/payouts",
    status_code=201,
    response_model=PayoutOut,
    summary="Pay a payee from its available balance (all of it when amount is omitted)",
    description="Income tax is withheld from individual payees (labour remuneration, the "
    "month's total less what was withheld). 409 `insufficient_available` when available "
    "does not cover the amount; 422 `payout_below_minimum` below the minimum.",
)
async def create_payout(
    body: PayoutIn, container: ContainerDep, key: ApiKeyDep, actor: ActorDep
) -> PayoutOut:
    cmd = payout_service.CreatePayout(
        payee_id=body.payee_id,
        currency=body.currency,
        amount=body.amount,
        requested_by=f"api_key:{key.id}",
    )
    deps = payout_deps(container)
    payout = await payout_service.create_payout(cmd, container.uow(), deps=deps, actor=actor)
    if payout.method != PayoutMethod.BANK.value:
        # Best effort: a timeout or crash here leaves the job to send or query it.
        await payout_service.submit_payout(container.uow(), payout.id, deps=deps)
        payout = await payout_service.get_payout(container.uow(), payout.id)
    return _out(payout)


@router.get("/payouts/{payout_id}", response_model=PayoutOut, summary="A payout")
async def get_payout(payout_id: PayoutIdPath, container: ContainerDep) -> PayoutOut:
    return _out(await payout_service.get_payout(container.uow(), payout_id))


@router.get("/payouts", response_model=PayoutList, summary="Payouts, newest first")
async def list_payouts(
    container: ContainerDep,
    page: Annotated[Page, page_of(Prefix.PAYOUT)],
    payee_id: Annotated[str | None, Query(max_length=40)] = None,
    status: Annotated[PayoutStatus | None, Query()] = None,
) -> PayoutList:
    uow = container.uow()
    async with uow:
        items, more = await uow.payouts.listing(
            payee_id=payee_id, status=status, limit=page.limit, starting_after=page.starting_after
        )
    return PayoutList(data=[_out(p) for p in items], has_more=more)


@router.post(
    "/payouts/bank_batch",
    status_code=201,
    response_model=BankBatchOut,
    summary="Export pending bank payouts as a batch file; they become processing",
)
async def bank_batch(container: ContainerDep, actor: ActorDep) -> BankBatchOut:
    deps = payout_deps(container)
    text = await payout_service.export_bank_batch(container.uow(), deps=deps, actor=actor)
    return BankBatchOut(
        livemode=container.mode == "live",
        filename=payout_service.bank_batch_filename(container.mode, deps.clock.now()),
        payouts=text.count("\n") - 1,
        csv=text,
    )


@router.post(
    "/payouts/{payout_id}/mark_paid",
    response_model=PayoutOut,
    summary="Record that the bank paid a processing payout, with its reference",
)
async def mark_paid(
    payout_id: PayoutIdPath, body: MarkPaidIn, container: ContainerDep, actor: ActorDep
) -> PayoutOut:
    return _out(
        await payout_service.mark_paid(
            container.uow(),
            payout_id,
            reference=body.reference,
            deps=payout_deps(container),
            actor=actor,
        )
    )


@router.post(
    "/payouts/{payout_id}/mark_failed",
    response_model=PayoutOut,
    summary="Record that a payout failed (or, once paid, was returned): money back to available",
)
async def mark_failed(
    payout_id: PayoutIdPath, body: MarkFailedIn, container: ContainerDep, actor: ActorDep
) -> PayoutOut:
    return _out(
        await payout_service.mark_failed(
            container.uow(),
            payout_id,
            code=body.code,
            message=body.message,
            deps=payout_deps(container),
            actor=actor,
        )
    )


@router.post(
    "/payees/{payee_id}",
    response_model=PayeeOut,
    summary="Change a payee's name, tax profile or payout details",
)
async def update_payee(
    payee_id: PayeeIdPath, body: PayeeUpdateIn, container: ContainerDep, actor: ActorDep
) -> PayeeOut:
    payee = await earnings_service.update_payee(
        container.uow(),
        payee_id,
        at=container.clock.now(),
        name=body.name,
        tax_profile=body.tax_profile,
        payout_method=body.payout_method.value if body.payout_method else None,
        payout_account=body.payout_account,
        actor=actor,
    )
    return payee_out(payee)


routers: list[APIRouter] = [router]
