"""Pure mapping between WeChat Pay API v3 JSON and Tuition's channel types.

WeChat Pay amounts are already integer fen (``amount.total``), so no conversion happens;
the currency is still checked (CNY only). Times are RFC 3339 with an offset
(``2026-11-01T17:00:00+08:00``). ``trade_state`` and ``refund_status`` map to the shared
statuses in one exhaustive ``match`` each; an unknown status raises
:class:`UnknownWireStatus`. Malformed input raises ``ValueError``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import urlencode

from tuition.channels.base import (
    NotificationKind,
    PaymentRequest,
    PaymentState,
    RefundRequest,
    RefundState,
    VerifiedNotification,
)
from tuition.domain.errors import ChannelError, ValidationFailed
from tuition.domain.payments import PaymentStatus, RefundStatus

CURRENCY = "CNY"
BEIJING = timezone(timedelta(hours=8), "CST")
TRADE_STATES = ("SUCCESS", "REFUND", "NOTPAY", "CLOSED", "REVOKED", "USERPAYING", "PAYERROR")
REFUND_STATUSES = ("SUCCESS", "CLOSED", "PROCESSING", "ABNORMAL")
PAYMENT_EVENT = "TRANSACTION.SUCCESS"
REFUND_EVENTS = {
    "REFUND.SUCCESS": "SUCCESS",
    "REFUND.ABNORMAL": "ABNORMAL",
    "REFUND.CLOSED": "CLOSED",
}

JsonObject = Mapping[str, object]


class UnknownWireStatus(ChannelError, ValueError):
    """WeChat Pay reported a status this adapter does not understand."""

    default_code = "channel_unknown_status"


def payment_status(trade_state: str) -> PaymentStatus:
    match trade_state:
        case "SUCCESS" | "REFUND":
            # REFUND ("转入退款"): it was paid, and a refund has started since.
            return PaymentStatus.SUCCEEDED
        case "NOTPAY" | "USERPAYING":
            return PaymentStatus.PENDING
        case "CLOSED" | "REVOKED":
            return PaymentStatus.CLOSED
        case "PAYERROR":
            return PaymentStatus.FAILED
        case _:
            raise UnknownWireStatus(f"unknown WeChat Pay trade_state {trade_state!r}")


def refund_status(wire: str) -> RefundStatus:
    match wire:
        case "SUCCESS":
            return RefundStatus.SUCCEEDED
        case "PROCESSING" | "ABNORMAL":
            # ABNORMAL (退款异常): the buyer's card refused the money, which now waits in
            # WeChat Pay's refund transit account until the merchant re-routes it
            # (apply-abnormal-refund or the merchant platform); it then ends SUCCESS. The
            # money has left the merchant, so it is not a failure: failing it would let a
            # retry refund twice. raw_status "ABNORMAL" tells the operator to act.
            return RefundStatus.PENDING
        case "CLOSED":
            # CLOSED (退款关闭): nothing was paid out (e.g. the balance stayed too low for
            # 7 days); WeChat Pay asks for a new out_refund_no to try again.
            return RefundStatus.FAILED
        case _:
            raise UnknownWireStatus(f"unknown WeChat Pay refund status {wire!r}")


# -- values ------------------------------------------------------------------------------


def require_cny(currency: str, *, param: str = "currency") -> None:
    if currency != CURRENCY:
        raise ValidationFailed(
            f"WeChat Pay charges in CNY only, not {currency!r}",
            code="currency_unsupported",
            param=param,
        )


def wire_time(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("WeChat Pay times must be built from timezone-aware datetimes")
    return at.astimezone(BEIJING).replace(microsecond=0).isoformat()


def parse_wire_time(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError(f"time {text!r} has no offset")
    return at


def text_field(node: JsonObject, key: str) -> str:
    value = node.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"missing or empty {key!r}")
    return value


def _optional_text(node: JsonObject, key: str) -> str | None:
    value = node.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string")
    return value


def _object(node: JsonObject, key: str) -> JsonObject:
    value = node.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"missing object {key!r}")
    return value


def _fen(node: JsonObject, key: str) -> int:
    value = node.get(key)
    # bool is an int subclass and a float is never an amount; both are refused.
    if type(value) is not int or value < 0:
        raise ValueError(f"amount.{key} must be a non-negative integer of fen")
    return value


def _check_currency(amount: JsonObject) -> str:
    currency = amount.get("currency", CURRENCY)
    if currency != CURRENCY:
        raise ValueError(f"amount.currency {currency!r} is not CNY")
    return CURRENCY


def encode(body: JsonObject) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode(body: bytes) -> JsonObject:
    data = json.loads(body.decode("utf-8"), parse_float=Decimal)  # never a float
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


# -- requests ----------------------------------------------------------------------------

ENDPOINTS = {
    "native": "/v3/pay/transactions/native",
    "jsapi": "/v3/pay/transactions/jsapi",
    "h5": "/v3/pay/transactions/h5",
    "app": "/v3/pay/transactions/app",
    "miniprogram": "/v3/pay/transactions/jsapi",  # with the mini-program's appid
}


def payment_body(
    request: PaymentRequest, *, appid: str, mchid: str, notify_url: str
) -> dict[str, object]:
    body: dict[str, object] = {
        "appid": appid,
        "mchid": mchid,
        "description": request.subject[:127],
        "out_trade_no": request.payment_id,
        "time_expire": wire_time(request.expires_at),
        "notify_url": notify_url,
        "amount": {"total": request.amount, "currency": CURRENCY},
    }
    if request.method in ("jsapi", "miniprogram"):
        if not request.payer_id:
            raise ValidationFailed(
                "a JSAPI payment needs the buyer's openid",
                code="payer_id_required",
                param="payer_id",
            )
        body["payer"] = {"openid": request.payer_id}
    if request.method == "h5":
        if not request.client_ip:
            raise ValidationFailed(
                "an H5 payment needs the buyer's IP address",
                code="client_ip_required",
                param="client_ip",
            )
        body["scene_info"] = {"payer_client_ip": request.client_ip, "h5_info": {"type": "Wap"}}
    return body


def refund_body(request: RefundRequest, *, notify_url: str) -> dict[str, object]:
    body: dict[str, object] = {
        "out_trade_no": request.payment_id,
        "out_refund_no": request.refund_id,
        "notify_url": notify_url,
        "amount": {
            "refund": request.amount,
            "total": request.payment_amount,
            "currency": CURRENCY,
        },
    }
    if request.reason:
        body["reason"] = request.reason[:80]
    return body


def h5_redirect(h5_url: str, return_url: str | None) -> str:
    """Where the buyer returns after an H5 payment is set by appending ``redirect_url``."""
    if not return_url:
        return h5_url
    return f"{h5_url}{'&' if '?' in h5_url else '?'}{urlencode({'redirect_url': return_url})}"


# -- responses and notifications ---------------------------------------------------------


def payment_state(node: JsonObject) -> PaymentState:
    """A transaction object (query answer or decrypted ``TRANSACTION.SUCCESS`` resource)."""
    state = text_field(node, "trade_state")
    amount = _object(node, "amount")
    success_time = _optional_text(node, "success_time")
    return PaymentState(
        payment_id=text_field(node, "out_trade_no"),
        status=payment_status(state),
        amount=_fen(amount, "total"),
        currency=_check_currency(amount),
        channel_trade_no=_optional_text(node, "transaction_id"),
        paid_at=parse_wire_time(success_time) if success_time else None,
        raw_status=state,
    )


def refund_state(node: JsonObject, *, status_key: str = "status") -> RefundState:
    """A refund object; the API calls its state ``status``, notifications ``refund_status``."""
    status = text_field(node, status_key)
    amount = _object(node, "amount")
    mapped = refund_status(status)
    # amount.refund_fee (手续费退款金额): the fee given back, when WeChat Pay reports it.
    fee_returned = _fen(amount, "refund_fee") if amount.get("refund_fee") is not None else None
    return RefundState(
        refund_id=text_field(node, "out_refund_no"),
        payment_id=text_field(node, "out_trade_no"),
        status=mapped,
        amount=_fen(amount, "refund"),
        currency=_check_currency(amount),
        channel_refund_no=_optional_text(node, "refund_id"),
        raw_status=status,
        fee_returned=fee_returned if mapped is RefundStatus.SUCCEEDED else None,
    )


def notification(
    event_type: str, resource: JsonObject, *, appid: str | frozenset[str]
) -> VerifiedNotification:
    """Map a decrypted notification resource to a VerifiedNotification.

    ``app_id`` is the merchant id (``mchid``), the one account id both payment and refund
    notifications carry; a payment for an app under the same merchant that is not one of
    ours (``appid``: the official account's, and the own app's and mini-program's when
    configured) is refused.
    """
    mchid = text_field(resource, "mchid")
    ours = frozenset({appid}) if isinstance(appid, str) else appid
    if event_type == PAYMENT_EVENT:
        if resource.get("appid") not in ours:
            raise ValueError(f"appid {resource.get('appid')!r} is not this channel's")
        payment = payment_state(resource)
        if payment.channel_trade_no is None:
            raise ValueError("a payment notification needs transaction_id")
        return VerifiedNotification(
            kind=NotificationKind.PAYMENT,
            app_id=mchid,
            event=event_type,
            trade_no=payment.channel_trade_no,
            payment=payment,
        )
    if event_type in REFUND_EVENTS:
        refund = refund_state(resource, status_key="refund_status")
        if refund.raw_status != REFUND_EVENTS[event_type]:
            raise ValueError(f"{event_type} carries refund_status {refund.raw_status!r}")
        if refund.channel_refund_no is None:
            raise ValueError("a refund notification needs refund_id")
        return VerifiedNotification(
            kind=NotificationKind.REFUND,
            app_id=mchid,
            event=event_type,
            trade_no=refund.channel_refund_no,
            refund=refund,
        )
    raise ValueError(f"unknown event_type {event_type!r}")


def error_of(body: bytes) -> tuple[str, str] | None:
    """The ``(code, message)`` of a WeChat Pay error answer, or None if it is not one."""
    try:
        node = decode(body)
        return text_field(node, "code"), str(node.get("message", ""))
    except ValueError:
        return None
