"""The agreement wire mappings: Alipay periodic deduction and WeChat Pay papay (v3)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tuition.channels.alipay import agreements as alipay
from tuition.channels.alipay.gateway_side import sign_notification
from tuition.channels.alipay.transformers import UnknownWireStatus
from tuition.channels.base import AgreementCharge, AgreementSignRequest, NotificationRejected
from tuition.channels.wechatpay import papay
from tuition.domain.agreements import AgreementStatus, transition
from tuition.domain.errors import IllegalTransition, ValidationFailed
from tuition.domain.payments import PaymentStatus


@pytest.fixture(scope="module")
def alipay_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _request(**changes: object) -> AgreementSignRequest:
    values: dict[str, object] = {
        "agreement_id": "agr01J0000000000000000000000",
        "customer_id": "u_1",
        "display_name": "VIP",
        "period": "month",
        "single_amount": 3000,
        "currency": "CNY",
        "first_charge_on": date(2026, 12, 1),
        "notify_url": "https://t.example/v1/notify/alipay/agreements",
        "return_url": None,
    }
    values.update(changes)
    return AgreementSignRequest(**values)  # type: ignore[arg-type]


def test_the_alipay_sign_request_carries_the_period_rules() -> None:
    biz = alipay.sign_biz(_request())
    assert biz["personal_product_code"] == "CYCLE_PAY_AUTH_P"
    assert biz["external_agreement_no"] == "agr01J0000000000000000000000"
    assert biz["period_rule_params"] == {
        "period_type": "MONTH",
        "period": 1,
        "execute_time": "2026-12-01",
        "single_amount": "30.00",
    }
    year = alipay.sign_biz(_request(period="year", first_charge_on=date(2027, 1, 31)))
    rules = year["period_rule_params"]
    assert isinstance(rules, dict)
    # Alipay takes days 1-28 for monthly periods: the 31st is charged from the 28th.
    assert (rules["period"], rules["execute_time"]) == (12, "2027-01-28")


def test_the_alipay_sign_request_refuses_what_alipay_cannot_debit() -> None:
    with pytest.raises(ValidationFailed):
        alipay.sign_biz(_request(currency="USD"))


def test_an_alipay_charge_says_which_agreement_and_reads_the_paid_answer() -> None:
    charge = AgreementCharge("pay_1", "2026120100001", 3000, "CNY", "VIP", "https://t/n")
    biz = alipay.charge_biz(charge)
    assert biz["agreement_params"] == {"agreement_no": "2026120100001"}
    assert biz["product_code"] == "GENERAL_WITHHOLDING"
    assert biz["total_amount"] == "30.00"
    state = alipay.charged_state(
        {"out_trade_no": "pay_1", "trade_no": "T1", "total_amount": "30.00"}, charge
    )
    assert (state.status, state.amount, state.channel_trade_no) == (
        PaymentStatus.SUCCEEDED,
        3000,
        "T1",
    )
    with pytest.raises(ValueError, match="another trade"):
        alipay.charged_state({"out_trade_no": "pay_2", "total_amount": "30.00"}, charge)


def _signed(key: rsa.RSAPrivateKey, **params: str) -> bytes:
    base = {
        "notify_type": "dut_user_sign",
        "status": "NORMAL",
        "app_id": "2021000000000000",
        "agreement_no": "2026120100001",
        "external_agreement_no": "agr01",
        "sign_time": "2026-11-01 17:00:00",
    }
    base.update(params)
    return sign_notification(base, key)


def test_alipay_sign_and_unsign_notifications_map_to_the_agreement(
    alipay_key: rsa.RSAPrivateKey,
) -> None:
    signed = alipay.verify_notification(_signed(alipay_key), alipay_key.public_key())
    assert signed.agreement.status is AgreementStatus.ACTIVE
    assert signed.agreement.signed_at == datetime(2026, 11, 1, 9, tzinfo=UTC)
    assert (signed.app_id, signed.agreement.agreement_no) == ("2021000000000000", "2026120100001")
    unsigned = alipay.verify_notification(
        _signed(
            alipay_key,
            notify_type="dut_user_unsign",
            status="UNSIGN",
            unsign_time="2026-11-20 17:00:00",
        ),
        alipay_key.public_key(),
    )
    assert unsigned.agreement.status is AgreementStatus.ENDED
    assert unsigned.agreement.ended_at == datetime(2026, 11, 20, 9, tzinfo=UTC)


def test_a_tampered_or_mismatched_alipay_agreement_notification_is_rejected(
    alipay_key: rsa.RSAPrivateKey,
) -> None:
    body = _signed(alipay_key).replace(b"agr01", b"agr02")
    with pytest.raises(NotificationRejected, match="signature"):
        alipay.verify_notification(body, alipay_key.public_key())
    # A trade notification is not an agreement notification, even when signed.
    trade = _signed(alipay_key, notify_type="trade_status_sync")
    with pytest.raises(NotificationRejected, match="not an agreement"):
        alipay.verify_notification(trade, alipay_key.public_key())
    with pytest.raises(UnknownWireStatus):
        alipay.agreement_status("PAUSED")


def _contract(**changes: object) -> dict[str, object]:
    node: dict[str, object] = {
        "mchid": "1900000109",
        "appid": "wxd678efh567hg6787",
        "plan_id": 12535,
        "out_contract_code": "agr01",
        "contract_id": "Wx1546",
        "contract_state": "SIGNED",
        "contract_signed_time": "2026-11-01T17:00:00+08:00",
    }
    node.update(changes)
    return node


def test_papay_contract_notifications_map_to_the_agreement() -> None:
    signed = papay.notification(
        "PAPAY.SIGN", _contract(), mchid="1900000109", appid="wxd678efh567hg6787"
    )
    assert signed.app_id == "1900000109"
    assert signed.agreement.status is AgreementStatus.ACTIVE
    assert signed.agreement.agreement_no == "Wx1546"
    ended = papay.notification(
        "PAPAY.TERMINATE",
        _contract(
            contract_state="TERMINATED",
            contract_terminate_info={
                "contract_termination_mode": "USER_TERMINATE",
                "contract_terminated_time": "2026-11-20T17:00:00+08:00",
            },
        ),
        mchid="1900000109",
        appid="wxd678efh567hg6787",
    )
    assert ended.agreement.status is AgreementStatus.ENDED
    assert ended.agreement.ended_at == datetime(2026, 11, 20, 9, tzinfo=UTC)


def test_papay_notifications_that_do_not_add_up_are_refused() -> None:
    with pytest.raises(ValueError, match="another appid"):
        papay.notification("PAPAY.SIGN", _contract(appid="wx_other"), mchid="1", appid="wxd6")
    with pytest.raises(ValueError, match="contract_state"):
        papay.notification(
            "PAPAY.SIGN",
            _contract(contract_state="TERMINATED"),
            mchid="1900000109",
            appid="wxd678efh567hg6787",
        )
    with pytest.raises(ValueError, match="not a contract"):
        papay.notification(
            "TRANSACTION.SUCCESS", _contract(), mchid="1900000109", appid="wxd678efh567hg6787"
        )


def test_a_papay_deduction_is_pending_until_it_is_notified_or_queried() -> None:
    charge = AgreementCharge("pay_1", "Wx1546", 3000, "CNY", "VIP", "https://t/n")
    body = papay.apply_body(charge, appid="wxd678efh567hg6787", notify_url="https://t/n")
    assert body["contract_id"] == "Wx1546"
    assert body["amount"] == {"total": 3000, "currency": "CNY"}
    state = papay.accepted_state({"out_trade_no": "pay_1"}, charge)
    assert state.status is PaymentStatus.PENDING


def test_the_agreement_state_machine_only_moves_forward() -> None:
    assert transition(AgreementStatus.PENDING, AgreementStatus.ACTIVE) is AgreementStatus.ACTIVE
    assert transition(AgreementStatus.ACTIVE, AgreementStatus.ENDED) is AgreementStatus.ENDED
    with pytest.raises(IllegalTransition):
        transition(AgreementStatus.ENDED, AgreementStatus.ACTIVE)
    with pytest.raises(IllegalTransition):
        transition(AgreementStatus.ACTIVE, AgreementStatus.PENDING)
