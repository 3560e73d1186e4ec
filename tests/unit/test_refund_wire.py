"""Refund wire statuses and fees: every channel's one exhaustive mapping, and the fee it reports."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tuition.channels.alipay import transformers as alipay
from tuition.channels.base import RefundFeePolicy, RefundNotFound, RefundRequest
from tuition.channels.sandbox import transformers as sandbox
from tuition.channels.wechatpay import transformers as wechatpay
from tuition.domain.errors import ChannelError
from tuition.domain.payments import RefundStatus

PAYMENT_ID = "pay_01J9Z3K4QW8YV6T2N5B7C0D1EF"
REFUND_ID = "re_01J9Z4M2T1AB3CD4EF5GH6JK7M"


def _request(amount: int = 3000) -> RefundRequest:
    return RefundRequest(
        refund_id=REFUND_ID,
        payment_id=PAYMENT_ID,
        channel_trade_no=None,
        amount=amount,
        payment_amount=8880,
        currency="CNY",
        reason="",
        notify_url="https://pay.example.com/v1/notify/alipay",
    )


def test_the_refund_fee_policy_names_are_the_ones_the_ledger_uses() -> None:
    assert [(p.name, p.value) for p in RefundFeePolicy] == [
        ("PRO_RATA", "pro_rata"),
        ("KEPT", "kept"),
    ]
    assert RefundNotFound("x").code == "refund_not_found"
    assert isinstance(RefundNotFound("x"), ChannelError)


# -- Alipay ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        ("REFUND_SUCCESS", RefundStatus.SUCCEEDED),
        (None, RefundStatus.PENDING),  # absent: not done yet, may still succeed
        ("", RefundStatus.PENDING),
        ("REFUND_PROCESSING", RefundStatus.PENDING),
        ("REFUND_FAIL", RefundStatus.FAILED),
    ],
)
def test_alipay_refund_statuses_map_to_ours(wire: str | None, status: RefundStatus) -> None:
    assert alipay.refund_status(wire) is status


@pytest.mark.parametrize(
    ("fund_change", "status"), [("Y", RefundStatus.SUCCEEDED), ("N", RefundStatus.PENDING)]
)
def test_alipay_fund_change_maps_to_ours(fund_change: str, status: RefundStatus) -> None:
    assert alipay.fund_change_status(fund_change) is status


@pytest.mark.parametrize("wire", ["REFUND_CLOSED", "refund_success", "SUCCESS"])
def test_an_unknown_alipay_refund_status_raises(wire: str) -> None:
    with pytest.raises(alipay.UnknownWireStatus):
        alipay.refund_status(wire)


def test_an_unknown_alipay_fund_change_raises() -> None:
    with pytest.raises(alipay.UnknownWireStatus):
        alipay.fund_change_status("y")


def test_an_alipay_refund_answer_reports_the_fee_returned_in_fen() -> None:
    node = {
        "code": "10000",
        "out_trade_no": PAYMENT_ID,
        "trade_no": "2026110122001419121412730660",
        "fund_change": "Y",
        "refund_fee": "30.00",
        # Alipay's own example sends refund_charge_fee as a bare number.
        "refund_charge_info_list": [
            {"refund_charge_fee": "0.18", "switch_fee_rate": "0.006", "charge_type": "trade"},
            {
                "refund_charge_fee": Decimal("0.02"),
                "switch_fee_rate": "0.01",
                "charge_type": "hbfq",
            },
        ],
    }
    state = alipay.refund_state(node, _request())
    assert (state.status, state.fee_returned, state.channel_refund_no) == (
        RefundStatus.SUCCEEDED,
        20,
        "2026110122001419121412730660",
    )


def test_an_alipay_refund_answer_without_charge_info_leaves_the_fee_unset() -> None:
    node = {"out_trade_no": PAYMENT_ID, "fund_change": "Y", "refund_fee": "30.00"}
    assert alipay.refund_state(node, _request()).fee_returned is None


def test_an_alipay_refund_query_reports_refund_charge_amount_once_succeeded() -> None:
    node = {
        "out_trade_no": PAYMENT_ID,
        "out_request_no": REFUND_ID,
        "refund_amount": "30.00",
        "refund_status": "REFUND_SUCCESS",
        "refund_charge_amount": "0.18",
    }
    state = alipay.queried_refund_state(node, REFUND_ID, PAYMENT_ID)
    assert state is not None
    assert (state.status, state.amount, state.fee_returned) == (RefundStatus.SUCCEEDED, 3000, 18)
    pending = alipay.queried_refund_state({**node, "refund_status": None}, REFUND_ID, PAYMENT_ID)
    assert pending is not None
    assert (pending.status, pending.fee_returned, pending.raw_status) == (
        RefundStatus.PENDING,
        None,
        "REFUND_PROCESSING",
    )


def test_an_alipay_refund_query_about_another_trade_is_unreadable() -> None:
    node = {"out_trade_no": "pay_other", "out_request_no": REFUND_ID, "refund_amount": "30.00"}
    with pytest.raises(ValueError, match="another out_trade_no"):
        alipay.queried_refund_state(node, REFUND_ID, PAYMENT_ID)


def test_a_malformed_alipay_refund_charge_is_unreadable() -> None:
    with pytest.raises(ValueError, match="must be a list"):
        alipay.charge_returned({"refund_charge_info_list": {"refund_charge_fee": "0.18"}})
    with pytest.raises(ValueError, match="refund_charge_amount"):
        alipay.charge_returned({"refund_charge_amount": "-0.18"})


# -- WeChat Pay --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        ("SUCCESS", RefundStatus.SUCCEEDED),
        ("PROCESSING", RefundStatus.PENDING),
        # The money is out, waiting in WeChat's transit account: never "failed".
        ("ABNORMAL", RefundStatus.PENDING),
        ("CLOSED", RefundStatus.FAILED),
    ],
)
def test_wechat_refund_statuses_map_to_ours(wire: str, status: RefundStatus) -> None:
    assert wechatpay.refund_status(wire) is status


def test_every_wechat_refund_status_is_mapped() -> None:
    for wire in wechatpay.REFUND_STATUSES:
        wechatpay.refund_status(wire)


@pytest.mark.parametrize("wire", ["REFUNDCLOSE", "success", "FAILED"])
def test_an_unknown_wechat_refund_status_raises(wire: str) -> None:
    with pytest.raises(wechatpay.UnknownWireStatus):
        wechatpay.refund_status(wire)


def _wechat_refund(status: str, **amount: int) -> dict[str, object]:
    return {
        "refund_id": "50000000382019052709732678859",
        "out_refund_no": REFUND_ID,
        "out_trade_no": PAYMENT_ID,
        "status": status,
        "amount": {"total": 8880, "refund": 3000, "currency": "CNY", **amount},
    }


def test_a_wechat_refund_reports_amount_refund_fee_as_the_fee_returned() -> None:
    state = wechatpay.refund_state(_wechat_refund("SUCCESS", refund_fee=18))
    assert (state.status, state.fee_returned, state.raw_status) == (
        RefundStatus.SUCCEEDED,
        18,
        "SUCCESS",
    )
    assert wechatpay.refund_state(_wechat_refund("SUCCESS")).fee_returned is None
    # Only a refund that succeeded has given a fee back.
    assert wechatpay.refund_state(_wechat_refund("PROCESSING", refund_fee=18)).fee_returned is None


def test_an_abnormal_wechat_refund_keeps_its_raw_status_for_the_operator() -> None:
    state = wechatpay.refund_state(_wechat_refund("ABNORMAL"))
    assert (state.status, state.raw_status) == (RefundStatus.PENDING, "ABNORMAL")


def test_a_wechat_refund_fee_that_is_not_integer_fen_is_unreadable() -> None:
    with pytest.raises(ValueError, match="refund_fee"):
        wechatpay.refund_state(_wechat_refund("SUCCESS", refund_fee=-1))


@pytest.mark.parametrize(
    ("event", "status"),
    [("REFUND.SUCCESS", "SUCCESS"), ("REFUND.ABNORMAL", "ABNORMAL"), ("REFUND.CLOSED", "CLOSED")],
)
def test_a_wechat_refund_event_must_carry_its_own_status(event: str, status: str) -> None:
    resource = {**_wechat_refund(status), "mchid": "1900000109", "refund_status": status}
    notified = wechatpay.notification(event, resource, appid="wxd678efh567hg6787")
    assert notified.refund is not None
    assert (notified.event, notified.refund.raw_status) == (event, status)
    other = "CLOSED" if status != "CLOSED" else "SUCCESS"
    with pytest.raises(ValueError, match="carries refund_status"):
        wechatpay.notification(
            event, {**resource, "refund_status": other}, appid="wxd678efh567hg6787"
        )


# -- sandbox -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        ("REFUND_PROCESSING", RefundStatus.PENDING),
        ("REFUND_SUCCESS", RefundStatus.SUCCEEDED),
        ("REFUND_FAILED", RefundStatus.FAILED),
    ],
)
def test_sandbox_refund_statuses_map_to_ours(wire: str, status: RefundStatus) -> None:
    assert sandbox.refund_status(wire) is status


def test_an_unknown_sandbox_refund_status_raises() -> None:
    with pytest.raises(sandbox.UnknownWireStatus):
        sandbox.refund_status("REFUND_ABNORMAL")
