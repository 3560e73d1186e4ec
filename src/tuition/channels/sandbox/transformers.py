"""Pure mapping between the sandbox gateway's JSON and Tuition's channel types.

Amounts are integer minor units on this wire too, so no conversion happens; times are
ISO 8601 with an offset (``2026-11-01T09:00:00Z``). Wire statuses map to the shared
statuses in one exhaustive ``match`` each; a status this code does not know raises
:class:`UnknownWireStatus` rather than being guessed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from tuition.channels.base import (
    CreatedPayment,
    NextAction,
    NextActionType,
    NotificationKind,
    PaymentRequest,
    PaymentState,
    RefundRequest,
    RefundState,
    VerifiedNotification,
)
from tuition.domain.errors import ChannelError
from tuition.domain.payments import PaymentStatus, RefundStatus

PAYMENT_WIRE_STATUSES = ("WAIT_PAY", "PAID", "CLOSED", "FAILED")
REFUND_WIRE_STATUSES = ("REFUND_PROCESSING", "REFUND_SUCCESS", "REFUND_FAILED")


class UnknownWireStatus(ChannelError, ValueError):
    """The gateway reported a status this adapter does not understand."""

    default_code = "channel_unknown_status"


def payment_status(wire: str) -> PaymentStatus:
    match wire:
        case "WAIT_PAY":
            return PaymentStatus.PENDING
        case "PAID":
            return PaymentStatus.SUCCEEDED
        case "CLOSED":
            return PaymentStatus.CLOSED
        case "FAILED":
            return PaymentStatus.FAILED
        case _:
            raise UnknownWireStatus(f"unknown sandbox payment status {wire!r}")


def refund_status(wire: str) -> RefundStatus:
    match wire:
        case "REFUND_PROCESSING":
            return RefundStatus.PENDING
        case "REFUND_SUCCESS":
            return RefundStatus.SUCCEEDED
        case "REFUND_FAILED":
            return RefundStatus.FAILED
        case _:
            raise UnknownWireStatus(f"unknown sandbox refund status {wire!r}")


# -- wire shapes --------------------------------------------------------------------------

_Amount = Annotated[int, Field(ge=0)]


class _Wire(BaseModel):
    # strict: a "100" string or a 1.0 float is not an amount. Unknown fields are ignored
    # so the gateway may add fields without breaking us.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class WirePayment(_Wire):
    out_trade_no: str
    trade_no: str
    status: str
    amount: _Amount
    currency: str
    paid_at: AwareDatetime | None = None
    pay_url: str | None = None
    qr_code: str | None = None


class WireRefund(_Wire):
    out_refund_no: str
    refund_no: str
    out_trade_no: str
    status: str
    amount: _Amount
    currency: str


class WireNotification(_Wire):
    app_id: str
    event: str
    out_trade_no: str
    trade_no: str
    status: str
    amount: _Amount
    currency: str
    paid_at: AwareDatetime | None = None
    notify_id: str
    out_refund_no: str | None = None
    refund_no: str | None = None


class WireError(_Wire):
    code: str
    message: str = ""


# -- requests -----------------------------------------------------------------------------


def wire_time(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("sandbox times must be timezone-aware")
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _encode(data: dict[str, object]) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def payment_request_body(request: PaymentRequest) -> bytes:
    return _encode(
        {
            "out_trade_no": request.payment_id,
            "amount": request.amount,
            "currency": request.currency,
            "subject": request.subject,
            "method": request.method,
            "notify_url": request.notify_url,
            "return_url": request.return_url,
            "expires_at": wire_time(request.expires_at),
        }
    )


def refund_request_body(request: RefundRequest) -> bytes:
    return _encode(
        {
            "out_refund_no": request.refund_id,
            "amount": request.amount,
            "currency": request.currency,
            "reason": request.reason,
            "notify_url": request.notify_url,
        }
    )


# -- responses and notifications ----------------------------------------------------------
# These raise pydantic.ValidationError (a ValueError) on a malformed body and
# UnknownWireStatus on an unknown status; the client decides what each means.


def created_payment(body: bytes, method: str) -> CreatedPayment:
    wire = WirePayment.model_validate_json(body)
    if wire.pay_url is None:
        raise ValueError("the gateway returned no pay_url")
    if method == "qr":
        action = NextAction(NextActionType.QR_CODE, qr_payload=wire.qr_code or wire.pay_url)
    else:
        action = NextAction(NextActionType.REDIRECT, url=wire.pay_url)
    return CreatedPayment(next_action=action, channel_trade_no=wire.trade_no)


def _payment_state(wire: WirePayment | WireNotification) -> PaymentState:
    return PaymentState(
        payment_id=wire.out_trade_no,
        status=payment_status(wire.status),
        amount=wire.amount,
        currency=wire.currency,
        channel_trade_no=wire.trade_no,
        paid_at=wire.paid_at,
        raw_status=wire.status,
    )


def payment_state(body: bytes) -> PaymentState:
    return _payment_state(WirePayment.model_validate_json(body))


def refund_state(body: bytes) -> RefundState:
    wire = WireRefund.model_validate_json(body)
    return RefundState(
        refund_id=wire.out_refund_no,
        payment_id=wire.out_trade_no,
        status=refund_status(wire.status),
        amount=wire.amount,
        currency=wire.currency,
        channel_refund_no=wire.refund_no,
        raw_status=wire.status,
    )


def notification(body: bytes) -> VerifiedNotification:
    """Map a notification body (already signature-checked) to a VerifiedNotification."""
    wire = WireNotification.model_validate_json(body)
    kind, _, _ = wire.event.partition(".")
    if kind == "payment":
        return VerifiedNotification(
            kind=NotificationKind.PAYMENT,
            app_id=wire.app_id,
            event=wire.event,
            trade_no=wire.trade_no,
            payment=_payment_state(wire),
        )
    if kind == "refund":
        if wire.out_refund_no is None or wire.refund_no is None:
            raise ValueError("a refund notification needs out_refund_no and refund_no")
        refund = RefundState(
            refund_id=wire.out_refund_no,
            payment_id=wire.out_trade_no,
            status=refund_status(wire.status),
            amount=wire.amount,
            currency=wire.currency,
            channel_refund_no=wire.refund_no,
            raw_status=wire.status,
        )
        return VerifiedNotification(
            kind=NotificationKind.REFUND,
            app_id=wire.app_id,
            event=wire.event,
            trade_no=wire.refund_no,
            refund=refund,
        )
    raise ValueError(f"unknown sandbox notification event {wire.event!r}")


def error_of(body: bytes) -> WireError | None:
    """The gateway's ``{"code", "message"}`` refusal, or None if the body is not one."""
    try:
        return WireError.model_validate_json(body)
    except ValidationError:
        return None
