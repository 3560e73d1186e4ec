"""WeChat Pay transfer-bill wire mapping: the request body, every bill state we know,
the finished notification, and the payee's name sealed for WeChat Pay."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tuition.channels.base import NotificationKind, TransferRequest, TransferStatus
from tuition.channels.wechatpay.transfers import (
    STATES,
    TransferScene,
    bill_body,
    bill_state,
    decrypt_sensitive,
    encrypt_sensitive,
    notification,
    transfer_status,
)
from tuition.channels.wechatpay.transformers import UnknownWireStatus
from tuition.domain.errors import ValidationFailed


def _request(**overrides: object) -> TransferRequest:
    fields: dict[str, object] = {
        "payout_id": "po_1",
        "amount": 420000,
        "currency": "CNY",
        "account": "o-openid",
        "name": "Ada",
        "title": "payout 2026-11",
        "notify_url": "https://t.example/v1/notify/wechatpay",
    }
    fields.update(overrides)
    return TransferRequest(**fields)  # type: ignore[arg-type]


def test_a_bill_names_our_payout_as_out_bill_no_in_fen_with_its_scene() -> None:
    body = bill_body(_request(), appid="wx1", scene=TransferScene(), encrypted_name="sealed")
    assert body == {
        "appid": "wx1",
        "out_bill_no": "po_1",
        "transfer_scene_id": "1005",
        "openid": "o-openid",
        "transfer_amount": 420000,
        "transfer_remark": "payout 2026-11",
        "user_recv_perception": "劳务报酬",
        "transfer_scene_report_infos": [
            {"info_type": "岗位类型", "info_content": "知识内容创作者"},
            {"info_type": "报酬说明", "info_content": "内容销售分成"},
        ],
        "user_name": "sealed",
        "notify_url": "https://t.example/v1/notify/wechatpay",
    }


def test_from_2000_yuan_a_bill_needs_the_name_and_below_it_goes_without() -> None:
    with pytest.raises(ValueError, match="2,000 yuan"):
        bill_body(_request(amount=200000), appid="wx1", scene=TransferScene(), encrypted_name=None)
    small = bill_body(
        _request(amount=199999), appid="wx1", scene=TransferScene(), encrypted_name=None
    )
    assert "user_name" not in small


def test_only_cny_is_transferred() -> None:
    with pytest.raises(ValidationFailed):
        bill_body(_request(currency="USD"), appid="wx1", scene=TransferScene(), encrypted_name="x")


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("ACCEPTED", TransferStatus.PROCESSING),
        ("PROCESSING", TransferStatus.PROCESSING),
        ("WAIT_USER_CONFIRM", TransferStatus.PROCESSING),
        ("TRANSFERING", TransferStatus.PROCESSING),
        ("CANCELING", TransferStatus.PROCESSING),
        ("SUCCESS", TransferStatus.SUCCEEDED),
        ("FAIL", TransferStatus.FAILED),
        ("CANCELLED", TransferStatus.FAILED),
    ],
)
def test_every_bill_state_maps(state: str, status: TransferStatus) -> None:
    assert transfer_status(state) is status


def test_the_table_covers_every_documented_state_and_an_unknown_one_raises() -> None:
    for state in STATES:
        transfer_status(state)
    with pytest.raises(UnknownWireStatus):
        transfer_status("REFUNDED")


def test_a_waiting_bill_carries_its_package_and_a_failed_one_its_reason() -> None:
    waiting = bill_state(
        {"out_bill_no": "po_1", "state": "WAIT_USER_CONFIRM", "package_info": "pkg"}, "po_1"
    )
    assert (waiting.status, waiting.confirm_package, waiting.failure_code) == (
        TransferStatus.PROCESSING,
        "pkg",
        None,
    )
    failed = bill_state(
        {"out_bill_no": "po_1", "state": "FAIL", "fail_reason": "REAL_NAME_CHECK_FAIL"}, "po_1"
    )
    assert (failed.status, failed.failure_code) == (TransferStatus.FAILED, "REAL_NAME_CHECK_FAIL")


def test_an_answer_about_another_bill_is_refused() -> None:
    with pytest.raises(ValueError, match="po_2"):
        bill_state({"out_bill_no": "po_2", "state": "SUCCESS"}, "po_1")


def test_the_finished_notification_is_a_transfer_at_its_end() -> None:
    resource = {
        "mchid": "1900000109",
        "out_bill_no": "po_1",
        "transfer_bill_no": "1330000071100999991182020050700019480001",
        "state": "SUCCESS",
        "transfer_amount": 420000,
        "openid": "o-openid",
    }
    got = notification(resource)
    assert (got.kind, got.app_id, got.trade_no, got.transfer_amount) == (
        NotificationKind.TRANSFER,
        "1900000109",
        "1330000071100999991182020050700019480001",
        420000,
    )
    assert got.transfer is not None
    assert got.transfer.status is TransferStatus.SUCCEEDED
    with pytest.raises(ValueError, match="unfinished"):
        notification({**resource, "state": "WAIT_USER_CONFIRM"})
    with pytest.raises(ValueError, match="transfer_amount"):
        notification({**resource, "transfer_amount": "4200.00"})


def test_the_name_is_sealed_with_oaep_for_the_key_holder_only() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sealed = encrypt_sensitive(key.public_key(), "张三")
    assert "张三" not in sealed
    assert decrypt_sensitive(key, sealed) == "张三"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ValueError, match="Decryption failed"):
        decrypt_sensitive(other, sealed)
