"""Our Alipay code against the independent ``python-alipay-sdk`` (module ``alipay``).

The SDK is an oracle here, never a dependency of the channel: it computes request
signatures from the same parameters (PKCS#1 v1.5 is deterministic, so equal inputs give
equal signatures), signs notifications as the gateway would, and verifies what our
gateway-side helpers (used by the simulator) produce.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import alipay as alipay_sdk  # type: ignore[import-untyped]
import httpx
import pytest
from alipay import AliPay
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tuition.channels.alipay import AlipayChannel, AlipayConfig
from tuition.channels.alipay.gateway_side import sign_notification, sign_response, verify_request
from tuition.channels.base import NotificationKind, NotificationRejected, PaymentRequest
from tuition.clock import FrozenClock
from tuition.domain.payments import PaymentStatus

FIXTURES = Path(__file__).parent.parent / "fixtures" / "alipay"
APP_ID = "2021000000000001"
PAYMENT_ID = "pay_01J9Z3K4QW8YV6T2N5B7C0D1EF"
NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))
    return data


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def alipay_key() -> rsa.RSAPrivateKey:
    """Stands in for Alipay's own key pair."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def channel(app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey) -> AlipayChannel:
    config = AlipayConfig(
        app_id=APP_ID,
        app_private_key=private_pem(app_key).encode(),
        alipay_public_key=public_pem(alipay_key).encode(),
    )
    return AlipayChannel(config, clock=FrozenClock(NOW))


@pytest.fixture(scope="module")
def sdk_merchant(app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey) -> AliPay:
    """The SDK configured as a merchant would be: our app key, Alipay's public key."""
    return AliPay(
        appid=APP_ID,
        app_private_key_string=private_pem(app_key),
        alipay_public_key_string=public_pem(alipay_key),
        sign_type="RSA2",
    )


@pytest.fixture(scope="module")
def sdk_gateway(app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey) -> AliPay:
    """The SDK holding "Alipay's" private key and our app's public key as its peer key."""
    return AliPay(
        appid=APP_ID,
        app_private_key_string=private_pem(alipay_key),
        alipay_public_key_string=public_pem(app_key),
        sign_type="RSA2",
    )


def payment_request(method: str) -> PaymentRequest:
    return PaymentRequest(
        payment_id=PAYMENT_ID,
        order_id="ord_01J9Z3K4QW8YV6T2N5B7C0D1EF",
        amount=8880,
        currency="CNY",
        subject="Python 进阶课 & 答疑 = 100%",
        method=method,
        notify_url="https://pay.example.com/v1/notify/alipay?x=1",
        return_url="https://shop.example.com/paid",
        expires_at=NOW + timedelta(minutes=15),
    )


def sdk_signature(sdk: AliPay, params: dict[str, str]) -> str:
    signed = dict(parse_qsl(sdk.sign_data(dict(params))))
    return str(signed["sign"])


@pytest.mark.parametrize("method", ["page", "wap"])
async def test_our_redirect_signature_equals_the_sdks_for_the_same_parameters(
    channel: AlipayChannel, sdk_merchant: AliPay, method: str
) -> None:
    created = await channel.create_payment(payment_request(method))
    params = dict(parse_qsl(urlsplit(created.next_action.url or "").query))
    ours = params.pop("sign")

    assert sdk_signature(sdk_merchant, params) == ours


async def test_our_gateway_call_signature_equals_the_sdks(
    app_key: rsa.RSAPrivateKey,
    alipay_key: rsa.RSAPrivateKey,
    sdk_merchant: AliPay,
) -> None:
    captured: list[dict[str, str]] = []
    precreate = fixture("trade_precreate")["responses"]["success"]

    def gateway(request: httpx.Request) -> httpx.Response:
        captured.append(dict(parse_qsl(request.content.decode())))
        return httpx.Response(
            200, content=sign_response("alipay.trade.precreate", precreate, alipay_key)
        )

    config = AlipayConfig(
        app_id=APP_ID,
        app_private_key=private_pem(app_key).encode(),
        alipay_public_key=public_pem(alipay_key).encode(),
    )
    channel = AlipayChannel(config, transport=httpx.MockTransport(gateway), clock=FrozenClock(NOW))
    await channel.create_payment(payment_request("qr"))

    params = dict(captured[0])
    ours = params.pop("sign")
    assert sdk_signature(sdk_merchant, params) == ours


def test_requests_the_sdk_builds_pass_our_gateway_side_check(
    sdk_merchant: AliPay, app_key: rsa.RSAPrivateKey
) -> None:
    query = sdk_merchant.api_alipay_trade_page_pay(
        subject="Python 进阶课",
        out_trade_no=PAYMENT_ID,
        total_amount="88.80",
        return_url="https://shop.example.com/paid",
        notify_url="https://pay.example.com/v1/notify/alipay",
    )
    params = dict(parse_qsl(query))
    assert verify_request(params, app_key.public_key())
    assert not verify_request({**params, "method": "alipay.trade.wap.pay"}, app_key.public_key())


def sdk_signed_notification(sdk_gateway: AliPay, params: dict[str, str]) -> dict[str, str]:
    """A notification as Alipay sends it: signed without sign_type, then sign_type added."""
    signed = dict(parse_qsl(sdk_gateway.sign_data(dict(params))))
    return {**signed, "sign_type": "RSA2"}


@pytest.mark.parametrize("name", ["trade_success", "partial_refund"])
def test_notifications_signed_by_the_sdk_are_accepted(
    channel: AlipayChannel, sdk_gateway: AliPay, name: str
) -> None:
    params = sdk_signed_notification(sdk_gateway, fixture("notifications")[name])

    verified = channel.verify_notification({}, urlencode(params).encode())

    assert verified.app_id == APP_ID
    if name == "trade_success":
        assert verified.kind is NotificationKind.PAYMENT
        assert verified.payment is not None
        assert verified.payment.status is PaymentStatus.SUCCEEDED
    else:
        assert verified.kind is NotificationKind.REFUND


NOTIFICATION_FIELDS = sorted(fixture("notifications")["trade_success"])


@pytest.mark.parametrize("name", NOTIFICATION_FIELDS)
def test_an_sdk_signed_notification_with_any_one_field_changed_is_rejected(
    channel: AlipayChannel, sdk_gateway: AliPay, name: str
) -> None:
    params = sdk_signed_notification(sdk_gateway, fixture("notifications")["trade_success"])
    value = params[name]
    params[name] = value[:-1] + ("1" if value[-1:] != "1" else "2")

    with pytest.raises(NotificationRejected, match="signature"):
        channel.verify_notification({}, urlencode(params).encode())


@pytest.mark.parametrize("change", ["drop", "add"])
def test_an_sdk_signed_notification_with_a_field_dropped_or_added_is_rejected(
    channel: AlipayChannel, sdk_gateway: AliPay, change: str
) -> None:
    params = sdk_signed_notification(sdk_gateway, fixture("notifications")["trade_success"])
    if change == "drop":
        del params["gmt_payment"]
    else:
        params["refund_fee"] = "88.80"
    with pytest.raises(NotificationRejected, match="signature"):
        channel.verify_notification({}, urlencode(params).encode())


def test_the_sdk_verifies_notifications_our_gateway_side_signs(
    sdk_merchant: AliPay, alipay_key: rsa.RSAPrivateKey
) -> None:
    body = sign_notification(fixture("notifications")["trade_success"], alipay_key)
    params = dict(parse_qsl(body.decode()))
    signature = params.pop("sign")

    assert sdk_merchant.verify(dict(params), signature)
    assert not sdk_merchant.verify({**params, "total_amount": "0.01"}, signature)


def test_the_sdk_accepts_sync_responses_our_gateway_side_signs(
    sdk_merchant: AliPay,
    app_key: rsa.RSAPrivateKey,
    alipay_key: rsa.RSAPrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer = {**fixture("trade_query")["responses"]["success"], "subject": "进阶 {课}"}
    requested: list[str] = []

    class Reply:
        def read(self) -> bytes:
            return sign_response("alipay.trade.query", answer, alipay_key)

    def fake_urlopen(url: str, timeout: object = None) -> Reply:
        requested.append(url)
        return Reply()

    monkeypatch.setattr(alipay_sdk, "urlopen", fake_urlopen)

    result = sdk_merchant.api_alipay_trade_query(out_trade_no=PAYMENT_ID)

    assert result == answer
    # ...and the SDK's own request passes the check the simulator makes.
    assert verify_request(dict(parse_qsl(urlsplit(requested[0]).query)), app_key.public_key())
