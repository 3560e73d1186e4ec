"""Apple App Store in-app purchases over HTTP: the app's signed transactions and
Apple's App Store Server Notifications V2 (docs/channels.md)."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from tuition.api.deps import Container, ContainerDep, get_container, live_container
from tuition.api.fields import CustomerId
from tuition.api.routing import v1_router
from tuition.channels.apple.client import SLUG, AppleChannel
from tuition.domain.errors import InvalidRequest
from tuition.services import apple as apple_service
from tuition.services.orders import OrderPolicy

router = v1_router(tags=["apple"])
notify = APIRouter(prefix="/v1", tags=["notifications"])


class AppleTransactionPost(BaseModel):
    model_config = ConfigDict(extra="forbid")
    signed_transaction: str = Field(
        min_length=1,
        max_length=20_000,
        description="The JWS signed transaction StoreKit gave the app (jwsRepresentation)",
    )
    customer_id: CustomerId | None = Field(
        default=None,
        description="Who bought it; needed for the first transaction of a purchase, "
        "optional for later ones (renewals are the original purchaser's)",
    )


class AppleTransactionOut(BaseModel):
    object: str = "apple_transaction"
    transaction_id: str
    original_transaction_id: str
    customer_id: str
    app_store_product_id: str
    product_id: str
    status: str = Field(
        description="credited (paid, or granted when family-shared), refunded or revoked"
    )
    family_shared: bool = Field(
        description="A family member's transaction: access granted, no order, no money"
    )
    order_id: str | None = Field(description="null for a family-shared transaction")
    payment_id: str | None = Field(description="null for a family-shared transaction")
    order_status: str | None
    amount: int | None
    currency: str | None
    fee: int | None = Field(description="Apple's commission, booked as the channel fee")
    entitlement_id: str | None = Field(
        description="The grant a family-shared transaction gave (its order's grants otherwise)"
    )
    expires_at: datetime | None = Field(
        description="When that grant ends (a family-shared membership), null otherwise"
    )
    created: bool = Field(description="False when this transaction was credited before")
    created_at: datetime


def deps_of(container: Container) -> apple_service.AppleDeps:
    channel = container.registry.get(SLUG)
    if not isinstance(channel, AppleChannel):
        raise InvalidRequest("the apple channel is not enabled here", code="channel_unknown")
    settings = container.settings
    return apple_service.AppleDeps(
        channel=channel,
        clock=container.clock,
        orders=OrderPolicy(
            order_ttl=timedelta(seconds=settings.order_ttl_seconds),
            channel_fee_rates=settings.channel_fee_rates,
        ),
        refunds=container.refund_deps(),
    )


@router.post(
    "/channels/apple/transactions",
    response_model=AppleTransactionOut,
    status_code=201,
    summary="Credit an App Store purchase from its signed transaction",
    description="Verifies the JWS with Apple's library (chain to the configured root, "
    "bundle id, app Apple id, environment), maps the App Store product id to a Tuition "
    "product and pays one order for it, once per transaction id: posting it again "
    "answers 200 with the same order. A family-shared transaction grants the family "
    "member access with no order and no money (family_shared: true, entitlement_id).",
)
async def post_transaction(
    body: AppleTransactionPost, container: ContainerDep, response: Response
) -> AppleTransactionOut:
    credited = await apple_service.record_transaction(
        body.signed_transaction, body.customer_id, container.uow(), deps=deps_of(container)
    )
    if not credited.created:
        response.status_code = 200
    record, order, payment = credited.transaction, credited.order, credited.payment
    grant = credited.entitlement
    return AppleTransactionOut(
        transaction_id=record.transaction_id,
        original_transaction_id=record.original_transaction_id,
        customer_id=record.customer_id,
        app_store_product_id=record.app_store_product_id,
        product_id=record.product_id,
        status=record.status,
        family_shared=record.family_shared,
        order_id=None if order is None else order.id,
        payment_id=None if payment is None else payment.id,
        order_status=None if order is None else order.status.value,
        amount=None if payment is None else payment.amount,
        currency=None if payment is None else payment.currency,
        fee=None if payment is None else payment.fee,
        entitlement_id=None if grant is None else grant.id,
        expires_at=None if grant is None else grant.expires_at,
        created=credited.created,
        created_at=record.created_at,
    )


@notify.post(
    "/notify/apple",
    summary="App Store Server Notifications V2 (for Apple, not for platforms)",
    description="Authenticated by the signed payload, not an API key. 200 once applied "
    "(or already, or nothing to do); 400 when it does not verify, so Apple sends it again.",
    response_class=Response,
    responses={200: {"description": "Accepted"}, 400: {"description": "Refused"}},
)
async def apple_notification(request: Request) -> Response:
    return await _notification(request, live_container(request))


@notify.post(
    "/notify/test/apple",
    summary="App Store Server Notifications V2 of test mode (Apple's sandbox environment)",
    description="As `/v1/notify/apple`, for test mode: set it as the Sandbox server URL in "
    "App Store Connect; verified with test mode's Apple settings, applied to test data.",
    response_class=Response,
    responses={200: {"description": "Accepted"}, 400: {"description": "Refused"}},
)
async def test_apple_notification(request: Request) -> Response:
    request.state.mode = "test"
    return await _notification(request, get_container(request))


async def _notification(request: Request, container: Container) -> Response:
    deps = deps_of(container)
    outcome = await apple_service.handle_apple_notification(
        await request.body(), dict(request.headers), container.uow(), deps=deps
    )
    ack = deps.channel.ack(outcome.verdict != "rejected")
    return Response(content=ack.body, status_code=ack.status_code, media_type=ack.media_type)


routers: list[APIRouter] = [router, notify]
