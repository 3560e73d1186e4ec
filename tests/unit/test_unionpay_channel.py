"""UnionPay's wire format, signatures, certificate trust, codes and settings, on their own."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from tuition.channels.setup import build_registry, check_channels
from tuition.channels.unionpay import signatures, transformers
from tuition.channels.unionpay.codes import CodeClass, UnknownWireStatus, classify
from tuition.channels.unionpay.config import load_pfx, load_unionpay_config
from tuition.channels.unionpay.gateway_side import sign_message
from tuition.clock import FrozenClock
from tuition.config import ConfigError, load_settings
from tuition.domain.errors import ValidationFailed
from tuition.domain.payments import PaymentStatus, RefundStatus
from tuition.simulator.unionpay_ca import TestCA, expired_window, new_key

NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA.create()


def _verify(ca: TestCA, params: dict[str, str], now: datetime = NOW) -> None:
    signatures.verify(
        params, root=ca.root, middle=ca.middle, expected_cn="中国银联股份有限公司", now=now
    )


def test_the_signature_is_rsa_sha256_over_the_hex_digest_of_the_sorted_fields(
    ca: TestCA,
) -> None:
    params = {"txnAmt": "8880", "merId": "777290058110048", "backUrl": "https://t/n?a=1&b=2"}
    signature = signatures.sign(params, ca.signing_key)
    text = "backUrl=https://t/n?a=1&b=2&merId=777290058110048&txnAmt=8880"
    hexdigest = hashlib.sha256(text.encode()).hexdigest()
    assert hexdigest == hexdigest.lower()
    # Independently: the signed message is the lower-case hex string, not the raw digest.
    ca.signing.public_key().verify(  # type: ignore[union-attr, call-arg]
        base64.b64decode(signature), hexdigest.encode(), padding.PKCS1v15(), hashes.SHA256()
    )


def test_a_message_from_the_configured_chain_verifies(ca: TestCA) -> None:
    _verify(ca, sign_message({"respCode": "00", "orderId": "x"}, ca.signing_key, ca.signing))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"respCode": "01"}, "does not verify"),
        ({"signMethod": "11"}, "is not 01"),
        ({"signature": ""}, "missing signature"),
        ({"signPubKeyCert": ""}, "missing signPubKeyCert"),
        (
            {"signPubKeyCert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"},
            "not a PEM certificate",
        ),
    ],
)
def test_a_changed_message_is_refused(ca: TestCA, change: dict[str, str], reason: str) -> None:
    signed = sign_message({"respCode": "00", "orderId": "x"}, ca.signing_key, ca.signing)
    with pytest.raises(signatures.SignatureRefused, match=reason):
        _verify(ca, {**signed, **change})


def test_certificates_outside_the_chain_or_their_dates_or_the_cn_are_refused(ca: TestCA) -> None:
    fields = {"respCode": "00"}
    other = TestCA.create()
    with pytest.raises(signatures.SignatureRefused, match="middle certificate"):
        _verify(ca, sign_message(fields, other.signing_key, other.signing))
    before, after = expired_window(NOW)
    expired, key = ca.issue_signing(not_before=before, not_after=after)
    with pytest.raises(signatures.SignatureRefused, match="not valid now"):
        _verify(ca, sign_message(fields, key, expired))
    wrong, key = ca.issue_signing(common_name="041@Z1@00040000:SIGN@00000001")
    with pytest.raises(signatures.SignatureRefused, match="CN"):
        _verify(ca, sign_message(fields, key, wrong))
    # UnionPay's test environment names itself 00040000:SIGN; configured so, it passes.
    signatures.verify(
        sign_message(fields, key, wrong),
        root=ca.root,
        middle=ca.middle,
        expected_cn="00040000:SIGN",
        now=NOW,
    )
    # The middle certificate itself, signing, is not UnionPay's signing certificate.
    with pytest.raises(signatures.SignatureRefused):
        _verify(ca, sign_message(fields, ca.middle_key, ca.middle))
    # A genuine certificate, but the whole chain is checked at the message's time.
    with pytest.raises(signatures.SignatureRefused, match="not valid now"):
        _verify(
            ca,
            sign_message(fields, ca.signing_key, ca.signing),
            now=datetime(2050, 1, 1, tzinfo=UTC),
        )


def test_every_documented_code_has_a_class_and_anything_else_is_refused() -> None:
    classes = {f"{n:02d}": classify(f"{n:02d}") for n in range(100)}
    assert classes["00"] is CodeClass.SUCCESS
    assert classify("A6") is CodeClass.SUCCESS
    assert {classes[c] for c in ("03", "04", "05")} == {CodeClass.IN_DOUBT}
    assert {classes[c] for c in ("02", "06")} == {CodeClass.NOT_DONE}
    assert classes["34"] is CodeClass.NOT_FOUND
    assert classes["70"] is CodeClass.WAITING_BUYER
    assert {classes[c] for c in ("01", "11", "12", "30", "35", "61", "98", "99")} == {
        CodeClass.FAILED
    }
    for bad in ("", "0", "000", "A7", "a6", " 0"):
        with pytest.raises(UnknownWireStatus):
            classify(bad)
    assert transformers.payment_status("A6") is PaymentStatus.SUCCEEDED
    assert transformers.payment_status("05") is PaymentStatus.PENDING
    assert transformers.payment_status("70") is PaymentStatus.PENDING
    assert transformers.payment_status("61") is PaymentStatus.FAILED
    assert transformers.refund_status("00") is RefundStatus.SUCCEEDED
    assert transformers.refund_status("04") is RefundStatus.PENDING
    assert transformers.refund_status("35") is RefundStatus.FAILED


def test_answers_are_read_unescaped_with_braced_values() -> None:
    text = "a=1&signPubKeyCert=-----BEGIN+/x==&reqReserved={payment=pay_1&b=2}&c="
    assert transformers.parse_response(text) == {
        "a": "1",
        "signPubKeyCert": "-----BEGIN+/x==",
        "reqReserved": "{payment=pay_1&b=2}",
        "c": "",
    }
    for bad in ("a=1&a=2", "=1", "novalue"):
        with pytest.raises(ValueError, match=r"repeated|not k=v"):
            transformers.parse_response(bad)
    assert transformers.parse_reserved("{payment=pay_1}") == {"payment": "pay_1"}


def test_our_ids_travel_without_their_underscore_and_carry_their_own_time() -> None:
    payment_id = "pay_01JC0000000000000000000000"
    assert transformers.order_id(payment_id) == "pay01JC0000000000000000000000"
    assert transformers.our_id("pay01JC0000000000000000000000") == payment_id
    assert len(transformers.txn_time(payment_id)) == 14
    with pytest.raises(ValidationFailed):
        transformers.order_id("pay-1")
    with pytest.raises(ValueError, match="not one of ours"):
        transformers.our_id("PAY01")


def test_settings_load_the_pfx_and_refuse_a_wrong_password_or_a_foreign_middle(
    ca: TestCA,
) -> None:
    pfx = ca.merchant_pfx("777290058110048", new_key(), password="secret")
    config = load_unionpay_config(
        mer_id="777290058110048",
        signing_pfx=pfx,
        signing_pfx_password="secret",
        root_certificate=ca.pem("root"),
        middle_certificate=ca.pem("middle"),
    )
    assert config.cert_id == str(config.certificate().serial_number)
    assert "secret" not in repr(config)
    assert "PRIVATE" not in repr(config)
    with pytest.raises(ValueError, match=r"unionpay\.signing_pfx: .*password"):
        load_unionpay_config(
            mer_id="777290058110048",
            signing_pfx=pfx,
            signing_pfx_password="wrong",
            root_certificate=ca.pem("root"),
            middle_certificate=ca.pem("middle"),
        )
    other = TestCA.create()
    with pytest.raises(ValueError, match="middle_certificate: is not issued by the root"):
        load_unionpay_config(
            mer_id="777290058110048",
            signing_pfx=pfx,
            signing_pfx_password="secret",
            root_certificate=ca.pem("root"),
            middle_certificate=other.pem("middle"),
        )
    with pytest.raises(ValueError, match="mer_id"):
        load_unionpay_config(
            mer_id="123",
            signing_pfx=pfx,
            signing_pfx_password="secret",
            root_certificate=ca.pem("root"),
            middle_certificate=ca.pem("middle"),
        )


def test_an_expired_window_ends_before_now() -> None:
    start, end = expired_window(NOW)
    assert start < end < NOW
    assert NOW - end == timedelta(days=1)


def test_real_settings_load_from_files_and_name_the_variable_on_a_problem(
    ca: TestCA, tmp_path: Path
) -> None:
    pfx = tmp_path / "acp_sign.pfx"
    pfx.write_bytes(ca.merchant_pfx("777290058110048", new_key(), password="pw"))
    root = tmp_path / "acp_root.cer"
    root.write_bytes(ca.root.public_bytes(serialization.Encoding.DER))  # DER, as shipped
    middle = tmp_path / "acp_middle.cer"
    middle.write_bytes(ca.pem("middle"))
    base = {
        "channels": ["unionpay"],
        "unionpay_mer_id": "777290058110048",
        "unionpay_sign_cert_file": str(pfx),
        "unionpay_sign_cert_password": "pw",
        "unionpay_root_cert_file": str(root),
        "unionpay_middle_cert_file": str(middle),
    }
    registry = build_registry(load_settings(**base), clock=FrozenClock(NOW))
    channel = registry.get("unionpay")
    assert channel.app_id == "777290058110048"
    assert "pw" not in repr(load_settings(**base))

    with pytest.raises(ConfigError, match=r"^TUITION_UNIONPAY_MER_ID: is not set"):
        check_channels(load_settings(**{**base, "unionpay_mer_id": ""}))
    with pytest.raises(ConfigError, match=r"^TUITION_UNIONPAY_SIGN_CERT_FILE: .*password"):
        check_channels(load_settings(**{**base, "unionpay_sign_cert_password": "nope"}))
    with pytest.raises(ConfigError, match=r"^TUITION_UNIONPAY_ROOT_CERT_FILE: cannot read"):
        check_channels(load_settings(**{**base, "unionpay_root_cert_file": str(tmp_path / "x")}))
    with pytest.raises(
        ConfigError, match=r"^TUITION_UNIONPAY_MIDDLE_CERT_FILE: is a self-signed root"
    ):
        check_channels(load_settings(**{**base, "unionpay_middle_cert_file": str(root)}))


def test_the_merchants_own_certificate_from_the_same_ca_is_not_unionpays(ca: TestCA) -> None:
    key = new_key()
    _, certificate = load_pfx(ca.merchant_pfx("777290058110048", key), "000000", setting="pfx")
    with pytest.raises(signatures.SignatureRefused, match="CN does not name UnionPay"):
        _verify(ca, sign_message({"respCode": "00"}, key, certificate))
