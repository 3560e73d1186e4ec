"""Refunds over REST, the refund preview of an order, and consumption reports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from tuition.api.deps import ActorDep, ApiKeyDep, Container, ContainerDep, audited
from tuition.api.fields import CustomerIdPath, CustomerIdQuery, Metadata
from tuition.api.idempotency import replayed_by
from tuition.api.listing import CreatedGte, CreatedLt, Page, page_of
from tuition.api.routing import v1_router
from tuition.domain.errors import ValidationFailed
from tuition.domain.ids import Prefix
from tuition.domain.money import MAX_AMOUNT
from tuition.domain.payments import RefundStatus
from tuition.domain.refunds import (
    LineRequest,
    RefundDestination,
    RefundReason,
    lessons_progress,
    parse_progress,
)
from tuition.services import refunds as refund_service
from tuition.services.payments import get_payment
from tuition.store.refunds import Consumption, RefundFilter, RefundRecord

router = v1_router(tags=["refunds"])

ObjectId = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_]+$")]
Amount = Annotated[StrictInt, Field(ge=1, le=MAX_AMOUNT)]


class RefundLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    line_id: str | StrictInt = Field(
        description="The line's `id` from the order (`ord_…:1`), or its `index`"
    )
    amount: Amount | None = Field(
        default=None, description="Minor units; default: all the line may still give back"
    )


class RefundCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: ObjectId | None = None
    payment_id: ObjectId | None = None
    amount: Amount | None = Field(
        default=None, description="Minor units; default: everything still refundable"
    )
    lines: list[RefundLineIn] | None = Field(default=None, min_length=1, max_length=50)
    reason: RefundReason = RefundReason.REQUESTED_BY_CUSTOMER
    metadata: Metadata = Field(default_factory=dict)
    to: Literal["original", "wallet"] = Field(
        default="original",
        description="original: back through the payment's channel; wallet: into the "
        "buyer's balance at once",
    )
    override: StrictBool = Field(
        default=False,
        description="Lift the refund window and consumption rules (recorded with the key)",
    )

    @model_validator(mode="after")
    def _one_target(self) -> RefundCreate:
        if self.order_id is None and self.payment_id is None:
            raise ValueError("give order_id or payment_id")
        if self.amount is not None and self.lines is not None:
            raise ValueError("give either amount or lines, not both")
        return self


class RefundLineOut(BaseModel):
    line_id: str
    index: int
    amount: int
    creator_amount: int = Field(
        description="What the payees give back: the creator's share and, for a referred "
        "order, the promoters' commissions, split over them pro rata"
    )
    tax_amount: int
    platform_amount: int
    revokes_access: bool


class RefundOut(BaseModel):
    id: str
    object: str = "refund"
    order_id: str
    payment_id: str
    customer_id: str
    amount: int
    currency: str
    status: RefundStatus
    reason: str
    to: str
    lines: list[RefundLineOut]
    failure_code: str | None
    failure_message: str | None
    channel_refund_no: str | None
    fee_returned: int | None = Field(description="What the channel gave back of its fee")
    requested_by: str
    override_by: str | None = Field(description="Who lifted the refund rules, if anyone did")
    retry_of: str | None
    metadata: dict[str, Any]
    submitted_at: datetime | None
    succeeded_at: datetime | None
    failed_at: datetime | None
    created_at: datetime


class RefundList(BaseModel):
    data: list[RefundOut]
    has_more: bool


class LinePreviewOut(BaseModel):
    line_id: str
    index: int
    product_id: str
    title: str
    total: int
    refunded: int = Field(description="Held by pending and succeeded refunds")
    refundable: int = Field(description="What the rules allow now")
    refused_by: str | None = Field(description="The rule that allows nothing, if any")
    message: str | None


class RefundableOut(BaseModel):
    object: str = "refundable"
    order_id: str
    currency: str
    refundable: int
    lines: list[LinePreviewOut]


class ProgressIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    progress: str | None = Field(
        default=None, max_length=20, description='A decimal string from 0 to 1, e.g. "0.35"'
    )
    lessons_consumed: StrictInt | None = Field(default=None, ge=0, le=1_000_000)
    lessons_total: StrictInt | None = Field(default=None, ge=1, le=1_000_000)


class ProgressOut(BaseModel):
    object: str = "consumption"
    customer_id: str
    product_id: str
    progress: str
    lessons_consumed: int | None
    lessons_total: int | None
    updated_at: datetime


def refund_out(refund: RefundRecord) -> RefundOut:
    return RefundOut(
        id=refund.id,
        order_id=refund.order_id,
        payment_id=refund.payment_id,
        customer_id=refund.customer_id,
        amount=refund.amount,
        currency=refund.currency,
        status=refund.status,
        reason=refund.reason,
        to=refund.destination,
        lines=[
            RefundLineOut(
                line_id=refund_service.line_id(refund.order_id, line.line_index),
                index=line.line_index,
                amount=line.amount,
                creator_amount=line.creator_amount,
                tax_amount=line.tax_amount,
                platform_amount=line.platform_amount,
                revokes_access=line.revokes_access,
            )
            for line in refund.lines
        ],
        failure_code=refund.failure_code,
        failure_message=refund.failure_message,
        channel_refund_no=refund.channel_refund_no,
        fee_returned=refund.fee_returned,
        requested_by=refund.requested_by,
        override_by=refund.override_by,
        retry_of=refund.retry_of,
        metadata=refund.metadata or {},
        submitted_at=refund.submitted_at,
        succeeded_at=refund.succeeded_at,
        failed_at=refund.failed_at,
        created_at=refund.created_at,
    )


def refund_deps(container: Container) -> refund_service.RefundDeps:
    return container.refund_deps()


@router.post(
    "/refunds",
    status_code=201,
    response_model=RefundOut,
    summary="Refund an order or a payment",
    description="Refunds everything still refundable, an `amount` (spread over the lines "
    "by what each may give back), or `lines`. The refund rules of each product apply "
    "(window, consumption, membership time left); a refund they do not allow is refused "
    "with 409 and a code naming the rule (`refund_window_closed`, "
    "`consumption_limit_exceeded`, `refund_exceeds_refundable`, `order_not_refundable`) "
    "and writes nothing; `override: true` lifts the rules and is recorded with the key. "
    "The channel is asked at once: the answer is `succeeded`, `failed` (with the gateway's "
    "code and message) or `pending` while the gateway settles it.",
)
@replayed_by(lambda c, _, refund_id: _refund_now(c, refund_id))
async def create_refund(
    body: RefundCreate, container: ContainerDep, key: ApiKeyDep, actor: ActorDep
) -> RefundOut:
    lines = None
    if body.lines is not None:
        order_id = body.order_id or await _order_of_payment(container, body.payment_id)
        lines = tuple(
            LineRequest(
                refund_service.parse_line_id(line.line_id, order_id, param=f"lines[{n}].line_id"),
                line.amount,
            )
            for n, line in enumerate(body.lines)
        )
    cmd = refund_service.CreateRefund(
        order_id=body.order_id,
        payment_id=body.payment_id,
        amount=body.amount,
        lines=lines,
        reason=body.reason,
        metadata=body.metadata,
        destination=RefundDestination(body.to),
        override=body.override,
        requested_by=f"api_key:{key.id}",
    )
    uow = audited(
        container,
        actor,
        "refund.created",
        body.order_id or body.payment_id or "",
        amount=body.amount,
        override=body.override,
    )
    refund = await refund_service.create_refund(cmd, uow, deps=refund_deps(container))
    return refund_out(refund)


async def _order_of_payment(container: Container, payment_id: str | None) -> str:
    assert payment_id is not None
    return (await get_payment(container.uow(), payment_id)).order_id


async def _refund_now(container: Container, refund_id: str | None) -> RefundOut | None:
    """An Idempotency-Key replay whose first answer was lost: the refund as it is now."""
    if refund_id is None:
        return None
    return refund_out(await refund_service.get_refund(container.uow(), refund_id))


@router.get("/refunds/{refund_id}", response_model=RefundOut, summary="Get a refund")
async def get_refund(
    refund_id: Annotated[str, Path(max_length=40)], container: ContainerDep
) -> RefundOut:
    return refund_out(await refund_service.get_refund(container.uow(), refund_id))


@router.get(
    "/refunds",
    response_model=RefundList,
    summary="List refunds",
    description="Newest first; filter by order, payment, customer, status and creation "
    "time (`created_gte` ≤ created_at < `created_lt`); page with `starting_after`.",
)
async def list_refunds(
    container: ContainerDep,
    page: Annotated[Page, page_of(Prefix.REFUND)],
    order_id: Annotated[str | None, Query(max_length=40)] = None,
    payment_id: Annotated[str | None, Query(max_length=40)] = None,
    customer_id: CustomerIdQuery = None,
    status: RefundStatus | None = None,
    created_gte: CreatedGte = None,
    created_lt: CreatedLt = None,
) -> RefundList:
    items, has_more = await refund_service.list_refunds(
        container.uow(),
        RefundFilter(order_id, payment_id, customer_id, status, created_gte, created_lt),
        limit=page.limit,
        starting_after=page.starting_after,
    )
    return RefundList(data=[refund_out(r) for r in items], has_more=has_more)


@router.post(
    "/refunds/{refund_id}/retry",
    status_code=201,
    response_model=RefundOut,
    summary="Retry a failed refund",
    description="A new refund of the same lines and amounts as a failed one (`retry_of` "
    "names it); 409 `refund_not_retryable` for a refund that did not fail.",
)
@replayed_by(lambda c, _, refund_id: _refund_now(c, refund_id))
async def retry_refund(
    refund_id: Annotated[str, Path(max_length=40)],
    container: ContainerDep,
    key: ApiKeyDep,
    actor: ActorDep,
) -> RefundOut:
    refund = await refund_service.retry_refund(
        audited(container, actor, "refund.retried", refund_id),
        refund_id,
        requested_by=f"api_key:{key.id}",
        deps=refund_deps(container),
    )
    return refund_out(refund)


@router.get(
    "/orders/{order_id}/refundable",
    response_model=RefundableOut,
    summary="What the refund rules allow on an order now",
)
async def order_refundable(
    order_id: Annotated[str, Path(max_length=40)], container: ContainerDep
) -> RefundableOut:
    preview = await refund_service.preview_refund(
        container.uow(), order_id, deps=refund_deps(container)
    )
    return RefundableOut(
        order_id=preview.order_id,
        currency=preview.currency,
        refundable=preview.refundable,
        lines=[
            LinePreviewOut(
                line_id=refund_service.line_id(preview.order_id, line.index),
                index=line.index,
                product_id=line.product_id,
                title=line.title,
                total=line.total,
                refunded=line.refunded,
                refundable=line.refundable,
                refused_by=line.refused_by,
                message=line.message,
            )
            for line in preview.lines
        ],
    )


@router.put(
    "/customers/{customer_id}/entitlements/{product_id}/progress",
    response_model=ProgressOut,
    summary="Report how much of a product the customer has consumed",
    description="`progress` as a decimal string from 0 to 1, or `lessons_consumed` and "
    "`lessons_total`. The consumption refund rules read it; 404 "
    "`entitlement_not_found` when the customer never had access to the product.",
)
async def put_progress(
    customer_id: CustomerIdPath,
    product_id: Annotated[str, Path(max_length=40)],
    body: ProgressIn,
    container: ContainerDep,
    actor: ActorDep,
) -> ProgressOut:
    lessons = None
    if body.progress is not None:
        if body.lessons_consumed is not None or body.lessons_total is not None:
            raise ValidationFailed(
                "give progress, or lessons_consumed and lessons_total, not both",
                param="progress",
            )
        progress = parse_progress(body.progress)
    elif body.lessons_consumed is not None and body.lessons_total is not None:
        progress = lessons_progress(body.lessons_consumed, body.lessons_total)
        lessons = (body.lessons_consumed, body.lessons_total)
    else:
        raise ValidationFailed(
            "give progress, or lessons_consumed and lessons_total", param="progress"
        )
    record = await refund_service.report_progress(
        audited(container, actor, "consumption.reported", customer_id, product_id=product_id),
        customer_id,
        product_id,
        progress=progress,
        lessons=lessons,
        deps=refund_deps(container),
    )
    return _progress_out(record)


def _progress_out(record: Consumption) -> ProgressOut:
    return ProgressOut(
        customer_id=record.customer_id,
        product_id=record.product_id,
        progress=str(record.progress),
        lessons_consumed=record.lessons_consumed,
        lessons_total=record.lessons_total,
        updated_at=record.updated_at,
    )


routers: list[APIRouter] = [router]
