"""Pure mapping between UnionPay's 全渠道 (5.1.0) wire format and Tuition's channel types.

Amounts are ``txnAmt`` in fen (an integer string) with ``currencyCode=156`` (CNY); times
are ``YYYYMMDDhhmmss`` in Beijing time. ``orderId`` may hold only letters and digits
(8-40), so our ids travel without their ``_`` (``pay_01J…`` -> ``pay01J…``) and are read
back by the same rule. A transaction is identified by ``orderId`` *and* ``txnTime``; ours
is the time encoded in the id itself (ids are ULIDs), so a query needs nothing stored.

Synchronous answers are ``k=v&k=v`` *without* URL encoding (values such as
``signPubKeyCert`` contain ``=`` and ``+``; braces group values that contain ``&``); an
asynchronous notification is an ordinary URL-encoded form. Malformed input raises
``ValueError``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone

from tuition.channels.base import (
    NotificationKind,
    PaymentState,
    RefundState,
    VerifiedNotification,
)
from tuition.channels.unionpay.codes import CodeClass, UnknownWireStatus, classify
from tuition.domain.errors import ValidationFailed
from tuition.domain.ids import id_timestamp
from tuition.domain.payments import PaymentStatus, RefundStatus

CURRENCY = "CNY"
CURRENCY_CODE = "156"
VERSION = "5.1.0"
ENCODING = "UTF-8"
SIGN_METHOD = "01"
BEIJING = timezone(timedelta(hours=8), "CST")
# txnType values used here.
CONSUME = "01"
QUERY = "00"
CONSUME_UNDO = "31"
REFUND = "04"
FILE_TRANSFER = "76"
# channelType per method: 07 Internet (PC), 08 mobile (the mobile web and the app).
CHANNEL_TYPES = {"page": "07", "wap": "08", "app": "08"}
B2C_GATEWAY = "000201"

_WIRE_TIME = "%Y%m%d%H%M%S"
_ULID = r"[0-7][0-9A-HJKMNP-TV-Z]{25}"
_OUR_ID = re.compile(rf"([a-z]{{1,8}})_({_ULID})")
_ORDER_ID = re.compile(rf"([a-z]{{1,8}})({_ULID})")
_FEN = re.compile(r"[0-9]{1,12}")


def require_cny(currency: str) -> None:
    if currency != CURRENCY:
        raise ValidationFailed(
            f"UnionPay charges in CNY only here, not {currency!r}",
            code="currency_unsupported",
            param="currency",
        )


def order_id(our_id: str) -> str:
    """``pay_01J…`` -> ``pay01J…`` (UnionPay's orderId allows letters and digits only)."""
    match = _OUR_ID.fullmatch(our_id)
    if match is None:
        raise ValidationFailed(f"id {our_id!r} cannot be a UnionPay orderId", param="id")
    return match.group(1) + match.group(2)


def our_id(wire_order_id: str) -> str:
    match = _ORDER_ID.fullmatch(wire_order_id)
    if match is None:
        raise ValueError(f"orderId {wire_order_id!r} is not one of ours")
    return f"{match.group(1)}_{match.group(2)}"


def txn_time(our_id_value: str) -> str:
    """The ``txnTime`` of the transaction ``our_id_value`` names: the id's own time."""
    order_id(our_id_value)  # a clear refusal for an id that is not one of ours
    return wire_time(id_timestamp(our_id_value))


def wire_time(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("UnionPay times must be built from timezone-aware datetimes")
    return at.astimezone(BEIJING).strftime(_WIRE_TIME)


def parse_wire_time(text: str) -> datetime:
    return datetime.strptime(text, _WIRE_TIME).replace(tzinfo=BEIJING)


def parse_trace_time(text: str, now: datetime) -> datetime:
    """``traceTime`` (MMDDhhmmss, when UnionPay processed it) in the year that puts it at
    or just before ``now``: it is read from an answer or a notification made moments ago."""
    if len(text) != 10 or not text.isdigit():
        raise ValueError(f"traceTime {text!r} is not MMDDhhmmss")
    local = now.astimezone(BEIJING)
    for year in (local.year, local.year - 1):
        try:
            at = datetime.strptime(f"{year}{text}", "%Y%m%d%H%M%S").replace(tzinfo=BEIJING)
        except ValueError:
            continue  # 29 February of a common year
        if at <= local + timedelta(days=1):
            return at
    raise ValueError(f"traceTime {text!r} is not a recent time")


def settle_date(day: date) -> str:
    """``settleDate``: MMDD."""
    return f"{day:%m%d}"


def fen(text: str | None, *, param: str = "txnAmt") -> int:
    if text is None or _FEN.fullmatch(text) is None:
        raise ValueError(f"{param} must be a whole number of fen, got {text!r}")
    return int(text)


def parse_response(text: str) -> dict[str, str]:
    """A synchronous answer: ``k=v&…`` not URL-encoded; ``{…}`` and ``[…]`` group ``&``.

    A repeated or empty field name is malformed.
    """
    params: dict[str, str] = {}
    index, size = 0, len(text)
    while index < size:
        equals = text.find("=", index)
        if equals <= index:
            raise ValueError("answer is not k=v pairs")
        key = text[index:equals]
        depth, cursor = 0, equals + 1
        while cursor < size:
            char = text[cursor]
            if char in "{[":
                depth += 1
            elif char in "}]":
                depth -= 1
            elif char == "&" and depth <= 0:
                break
            cursor += 1
        if key in params or "&" in key:
            raise ValueError(f"field {key!r} repeated or malformed")
        params[key] = text[equals + 1 : cursor]
        index = cursor + 1
    return params


def render_response(params: Mapping[str, str]) -> str:
    """The gateway's way of writing an answer (for the simulator): unescaped pairs."""
    return "&".join(f"{k}={v}" for k, v in params.items())


def text_field(params: Mapping[str, str], key: str) -> str:
    value = params.get(key)
    if not value:
        raise ValueError(f"missing or empty {key!r}")
    return value


def _check_currency(params: Mapping[str, str]) -> None:
    code = params.get("currencyCode", CURRENCY_CODE)
    if code != CURRENCY_CODE:
        raise ValueError(f"currencyCode {code!r} is not 156 (CNY)")


# -- statuses ----------------------------------------------------------------------------


def payment_status(orig_resp_code: str) -> PaymentStatus:
    """``origRespCode`` of a consumption (query) or ``respCode`` of its notification."""
    match classify(orig_resp_code):
        case CodeClass.SUCCESS:
            return PaymentStatus.SUCCEEDED
        case CodeClass.IN_DOUBT | CodeClass.WAITING_BUYER | CodeClass.NOT_DONE:
            return PaymentStatus.PENDING
        case CodeClass.FAILED | CodeClass.NOT_FOUND:
            return PaymentStatus.FAILED


def refund_status(orig_resp_code: str) -> RefundStatus:
    """``origRespCode`` of a refund or consumption undo, or ``respCode`` of its notification."""
    match classify(orig_resp_code):
        case CodeClass.SUCCESS:
            return RefundStatus.SUCCEEDED
        case CodeClass.IN_DOUBT | CodeClass.WAITING_BUYER | CodeClass.NOT_DONE:
            return RefundStatus.PENDING
        case CodeClass.FAILED | CodeClass.NOT_FOUND:
            return RefundStatus.FAILED


# -- requests ----------------------------------------------------------------------------


def common(
    mer_id: str, cert_id: str, txn_type: str, sub_type: str, biz_type: str
) -> dict[str, str]:
    return {
        "version": VERSION,
        "encoding": ENCODING,
        "signMethod": SIGN_METHOD,
        "certId": cert_id,
        "txnType": txn_type,
        "txnSubType": sub_type,
        "bizType": biz_type,
        "accessType": "0",  # a merchant connected directly
        "merId": mer_id,
    }


def consume_fields(
    *,
    payment_id: str,
    amount: int,
    method: str,
    expires_at: datetime,
    back_url: str,
    front_url: str | None,
) -> dict[str, str]:
    fields = {
        "channelType": CHANNEL_TYPES[method],
        "orderId": order_id(payment_id),
        "txnTime": txn_time(payment_id),
        "txnAmt": str(amount),
        "currencyCode": CURRENCY_CODE,
        "backUrl": back_url,
        "payTimeout": wire_time(expires_at),
    }
    if front_url:
        fields["frontUrl"] = front_url
    return fields


def query_fields(our_id_value: str) -> dict[str, str]:
    return {"orderId": order_id(our_id_value), "txnTime": txn_time(our_id_value)}


def refund_fields(
    *, refund_id: str, orig_qry_id: str, amount: int, back_url: str
) -> dict[str, str]:
    return {
        "channelType": CHANNEL_TYPES["page"],
        "orderId": order_id(refund_id),
        "txnTime": txn_time(refund_id),
        "txnAmt": str(amount),
        "currencyCode": CURRENCY_CODE,
        "origQryId": orig_qry_id,
        "backUrl": back_url,
    }


# -- answers -----------------------------------------------------------------------------


def payment_state(params: Mapping[str, str], payment_id: str, now: datetime) -> PaymentState:
    """A successful query (``respCode=00``) of a consumption."""
    _check_currency(params)
    if our_id(text_field(params, "orderId")) != payment_id:
        raise ValueError("the query answered about another orderId")
    raw = text_field(params, "origRespCode")
    status = payment_status(raw)
    paid_at = None
    if status is PaymentStatus.SUCCEEDED:
        paid_at = parse_trace_time(text_field(params, "traceTime"), now)
    return PaymentState(
        payment_id=payment_id,
        status=status,
        amount=fen(params.get("txnAmt")),
        currency=CURRENCY,
        channel_trade_no=params.get("queryId") or None,
        paid_at=paid_at,
        raw_status=f"origRespCode={raw}",
    )


def refund_state(params: Mapping[str, str], refund_id: str, payment_id: str) -> RefundState:
    """A successful query of a refund or undo."""
    _check_currency(params)
    if our_id(text_field(params, "orderId")) != refund_id:
        raise ValueError("the query answered about another orderId")
    if params.get("txnType") not in (REFUND, CONSUME_UNDO):
        raise ValueError(f"txnType {params.get('txnType')!r} is not a refund or an undo")
    raw = text_field(params, "origRespCode")
    return RefundState(
        refund_id=refund_id,
        payment_id=payment_id,
        status=refund_status(raw),
        amount=fen(params.get("txnAmt")),
        currency=CURRENCY,
        channel_refund_no=params.get("queryId") or None,
        raw_status=f"origRespCode={raw}",
    )


def notification(
    params: Mapping[str, str], orig_order_ids: Mapping[str, str], now: datetime
) -> VerifiedNotification:
    """A verified backUrl notification of a consumption, a refund or an undo.

    UnionPay names no payment in a refund's notification, only ``origQryId``; the
    payment id travels in ``reqReserved`` (echoed by UnionPay), given here through
    ``orig_order_ids`` (``reqReserved`` parsed).
    """
    _check_currency(params)
    mer_id = text_field(params, "merId")
    txn_type = text_field(params, "txnType")
    code = text_field(params, "respCode")
    wire_id = our_id(text_field(params, "orderId"))
    query_id = text_field(params, "queryId")
    amount = fen(params.get("txnAmt"))
    if txn_type == CONSUME:
        payment = PaymentState(
            payment_id=wire_id,
            status=payment_status(code),
            amount=amount,
            currency=CURRENCY,
            channel_trade_no=query_id,
            paid_at=parse_trace_time(text_field(params, "traceTime"), now),
            raw_status=f"respCode={code}",
        )
        return VerifiedNotification(
            kind=NotificationKind.PAYMENT,
            app_id=mer_id,
            event=f"consume:{code}",
            trade_no=query_id,
            payment=payment,
        )
    if txn_type in (REFUND, CONSUME_UNDO):
        payment_id = orig_order_ids.get("payment")
        if not payment_id:
            raise ValueError("a refund notification needs its payment in reqReserved")
        refund = RefundState(
            refund_id=wire_id,
            payment_id=payment_id,
            status=refund_status(code),
            amount=amount,
            currency=CURRENCY,
            channel_refund_no=query_id,
            raw_status=f"respCode={code}",
        )
        return VerifiedNotification(
            kind=NotificationKind.REFUND,
            app_id=mer_id,
            event=f"{'undo' if txn_type == CONSUME_UNDO else 'refund'}:{code}",
            trade_no=wire_id,
            refund=refund,
        )
    raise UnknownWireStatus(f"unexpected txnType {txn_type!r} in a notification")


def reserved(payment_id: str) -> str:
    """``reqReserved`` of a refund: UnionPay echoes it in the refund's notification."""
    return f"{{payment={payment_id}}}"


def parse_reserved(value: str | None) -> dict[str, str]:
    if not value:
        return {}
    if not (value.startswith("{") and value.endswith("}")):
        raise ValueError("reqReserved is not ours")
    return parse_response(value[1:-1])
