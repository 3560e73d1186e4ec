"""Pure mapping between Alipay's open-API wire format and Tuition's channel types.

This is the only place where a yuan string such as ``"88.80"`` exists: it becomes 8880
fen through :mod:`tuition.domain.money`. Alipay times are ``yyyy-MM-dd HH:mm:ss`` in
Beijing time (UTC+8, no daylight saving). Wire statuses map to the shared statuses in
one exhaustive ``match`` each; an unknown status raises :class:`UnknownWireStatus`.
Malformed input raises ``ValueError``; the client decides what that means.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from tuition.channels.base import (
    NotificationKind,
    PaymentRequest,
    PaymentState,
    RefundRequest,
    RefundState,
    VerifiedNotification,
)
from tuition.domain.errors import ChannelError, InvalidRequest, ValidationFailed
from tuition.domain.money import format_amount, get_currency, parse_decimal_amount
from tuition.domain.payments import PaymentStatus, RefundStatus

CURRENCY = "CNY"
BEIJING = timezone(timedelta(hours=8), "CST")
TRADE_STATUSES = ("WAIT_BUYER_PAY", "TRADE_SUCCESS", "TRADE_FINISHED", "TRADE_CLOSED")

_CNY = get_currency(CURRENCY)
_WIRE_TIME = "%Y-%m-%d %H:%M:%S"
_JSON_WS = re.compile(r"[ \t\n\r]*")
JsonObject = Mapping[str, object]


class UnknownWireStatus(ChannelError, ValueError):
    """Alipay reported a status this adapter does not understand."""

    default_code = "channel_unknown_status"


def payment_status(trade_status: str) -> PaymentStatus:
    match trade_status:
        case "WAIT_BUYER_PAY":
            return PaymentStatus.PENDING
        case "TRADE_SUCCESS" | "TRADE_FINISHED":
            # TRADE_FINISHED: paid and past the refund window; still the paid path.
            return PaymentStatus.SUCCEEDED
        case "TRADE_CLOSED":
            return PaymentStatus.CLOSED
        case _:
            raise UnknownWireStatus(f"unknown Alipay trade_status {trade_status!r}")


def refund_status(wire: str | None) -> RefundStatus:
    """``refund_status`` of ``alipay.trade.fastpay.refund.query``.

    Alipay names only REFUND_SUCCESS for refunds made by ``alipay.trade.refund``; an
    absent status means "not (yet) done" and may still turn into a success, so it stays
    pending. REFUND_PROCESSING / REFUND_FAIL are what its asynchronous refunds report.
    """
    match wire:
        case "REFUND_SUCCESS":
            return RefundStatus.SUCCEEDED
        case "REFUND_PROCESSING" | None | "":
            return RefundStatus.PENDING
        case "REFUND_FAIL":
            return RefundStatus.FAILED
        case _:
            raise UnknownWireStatus(f"unknown Alipay refund_status {wire!r}")


def fund_change_status(fund_change: str) -> RefundStatus:
    """``fund_change`` of an ``alipay.trade.refund`` answer.

    ``Y``: this call moved the money, the refund succeeded. ``N``: nothing moved now,
    either a repeat of a refund already done or one still processing; only the refund
    query can tell which, so it is pending until asked.
    """
    match fund_change:
        case "Y":
            return RefundStatus.SUCCEEDED
        case "N":
            return RefundStatus.PENDING
        case _:
            raise UnknownWireStatus(f"unknown Alipay fund_change {fund_change!r}")


# -- values ------------------------------------------------------------------------------


def require_cny(currency: str, *, param: str = "currency") -> None:
    if currency != CURRENCY:
        raise ValidationFailed(
            f"Alipay charges in CNY only, not {currency!r}",
            code="currency_unsupported",
            param=param,
        )


def yuan(amount: int) -> str:
    """8880 -> ``"88.80"``."""
    return format_amount(amount, _CNY)


def price_fen(value: object, *, param: str) -> int:
    """A ``Price`` field Alipay may send as a string or a bare JSON number (read as Decimal)."""
    if isinstance(value, Decimal):
        value = format(value, "f")
    return fen(value, param=param)


def fen(text: object, *, param: str) -> int:
    """``"88.80"`` -> 8880; anything but a plain non-negative yuan string raises."""
    if not isinstance(text, str):
        raise ValueError(f"{param} must be a yuan string, got {type(text).__name__}")
    try:
        amount = parse_decimal_amount(text, _CNY, param=param)
    except InvalidRequest as exc:
        raise ValueError(exc.message) from None
    if amount < 0:
        raise ValueError(f"{param} must not be negative")
    return amount


def wire_time(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("Alipay times must be built from timezone-aware datetimes")
    return at.astimezone(BEIJING).strftime(_WIRE_TIME)


def parse_wire_time(text: str) -> datetime:
    # gmt_refund carries milliseconds ("2026-11-02 10:00:01.472"); the others do not.
    layout = f"{_WIRE_TIME}.%f" if "." in text else _WIRE_TIME
    return datetime.strptime(text, layout).replace(tzinfo=BEIJING)


def canonical_string(params: Mapping[str, str]) -> str:
    """The string Alipay signs: ``k=v`` pairs sorted by key, joined by ``&``, unescaped."""
    return "&".join(f"{key}={params[key]}" for key in sorted(params))


def biz_content(fields: JsonObject) -> str:
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def top_level_spans(text: str) -> dict[str, tuple[int, int]]:
    """Where each member value of a top-level JSON object lies in ``text``.

    Response signatures cover the exact bytes of the ``*_response`` value, so it must be
    cut out of the text rather than re-serialised (key order, escapes and spacing would
    differ). Strings containing braces are handled by decoding each value in turn.
    """
    decoder = json.JSONDecoder(parse_float=Decimal)  # never a float, even in passing
    spans: dict[str, tuple[int, int]] = {}
    index = _skip(text, 0)
    if text[index : index + 1] != "{":
        raise ValueError("response is not a JSON object")
    index = _skip(text, index + 1)
    if text[index : index + 1] == "}":
        return spans
    while True:
        key, index = decoder.raw_decode(text, index)
        if not isinstance(key, str) or key in spans:
            raise ValueError("response has a bad or duplicate member name")
        index = _skip(text, index)
        if text[index : index + 1] != ":":
            raise ValueError("response is not a JSON object")
        start = _skip(text, index + 1)
        _value, end = decoder.raw_decode(text, start)
        spans[key] = (start, end)
        index = _skip(text, end)
        if text[index : index + 1] == ",":
            index = _skip(text, index + 1)
            continue
        if text[index : index + 1] == "}" and not text[index + 1 :].strip():
            return spans
        raise ValueError("response is not a single JSON object")


def _skip(text: str, index: int) -> int:
    match = _JSON_WS.match(text, index)
    assert match is not None  # the pattern matches the empty string
    return match.end()


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


def _optional_time(node: JsonObject, key: str) -> datetime | None:
    value = _optional_text(node, key)
    return None if value is None else parse_wire_time(value)


# -- requests ----------------------------------------------------------------------------

PRODUCT_CODES = {
    "page": "FAST_INSTANT_TRADE_PAY",
    "wap": "QUICK_WAP_WAY",
    "app": "QUICK_MSECURITY_PAY",  # App pay: channels/alipay/app_pay.py
}


def payment_biz(request: PaymentRequest) -> dict[str, object]:
    """``biz_content`` for page.pay / wap.pay / app.pay / precreate."""
    fields: dict[str, object] = {
        "out_trade_no": request.payment_id,
        "total_amount": yuan(request.amount),
        "subject": request.subject,
        "time_expire": wire_time(request.expires_at),
    }
    if request.method in PRODUCT_CODES:
        fields["product_code"] = PRODUCT_CODES[request.method]
    return fields


def refund_biz(request: RefundRequest) -> dict[str, object]:
    fields: dict[str, object] = {
        "out_trade_no": request.payment_id,
        "refund_amount": yuan(request.amount),
        # Our refund id makes a retried refund idempotent on Alipay's side.
        "out_request_no": request.refund_id,
    }
    if request.channel_trade_no:
        fields["trade_no"] = request.channel_trade_no
    if request.reason:
        fields["refund_reason"] = request.reason[:256]
    return fields


def refund_query_biz(refund_id: str, payment_id: str) -> dict[str, object]:
    return {
        "out_trade_no": payment_id,
        "out_request_no": refund_id,
        # refund_detail_item_list also brings send_back_fee where the contract allows.
        "query_options": ["gmt_refund_pay"],
    }


def statement_biz(day: date) -> dict[str, object]:
    return {"bill_type": "trade", "bill_date": day.isoformat()}


# -- responses ---------------------------------------------------------------------------


def payment_state(node: JsonObject) -> PaymentState:
    """An ``alipay.trade.query`` response node."""
    status = text_field(node, "trade_status")
    return PaymentState(
        payment_id=text_field(node, "out_trade_no"),
        status=payment_status(status),
        amount=fen(node.get("total_amount"), param="total_amount"),
        currency=CURRENCY,
        channel_trade_no=_optional_text(node, "trade_no"),
        paid_at=_optional_time(node, "send_pay_date"),
        raw_status=status,
    )


def refund_state(node: JsonObject, request: RefundRequest) -> RefundState:
    """An ``alipay.trade.refund`` response node.

    ``fund_change=Y`` means this call moved the money. ``N`` is ambiguous (a repeat of a
    refund already done, or one still processing): the client settles it by a query.
    """
    fund_change = text_field(node, "fund_change")
    status = fund_change_status(fund_change)
    if text_field(node, "out_trade_no") != request.payment_id:
        raise ValueError("refund response is for another out_trade_no")
    return RefundState(
        refund_id=request.refund_id,
        payment_id=request.payment_id,
        status=status,
        amount=request.amount,
        currency=CURRENCY,
        channel_refund_no=_optional_text(node, "trade_no"),
        raw_status=f"fund_change={fund_change}",
        fee_returned=charge_returned(node) if status is RefundStatus.SUCCEEDED else None,
    )


def charge_returned(node: JsonObject) -> int | None:
    """The service fee Alipay says this refund gave back, or None when it does not say.

    ``alipay.trade.refund`` reports it in ``refund_charge_info_list`` (退费信息: one item
    per charge type, ``refund_charge_fee`` = 实退费用, the fee actually refunded at the
    contracted ``switch_fee_rate``); the refund query as ``refund_charge_amount``
    (本次退款针对收款方的退收费金额). Both are returned only for some contracts.
    """
    items = node.get("refund_charge_info_list")
    if items is not None:
        if not isinstance(items, list):
            raise ValueError("refund_charge_info_list must be a list")
        total = 0
        for item in items:
            if not isinstance(item, Mapping):
                raise ValueError("refund_charge_info_list items must be objects")
            total += price_fen(item.get("refund_charge_fee"), param="refund_charge_fee")
        return total
    if node.get("refund_charge_amount") not in (None, ""):
        return price_fen(node.get("refund_charge_amount"), param="refund_charge_amount")
    return None


def queried_refund_state(node: JsonObject, refund_id: str, payment_id: str) -> RefundState | None:
    """An ``alipay.trade.fastpay.refund.query`` node; None when Alipay has no such refund."""
    if _optional_text(node, "out_request_no") is None:
        return None
    if node.get("out_request_no") != refund_id:
        raise ValueError("refund query answered for another out_request_no")
    if _optional_text(node, "out_trade_no") not in (None, payment_id):
        raise ValueError("refund query answered for another out_trade_no")
    raw = _optional_text(node, "refund_status")
    status = refund_status(raw)
    return RefundState(
        refund_id=refund_id,
        payment_id=payment_id,
        status=status,
        amount=fen(node.get("refund_amount"), param="refund_amount"),
        currency=CURRENCY,
        channel_refund_no=_optional_text(node, "trade_no"),
        raw_status=raw or "REFUND_PROCESSING",
        fee_returned=charge_returned(node) if status is RefundStatus.SUCCEEDED else None,
    )


# -- notifications -----------------------------------------------------------------------


def notification(params: Mapping[str, str]) -> VerifiedNotification:
    """Map verified notification parameters to a VerifiedNotification.

    Alipay reports a refund inside the trade notification (``refund_fee``, ``gmt_refund``,
    ``out_biz_no`` = our refund id); its ``trade_status`` is then TRADE_SUCCESS for a
    partial refund or TRADE_CLOSED for a full one, so refunds are recognised first.
    Note ``refund_fee`` is the trade's *total* refunded amount, not this refund's.
    """
    for currency_field in ("currency", "trans_currency"):
        if params.get(currency_field, CURRENCY) != CURRENCY:
            raise ValueError(f"{currency_field} {params[currency_field]!r} is not CNY")
    app_id = text_field(params, "app_id")
    payment_id = text_field(params, "out_trade_no")
    trade_no = text_field(params, "trade_no")
    status = text_field(params, "trade_status")
    refund_id = _optional_text(params, "out_biz_no")
    if refund_id is not None:
        payment_status(status)  # still refuse a status we do not know
        refund = RefundState(
            refund_id=refund_id,
            payment_id=payment_id,
            status=RefundStatus.SUCCEEDED,
            amount=fen(params.get("refund_fee"), param="refund_fee"),
            currency=CURRENCY,
            raw_status=status,
            amount_is_cumulative=True,
        )
        if _optional_time(params, "gmt_refund") is None:
            raise ValueError("a refund notification needs gmt_refund")
        return VerifiedNotification(
            kind=NotificationKind.REFUND,
            app_id=app_id,
            event="REFUND_SUCCESS",
            trade_no=refund_id,
            refund=refund,
        )
    payment = PaymentState(
        payment_id=payment_id,
        status=payment_status(status),
        amount=fen(params.get("total_amount"), param="total_amount"),
        currency=CURRENCY,
        channel_trade_no=trade_no,
        paid_at=_optional_time(params, "gmt_payment"),
        raw_status=status,
    )
    return VerifiedNotification(
        kind=NotificationKind.PAYMENT,
        app_id=app_id,
        event=status,
        trade_no=trade_no,
        payment=payment,
    )
