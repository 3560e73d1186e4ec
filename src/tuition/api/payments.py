"""Payments and channel notifications over HTTP."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from tuition.api.deps import Container, ContainerDep, get_container, live_container
from tuition.api.fields import CustomerIdQuery
from tuition.api.idempotency import replayed_by
from tuition.api.listing import CreatedGte, CreatedLt, Page, page_of
from tuition.api.routing import v1_router
from tuition.domain.errors import ValidationFailed
from tuition.domain.ids import Prefix
from tuition.domain.money import MAX_AMOUNT
from tuition.domain.payments import PaymentStatus
from tuition.domain.wallet import WALLET_CHANNEL
from tuition.services import payments as payment_service
from tuition.services import wallet as wallet_service
from tuition.services.channel_choice import choose_channel
from tuition.services.notifications import handle_notification
from tuition.services.risk import payment_risk, payments_risk
from tuition.store.payments import PaymentFilter, PaymentRecord

AUTO_CHANNEL = "auto"

router = v1_router(tags=["payments"])
notify = APIRouter(prefix="/v1", tags=["notifications"])


class PaymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: str = Field(
        min_length=1, max_length=32, description="e.g. sandbox, alipay; wallet pays from balance"
    )
    method: str | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        description="e.g. page, qr, jsapi, h5; needed for every channel but wallet",
    )
    client_ip: str | None = Field(default=None, max_length=64)
    payer_id: str | None = Field(
        default=None, max_length=128, description="e.g. the buyer's WeChat openid (JSAPI)"
    )
    wallet_amount: StrictInt | None = Field(
        default=None,
        ge=1,
        le=MAX_AMOUNT,
        description="Split tender: this much (minor units) from the buyer's balance, held "
        "until the channel payment ends, and the rest through the channel",
    )


class PaymentOut(BaseModel):
    id: str
    object: str = "payment"
    order_id: str
    customer_id: str
    channel: str
    method: str
    status: PaymentStatus
    amount: int
    currency: str
    fee: int | None
    amount_refunded: int
    next_action: dict[str, Any] | None = Field(
        description="What the buyer does next: {type: redirect|qr_code|app_params, ...}"
    )
    failure_code: str | None
    failure_message: str | None
    duplicate_of: str | None = Field(
        description="Set when this payment arrived for an order already paid or closed; "
        "it is refunded automatically"
    )
    succeeded_at: datetime | None
    created_at: datetime
    wallet_part_id: str | None = Field(
        default=None,
        description="Split tender: the `wallet` payment holding the part paid from balance "
        "(`pending` while held, `succeeded` with this one, `closed` when released)",
    )
    risk: dict[str, Any] | None = Field(
        default=None, description="Risk control's decision on it: {score, decision, reasons}"
    )


class PaymentList(BaseModel):
    data: list[PaymentOut]
    has_more: bool


def payment_out(p: PaymentRecord) -> PaymentOut:
    return PaymentOut(
        id=p.id,
        order_id=p.order_id,
        customer_id=p.customer_id,
        channel=p.channel,
        method=p.method,
        status=p.status,
        amount=p.amount,
        currency=p.currency,
        fee=p.fee,
        amount_refunded=p.amount_refunded,
        next_action=p.next_action,
        failure_code=p.failure_code,
        failure_message=p.failure_message,
        duplicate_of=p.duplicate_of,
        succeeded_at=p.succeeded_at,
        created_at=p.created_at,
        wallet_part_id=p.wallet_part_id,
    )


def payment_deps(container: Container) -> payment_service.PaymentDeps:
    return container.payment_deps()


@router.post(
    "/orders/{order_id}/payments",
    status_code=201,
    response_model=PaymentOut,
    summary="Start a payment attempt",
    responses={502: {"description": "The gateway refused or did not answer in time"}},
    description="Creates a payment for the order's total through the channel and returns "
    "the buyer's next action. An order may have several attempts; one on a paid, expired "
    "or cancelled order is refused (409 `order_not_payable`). A gateway timeout answers "
    "502 `channel_timeout` and leaves the attempt pending for the recovery job. "
    '`{"channel": "auto"}` picks the best-ranked enabled channel for the buyer\'s device '
    "(success rate, fee, circuit breaker; 409 `no_channel_available` if none fits). "
    '`{"channel": "wallet"}` pays from the buyer\'s balance at once (the payment is '
    "`succeeded`, the order `paid`), or answers 409 `insufficient_balance` naming the "
    "shortfall and writes nothing; a coin-priced order is paid that way only (409 "
    '`coin_order_needs_wallet`). `"wallet_amount": 500` with a channel splits the tender: '
    "500 is held from the balance (409 `insufficient_balance` if it is not there), the "
    "channel is asked for the rest, and the held part is committed when the channel "
    "payment succeeds or given back when it fails, closes or expires.",
)
@replayed_by(lambda c, _, payment_id: _payment_now(c, payment_id))
async def create_payment(order_id: str, body: PaymentCreate, container: ContainerDep) -> PaymentOut:
    if body.channel == WALLET_CHANNEL:
        if body.wallet_amount is not None:
            raise ValidationFailed(
                "wallet_amount splits a payment with another channel; the wallet channel "
                "pays the whole order",
                param="wallet_amount",
            )
        paid = await wallet_service.pay_with_wallet(
            order_id, container.uow(), deps=payment_deps(container)
        )
        return payment_out(paid)
    channel, method = body.channel, body.method
    if channel == AUTO_CHANNEL:  # smart channel choice: the best-ranked channel now
        chosen = await choose_channel(
            container.uow(),
            container.registry,
            order_id,
            policy=container.choice_policy(),
            now=container.clock.now(),
            method=method,
        )
        channel, method = chosen.channel, chosen.method
    if method is None:
        raise ValidationFailed("method is required for this channel", param="method")
    payment = await payment_service.create_payment(
        payment_service.CreatePayment(
            order_id=order_id,
            channel=channel,
            method=method,
            client_ip=body.client_ip,
            payer_id=body.payer_id,
            wallet_amount=body.wallet_amount,
        ),
        container.uow(),
        deps=payment_deps(container),
    )
    return await _with_risk(container, payment_out(payment))


async def _list_with_risk(
    container: Container, data: list[PaymentOut], has_more: bool
) -> PaymentList:
    risks = await payments_risk(container.uow(), [(p.order_id, p.id) for p in data])
    for out in data:
        out.risk = risks.get(out.id)
    return PaymentList(data=data, has_more=has_more)


async def _with_risk(container: Container, out: PaymentOut) -> PaymentOut:
    out.risk = await payment_risk(container.uow(), out.order_id, out.id)
    return out


async def _payment_now(container: Container, payment_id: str | None) -> PaymentOut | None:
    """An Idempotency-Key replay whose first answer was lost: the payment as it is now."""
    if payment_id is None:
        return None
    payment = payment_out(await payment_service.get_payment(container.uow(), payment_id))
    return await _with_risk(container, payment)


@router.get("/payments/{payment_id}", response_model=PaymentOut, summary="Get a payment")
async def get_payment(payment_id: str, container: ContainerDep) -> PaymentOut:
    payment = payment_out(await payment_service.get_payment(container.uow(), payment_id))
    return await _with_risk(container, payment)


@router.get(
    "/orders/{order_id}/payments", response_model=PaymentList, summary="An order's payments"
)
async def order_payments(
    order_id: str,
    container: ContainerDep,
    page: Annotated[Page, page_of(Prefix.PAYMENT)],
) -> PaymentList:
    items, has_more = await payment_service.list_payments(
        container.uow(),
        PaymentFilter(order_id=order_id),
        limit=page.limit,
        starting_after=page.starting_after,
    )
    return await _list_with_risk(container, [payment_out(p) for p in items], has_more)


@router.get(
    "/payments",
    response_model=PaymentList,
    summary="List payments",
    description="Newest first; filter by customer, status, channel and creation time "
    "(`created_gte` ≤ created_at < `created_lt`); page with `starting_after`.",
)
async def list_payments(
    container: ContainerDep,
    page: Annotated[Page, page_of(Prefix.PAYMENT)],
    customer_id: CustomerIdQuery = None,
    status: PaymentStatus | None = None,
    channel: Annotated[str | None, Query(max_length=32)] = None,
    created_gte: CreatedGte = None,
    created_lt: CreatedLt = None,
) -> PaymentList:
    items, has_more = await payment_service.list_payments(
        container.uow(),
        PaymentFilter(
            customer_id=customer_id,
            status=status,
            channel=channel,
            created_gte=created_gte,
            created_lt=created_lt,
        ),
        limit=page.limit,
        starting_after=page.starting_after,
    )
    return await _list_with_risk(container, [payment_out(p) for p in items], has_more)


_NOTIFY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The channel's success ACK"},
    204: {"description": "WeChat Pay's success ACK (no body)"},
    400: {"description": "The channel's failure ACK, or a channel not enabled here"},
}


@notify.post(
    "/notify/{channel}",
    summary="Channel notification endpoint (for gateways, not for platforms)",
    description="Authenticated by the channel's signature, not an API key. Answers in the "
    "channel's own ACK format: its success ACK once the notification is applied (or was "
    "already), its failure ACK (400) when it is refused. Every "
    "notification received is recorded. Live mode's payments notify here.",
    response_class=Response,
    responses=_NOTIFY_RESPONSES,
)
async def channel_notification(channel: str, request: Request) -> Response:
    return await _notification(channel, request, live_container(request))


@notify.post(
    "/notify/test/{channel}",
    summary="Channel notification endpoint of test mode (for gateways)",
    description="As `/v1/notify/{channel}`, for test mode's payments: verified with test "
    "mode's channel configuration and applied to test mode's data only.",
    response_class=Response,
    responses=_NOTIFY_RESPONSES,
)
async def test_channel_notification(channel: str, request: Request) -> Response:
    request.state.mode = "test"
    return await _notification(channel, request, get_container(request))


async def _notification(channel: str, request: Request, container: Container) -> Response:
    outcome = await handle_notification(
        channel,
        dict(request.headers),
        await request.body(),
        container.uow(),
        deps=payment_deps(container),
    )
    return Response(
        content=outcome.ack.body,
        status_code=outcome.ack.status_code,
        media_type=outcome.ack.media_type,
    )


routers: list[APIRouter] = [router, notify]
