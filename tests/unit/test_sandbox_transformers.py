"""The sandbox channel's pure wire <-> domain mapping."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from tuition.channels.base import (
    NextActionType,
    NotificationKind,
    PaymentRequest,
    RefundRequest,
)
from tuition.channels.sandbox import transformers
from tuition.channels.sandbox.transformers import UnknownWireStatus
from tuition.domain.errors import ChannelError
from tuition.domain.payments import PaymentStatus, RefundStatus
from tuition.simulator import PaymentWireStatus, RefundWireStatus

PAYMENT_MAP = {
    "WAIT_PAY": PaymentStatus.PENDING,
    "PAID": PaymentStatus.SUCCEEDED,
    "CLOSED": PaymentStatus.CLOSED,
    "FAILED": PaymentStatus.FAILED,
}
REFUND_MAP = {
    "REFUND_PROCESSING": RefundStatus.PENDING,
    "REFUND_SUCCESS": RefundStatus.SUCCEEDED,
    "REFUND_FAILED": RefundStatus.FAILED,
}


def _json(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def _payment(**overrides: object) -> bytes:
    fields: dict[str, object] = {
        "out_trade_no": "pay_1",
        "trade_no": "SBX1",
        "status": "PAID",
        "amount": 8880,
        "currency": "CNY",
        "paid_at": "2026-11-01T09:00:00Z",
        "pay_url": "http://gw/pay/SBX1",
        "qr_code": "http://gw/pay/SBX1",
    }
    return _json(**{**fields, **overrides})


@pytest.mark.parametrize(("wire", "status"), PAYMENT_MAP.items())
def test_every_payment_wire_status_maps_to_a_payment_status(
    wire: str, status: PaymentStatus
) -> None:
    assert transformers.payment_status(wire) is status


@pytest.mark.parametrize(("wire", "status"), REFUND_MAP.items())
def test_every_refund_wire_status_maps_to_a_refund_status(wire: str, status: RefundStatus) -> None:
    assert transformers.refund_status(wire) is status


def test_the_mapped_statuses_are_exactly_the_published_wire_statuses() -> None:
    assert set(PAYMENT_MAP) == set(transformers.PAYMENT_WIRE_STATUSES)
    assert set(REFUND_MAP) == set(transformers.REFUND_WIRE_STATUSES)


def test_every_status_the_simulator_can_emit_is_understood_by_the_channel() -> None:
    assert {s.value for s in PaymentWireStatus} == set(transformers.PAYMENT_WIRE_STATUSES)
    assert {s.value for s in RefundWireStatus} == set(transformers.REFUND_WIRE_STATUSES)


@pytest.mark.parametrize("wire", ["", "paid", "TRADE_SUCCESS", "REFUND_SUCCESS", "PAID "])
def test_an_unknown_payment_status_raises_instead_of_being_guessed(wire: str) -> None:
    with pytest.raises(UnknownWireStatus) as caught:
        transformers.payment_status(wire)
    assert isinstance(caught.value, ChannelError)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("wire", ["", "PAID", "REFUND_CLOSED", "refund_success"])
def test_an_unknown_refund_status_raises_instead_of_being_guessed(wire: str) -> None:
    with pytest.raises(UnknownWireStatus):
        transformers.refund_status(wire)


def test_a_payment_request_keeps_integer_minor_units_and_utc_times() -> None:
    request = PaymentRequest(
        payment_id="pay_1",
        order_id="ord_1",
        amount=8880,
        currency="CNY",
        subject="Course <1>",
        method="page",
        notify_url="http://tuition/v1/notify/sandbox",
        return_url=None,
        expires_at=datetime(2026, 11, 1, 17, 15, tzinfo=timezone(timedelta(hours=8))),
    )
    body = json.loads(transformers.payment_request_body(request))
    assert body == {
        "out_trade_no": "pay_1",
        "amount": 8880,
        "currency": "CNY",
        "subject": "Course <1>",
        "method": "page",
        "notify_url": "http://tuition/v1/notify/sandbox",
        "return_url": None,
        "expires_at": "2026-11-01T09:15:00Z",
    }


def test_a_naive_expiry_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        transformers.wire_time(datetime(2026, 11, 1, 9, 0))


def test_a_refund_request_names_our_refund_id_as_out_refund_no() -> None:
    request = RefundRequest(
        refund_id="re_1",
        payment_id="pay_1",
        channel_trade_no="SBX1",
        amount=100,
        payment_amount=8880,
        currency="CNY",
        reason="changed mind",
        notify_url="http://tuition/v1/notify/sandbox",
    )
    body = json.loads(transformers.refund_request_body(request))
    assert body["out_refund_no"] == "re_1"
    assert body["amount"] == 100


def test_a_payment_response_maps_to_a_payment_state() -> None:
    state = transformers.payment_state(_payment())
    assert state.payment_id == "pay_1"
    assert state.status is PaymentStatus.SUCCEEDED
    assert state.amount == 8880
    assert state.channel_trade_no == "SBX1"
    assert state.paid_at == datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    assert state.raw_status == "PAID"


@pytest.mark.parametrize("amount", ["8880", 88.8, True, -1, None])
def test_an_amount_that_is_not_a_non_negative_integer_is_malformed(amount: object) -> None:
    with pytest.raises(ValidationError):
        transformers.payment_state(_payment(amount=amount))


def test_a_page_payment_redirects_and_a_qr_payment_shows_a_code() -> None:
    page = transformers.created_payment(_payment(status="WAIT_PAY"), "page")
    assert page.next_action.type is NextActionType.REDIRECT
    assert page.next_action.url == "http://gw/pay/SBX1"
    assert page.channel_trade_no == "SBX1"
    qr = transformers.created_payment(_payment(status="WAIT_PAY"), "qr")
    assert qr.next_action.type is NextActionType.QR_CODE
    assert qr.next_action.qr_payload == "http://gw/pay/SBX1"


def test_a_refund_notification_is_keyed_by_the_gateway_refund_number() -> None:
    body = _json(
        app_id="app",
        event="refund.succeeded",
        out_trade_no="pay_1",
        trade_no="SBX1",
        status="REFUND_SUCCESS",
        amount=300,
        currency="CNY",
        notify_id="N1",
        out_refund_no="re_1",
        refund_no="RSBX1",
    )
    verified = transformers.notification(body)
    assert verified.kind is NotificationKind.REFUND
    assert verified.trade_no == "RSBX1"
    assert verified.refund is not None
    assert verified.refund.status is RefundStatus.SUCCEEDED
    assert verified.refund.amount == 300
    assert verified.payment is None


def test_a_notification_for_an_unknown_event_family_is_malformed() -> None:
    body = _json(
        app_id="app",
        event="dispute.opened",
        out_trade_no="pay_1",
        trade_no="SBX1",
        status="PAID",
        amount=1,
        currency="CNY",
        notify_id="N1",
    )
    with pytest.raises(ValueError, match="unknown sandbox notification event"):
        transformers.notification(body)


def test_a_gateway_refusal_is_read_and_anything_else_is_not() -> None:
    refusal = transformers.error_of(_json(code="TRADE_NOT_EXIST", message="no trade"))
    assert refusal is not None
    assert refusal.code == "TRADE_NOT_EXIST"
    assert transformers.error_of(b"<html>Bad Gateway</html>") is None
