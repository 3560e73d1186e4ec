"""Alipay's wire format for the simulator: ``biz_content`` fields in, response nodes and
trade notifications out.

Trades and refunds are the simulator's shared records (:mod:`tuition.simulator.records`);
this module only renders them in Alipay's vocabulary: yuan strings, Beijing times,
``WAIT_BUYER_PAY`` / ``TRADE_SUCCESS`` / ``TRADE_CLOSED``, ``code`` ``10000`` or
``40004`` with a ``sub_code``. A malformed field is refused as ``ACQ.INVALID_PARAMETER``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from urllib.parse import parse_qsl, urlencode

import httpx

from tuition.channels.alipay import gateway_side
from tuition.channels.alipay.transformers import fen, parse_wire_time, wire_time, yuan
from tuition.clock import Clock
from tuition.simulator.notifier import NotificationBody
from tuition.simulator.records import (
    GatewayError,
    PaymentWireStatus,
    RefundWireStatus,
    SimPayment,
    SimRefund,
)
from tuition.simulator.signing import PlatformKey
from tuition.simulator.state import GatewayEvent, GatewayState

JsonNode = dict[str, object]

SUCCESS: JsonNode = {"code": "10000", "msg": "Success"}
BUYER_ID = "2088000000000001"
BUYER_LOGON_ID = "sim***@example.com"
FORM = "application/x-www-form-urlencoded; charset=utf-8"

# The simulator's own refusal codes, as Alipay's trade API names them.
_SUB_CODES = {
    "TRADE_NOT_EXIST": "ACQ.TRADE_NOT_EXIST",
    "OUT_TRADE_NO_USED": "ACQ.CONTEXT_INCONSISTENT",
    "TRADE_ALREADY_PAID": "ACQ.TRADE_STATUS_ERROR",
    "TRADE_STATUS_ERROR": "ACQ.TRADE_STATUS_ERROR",
    "TRADE_NOT_PAID": "ACQ.TRADE_STATUS_ERROR",
    "REFUND_AMOUNT_EXCEEDED": "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
    "OUT_REFUND_NO_USED": "ACQ.CONTEXT_INCONSISTENT",
}


def business_error(sub_code: str, sub_msg: str) -> JsonNode:
    return {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg}


def refusal(exc: GatewayError) -> JsonNode:
    """A state refusal as Alipay words it; codes already in Alipay's form pass through."""
    code = exc.code if exc.code.startswith("ACQ.") else _SUB_CODES.get(exc.code)
    return business_error(code or "ACQ.INVALID_PARAMETER", exc.message)


def gateway_error(code: str, sub_code: str, sub_msg: str) -> JsonNode:
    """A refusal before any business processing (bad signature, unknown app, ...)."""
    msg = "Missing Required Arguments" if code == "40001" else "Invalid Arguments"
    return {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}


def precise_time(at: datetime) -> str:
    """``gmt_refund`` style: Beijing time with milliseconds."""
    return f"{wire_time(at)}.{at.microsecond // 1000:03d}"


def refunded(state: GatewayState, payment: SimPayment) -> int:
    """What has actually gone back to the buyer (Alipay's ``refund_fee``)."""
    return sum(
        r.amount
        for r in state.refunds.values()
        if (r.app_id, r.out_trade_no) == (payment.app_id, payment.out_trade_no)
        and r.status is RefundWireStatus.REFUND_SUCCESS
    )


def trade_status(payment: SimPayment, refunded_amount: int) -> str:
    match payment.status:
        case PaymentWireStatus.WAIT_PAY:
            return "WAIT_BUYER_PAY"
        case PaymentWireStatus.PAID:
            # Alipay closes a trade once all of it has been refunded.
            return "TRADE_CLOSED" if refunded_amount >= payment.amount else "TRADE_SUCCESS"
        case PaymentWireStatus.CLOSED | PaymentWireStatus.FAILED:
            return "TRADE_CLOSED"


def trade_node(payment: SimPayment, refunded_amount: int) -> JsonNode:
    """An ``alipay.trade.query`` answer."""
    node: JsonNode = {
        **SUCCESS,
        "trade_no": payment.trade_no,
        "out_trade_no": payment.out_trade_no,
        "buyer_logon_id": BUYER_LOGON_ID,
        "trade_status": trade_status(payment, refunded_amount),
        "total_amount": yuan(payment.amount),
    }
    if payment.paid_at is not None:
        node.update(
            buyer_pay_amount=yuan(payment.amount),
            receipt_amount=yuan(payment.amount),
            send_pay_date=wire_time(payment.paid_at),
            buyer_user_id=BUYER_ID,
        )
    return node


def refund_node(
    payment: SimPayment,
    refund: SimRefund,
    refund_fee: int,
    *,
    new: bool,
    fee_returned: int | None = None,
    fee_rate: Decimal | None = None,
) -> JsonNode:
    """An ``alipay.trade.refund`` answer; ``fund_change=N`` for a repeat or one in flight.

    ``refund_fee`` is the trade's total refunded so far; ``fee_returned`` (with the rate)
    fills ``refund_charge_info_list`` for a refund that moved money now.
    """
    moved = new and refund.status is RefundWireStatus.REFUND_SUCCESS
    node: JsonNode = {
        **SUCCESS,
        "trade_no": payment.trade_no,
        "out_trade_no": payment.out_trade_no,
        "buyer_logon_id": BUYER_LOGON_ID,
        "fund_change": "Y" if moved else "N",
        "refund_fee": yuan(refund_fee),
    }
    if refund.refunded_at is not None:
        node["gmt_refund_pay"] = wire_time(refund.refunded_at)
    if moved and fee_returned is not None:
        node["refund_charge_info_list"] = [
            {
                "refund_charge_fee": yuan(fee_returned),
                "switch_fee_rate": str(fee_rate),
                "charge_type": "trade",
            }
        ]
    return node


def refund_query_node(
    payment: SimPayment, refund: SimRefund | None, *, fee_returned: int | None = None
) -> JsonNode:
    """An ``alipay.trade.fastpay.refund.query`` answer (no ``out_request_no``: not found).

    A failed refund is answered as not found ("未返回…表示退款请求未收到或者退款失败"):
    the merchant retries it with the same out_request_no.
    """
    node: JsonNode = {**SUCCESS, "trade_no": payment.trade_no, "out_trade_no": payment.out_trade_no}
    if refund is None or refund.status is RefundWireStatus.REFUND_FAILED:
        return node
    node.update(
        out_request_no=refund.out_refund_no,
        total_amount=yuan(payment.amount),
        refund_amount=yuan(refund.amount),
    )
    # Alipay names a refund's status only once it succeeded; absent means in flight.
    if refund.status is RefundWireStatus.REFUND_SUCCESS and refund.refunded_at is not None:
        node.update(refund_status="REFUND_SUCCESS", gmt_refund_pay=wire_time(refund.refunded_at))
        if fee_returned is not None:
            node["refund_charge_amount"] = yuan(fee_returned)
    return node


# -- requests ---------------------------------------------------------------------------


def biz_content(params: Mapping[str, str]) -> dict[str, object]:
    try:
        biz = json.loads(params.get("biz_content") or "{}", parse_float=Decimal)
    except ValueError:
        raise GatewayError("ACQ.INVALID_PARAMETER", "biz_content is not JSON") from None
    if not isinstance(biz, dict):
        raise GatewayError("ACQ.INVALID_PARAMETER", "biz_content is not a JSON object")
    return biz


def text(biz: Mapping[str, object], name: str, *, required: bool = True) -> str:
    value = biz.get(name)
    if value is None or value == "":
        if required:
            raise GatewayError("ACQ.INVALID_PARAMETER", f"{name} is required")
        return ""
    if not isinstance(value, str) or len(value) > 256:
        raise GatewayError("ACQ.INVALID_PARAMETER", f"{name} must be a string")
    return value


def amount(biz: Mapping[str, object], name: str) -> int:
    try:
        fen_amount = fen(biz.get(name), param=name)
    except ValueError as exc:
        raise GatewayError("ACQ.INVALID_PARAMETER", str(exc)) from None
    if fen_amount <= 0:
        raise GatewayError("ACQ.INVALID_PARAMETER", f"{name} must be positive")
    return fen_amount


def expiry(biz: Mapping[str, object]) -> datetime | None:
    value = text(biz, "time_expire", required=False)
    if not value:
        return None
    try:
        return parse_wire_time(value)
    except ValueError:
        raise GatewayError("ACQ.INVALID_PARAMETER", "time_expire is malformed") from None


class AlipayNotifications:
    """Alipay's asynchronous notifications: a form POST signed in the body, ACK ``success``.

    Payment outcomes go out as ``TRADE_SUCCESS`` / ``TRADE_CLOSED``; a settled refund as the
    trade notification carrying ``out_biz_no``, ``refund_fee`` (the trade's total refunded)
    and ``gmt_refund``. A failed refund is not notified: Alipay refuses refunds at once.
    """

    def __init__(self, state: GatewayState, key: PlatformKey, clock: Clock) -> None:
        self._state = state
        self._key = key
        self._clock = clock

    def body(self, event: GatewayEvent, notify_id: str) -> NotificationBody | None:
        if event.name in ("refund.failed", "refund.abnormal") or not event.payment.notify_url:
            return None  # no notify_url given: Alipay does not notify
        params = self.params(event, notify_id)
        signed = gateway_side.sign_notification(params, self._key.private_key)
        return NotificationBody(signed, lambda: _tamper(signed))

    def params(self, event: GatewayEvent, notify_id: str) -> dict[str, str]:
        payment = event.payment
        refund_fee = refunded(self._state, payment)
        params = {
            "notify_time": wire_time(self._clock.now()),
            "notify_type": "trade_status_sync",
            "notify_id": notify_id,
            "app_id": payment.app_id,
            "charset": "utf-8",
            "version": "1.0",
            "trade_no": payment.trade_no,
            "out_trade_no": payment.out_trade_no,
            "buyer_id": BUYER_ID,
            "buyer_logon_id": BUYER_LOGON_ID,
            "trade_status": trade_status(payment, refund_fee),
            "total_amount": yuan(payment.amount),
            "subject": payment.subject,
            "gmt_create": wire_time(payment.created_at),
        }
        if payment.paid_at is not None:
            params.update(
                receipt_amount=yuan(payment.amount),
                buyer_pay_amount=yuan(payment.amount),
                gmt_payment=wire_time(payment.paid_at),
            )
        if payment.closed_at is not None:
            params["gmt_close"] = wire_time(payment.closed_at)
        refund = event.refund
        if refund is not None and refund.refunded_at is not None:
            params.update(
                out_biz_no=refund.out_refund_no,
                refund_fee=yuan(refund_fee),
                gmt_refund=precise_time(refund.refunded_at),
            )
        return params

    def headers(self, body: bytes, timestamp: int) -> dict[str, str]:
        return {"Content-Type": FORM}

    def acknowledged(self, response: httpx.Response) -> bool:
        # Alipay stops re-delivering only when the answer's body is exactly "success".
        return response.status_code == 200 and response.content.strip() == b"success"


def _tamper(signed: bytes) -> bytes:
    params = dict(parse_qsl(signed.decode("ascii"), keep_blank_values=True))
    name = "refund_fee" if "out_biz_no" in params else "total_amount"
    params[name] = yuan(fen(params[name], param=name) + 1)
    return urlencode(params).encode("ascii")
