"""Alipay transfer wire mapping: the request's biz_content and every status we know."""

from __future__ import annotations

import pytest

from tuition.channels.alipay.transfers import (
    identity_type,
    query_biz,
    transfer_biz,
    transfer_state,
    transfer_status,
)
from tuition.channels.alipay.transformers import UnknownWireStatus
from tuition.channels.base import TransferRequest, TransferStatus
from tuition.domain.errors import ValidationFailed


def _request(**overrides: object) -> TransferRequest:
    fields: dict[str, object] = {
        "payout_id": "po_1",
        "amount": 420000,
        "currency": "CNY",
        "account": "ada@example.com",
        "name": "Ada",
        "title": "payout 2026-11",
    }
    fields.update(overrides)
    return TransferRequest(**fields)  # type: ignore[arg-type]


def test_a_transfer_request_names_our_payout_as_out_biz_no_and_the_amount_in_yuan() -> None:
    assert transfer_biz(_request()) == {
        "out_biz_no": "po_1",
        "trans_amount": "4200.00",
        "product_code": "TRANS_ACCOUNT_NO_PWD",
        "biz_scene": "DIRECT_TRANSFER",
        "order_title": "payout 2026-11",
        "payee_info": {
            "identity": "ada@example.com",
            "identity_type": "ALIPAY_LOGON_ID",
            "name": "Ada",
        },
    }
    assert query_biz("po_1")["out_biz_no"] == "po_1"
    with pytest.raises(ValidationFailed):
        transfer_biz(_request(currency="USD"))


def test_an_alipay_user_id_is_told_from_a_login() -> None:
    assert identity_type("2088612477411337") == "ALIPAY_USER_ID"
    assert identity_type("13800000000") == "ALIPAY_LOGON_ID"


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        ("SUCCESS", TransferStatus.SUCCEEDED),
        ("DEALING", TransferStatus.PROCESSING),
        ("WAIT_PAY", TransferStatus.PROCESSING),
        ("INIT", TransferStatus.PROCESSING),
        ("FAIL", TransferStatus.FAILED),
        ("CLOSED", TransferStatus.FAILED),
        ("REFUND", TransferStatus.RETURNED),
    ],
)
def test_each_alipay_transfer_status_maps_to_one_of_ours(wire: str, status: TransferStatus) -> None:
    assert transfer_status(wire) is status


def test_an_unknown_status_raises_rather_than_guessing() -> None:
    with pytest.raises(UnknownWireStatus):
        transfer_status("MAYBE")


def test_a_failed_transfer_carries_alipays_code_and_reason() -> None:
    state = transfer_state(
        {
            "out_biz_no": "po_1",
            "status": "FAIL",
            "order_id": "2026",
            "error_code": "PAYEE_NOT_EXIST",
            "fail_reason": "no such account",
        },
        "po_1",
    )
    assert (state.status, state.failure_code, state.failure_message) == (
        TransferStatus.FAILED,
        "PAYEE_NOT_EXIST",
        "no such account",
    )
    with pytest.raises(ValueError, match="not po_1"):
        transfer_state({"out_biz_no": "po_2", "status": "SUCCESS"}, "po_1")
