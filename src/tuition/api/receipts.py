"""A paid order's receipt as JSON, with the signed link to its printable page."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from tuition.api.deps import ContainerDep
from tuition.api.routing import v1_router
from tuition.services.receipts import Receipt, receipt_of
from tuition.web.links import receipt_url

router = v1_router(tags=["receipts"])

OrderIdPath = Annotated[str, Path(min_length=1, max_length=40, description="An order id, ord_…")]


class ReceiptLineOut(BaseModel):
    index: int
    title: str
    kind: str
    quantity: int
    unit_price: int
    list_amount: int = Field(description="unit_price * quantity")
    discount: int = Field(description="Promotion and coupon discounts of the line")
    tax: int
    surcharge: int
    total: int
    amount_refunded: int


class ReceiptPaymentOut(BaseModel):
    id: str
    channel: str
    method: str
    amount: int
    channel_trade_no: str | None = Field(description="The channel's own trade number")
    succeeded_at: datetime | None


class ReceiptRefundOut(BaseModel):
    id: str
    amount: int
    status: str
    destination: str
    channel_refund_no: str | None
    created_at: datetime
    succeeded_at: datetime | None


class ReceiptOut(BaseModel):
    object: str = "receipt"
    order_id: str
    customer_id: str
    merchant_name: str
    status: str
    currency: str
    lines: list[ReceiptLineOut]
    subtotal: int
    discount_total: int
    tax_total: int
    surcharge: int
    total: int
    amount_refunded: int = Field(description="Refunded so far (succeeded refunds)")
    net: int = Field(description="total - amount_refunded")
    paid_at: datetime | None = Field(description="UTC")
    paid_at_local: str | None = Field(description="paid_at in the platform's time zone")
    time_zone: str
    payments: list[ReceiptPaymentOut]
    refunds: list[ReceiptRefundOut]
    url: str = Field(description="The signed link to the printable receipt page")


def receipt_out(receipt: Receipt, *, time_zone: str, url: str) -> ReceiptOut:
    order = receipt.order
    local = receipt.paid_at_local
    return ReceiptOut(
        order_id=order.id,
        customer_id=order.customer_id,
        merchant_name=receipt.merchant_name,
        status=order.status.value,
        currency=order.currency,
        lines=[
            ReceiptLineOut(
                index=line.line_index,
                title=line.title,
                kind=line.kind,
                quantity=line.quantity,
                unit_price=line.unit_price,
                list_amount=line.list_amount,
                discount=line.promotion_discount + line.coupon_discount,
                tax=line.tax,
                surcharge=line.surcharge,
                total=line.total,
                amount_refunded=line.amount_refunded,
            )
            for line in order.lines
        ],
        subtotal=order.subtotal,
        discount_total=order.discount_total,
        tax_total=order.tax_total,
        surcharge=order.surcharge,
        total=order.total,
        amount_refunded=receipt.refunded,
        net=receipt.net,
        paid_at=order.paid_at,
        paid_at_local=None if local is None else local.isoformat(),
        time_zone=time_zone,
        payments=[
            ReceiptPaymentOut(
                id=p.id,
                channel=p.channel,
                method=p.method,
                amount=p.amount,
                channel_trade_no=p.channel_trade_no,
                succeeded_at=p.succeeded_at,
            )
            for p in receipt.payments
        ],
        refunds=[
            ReceiptRefundOut(
                id=r.id,
                amount=r.amount,
                status=r.status.value,
                destination=r.destination,
                channel_refund_no=r.channel_refund_no,
                created_at=r.created_at,
                succeeded_at=r.succeeded_at,
            )
            for r in receipt.refunds
        ],
        url=url,
    )


@router.get(
    "/orders/{order_id}/receipt",
    response_model=ReceiptOut,
    summary="A paid order's receipt, with the signed link to its printable page",
    description="409 `order_not_paid` for an order that was never paid. `url` opens the "
    "printable page (zh-CN or en) without an API key: hand it to the buyer.",
)
async def get_receipt(order_id: OrderIdPath, container: ContainerDep) -> ReceiptOut:
    settings = container.settings
    receipt = await receipt_of(
        container.uow(), order_id, merchant_name=settings.merchant_name, zone=settings.zone
    )
    return receipt_out(receipt, time_zone=settings.time_zone, url=receipt_url(settings, order_id))


routers: list[APIRouter] = [router]
