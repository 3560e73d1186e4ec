"""Our WeChat Pay v3 code against the independent ``wechatpayv3`` SDK.

The SDK runs fully offline: configured with ``public_key`` + ``public_key_id`` it never
downloads platform certificates. It produces ``Authorization`` headers and JSAPI
``paySign`` values we compare byte for byte with ours (same inputs, deterministic
PKCS#1 v1.5), and its ``callback()`` must accept the notifications our gateway-side
helper (used by the simulator) produces. Independently of both, a small helper below
builds a notification straight from the documented format for our verifier.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import wechatpayv3.core  # type: ignore[import-untyped]
import wechatpayv3.utils  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from wechatpayv3 import WeChatPay, WeChatPayType

from tuition.channels.base import (
    NotificationKind,
    NotificationRejected,
    PaymentRequest,
)
from tuition.channels.wechatpay import WechatPayChannel, WechatPayConfig
from tuition.channels.wechatpay.gateway_side import (
    encrypt_resource,
    parse_authorization,
    sign_notification,
    signature_headers,
    verify_authorization,
)
from tuition.channels.wechatpay.notifications import unix_seconds
from tuition.clock import FrozenClock

FIXTURES = Path(__file__).parent.parent / "fixtures" / "wechatpay"
MCHID = "1230000109"
APPID = "wxd678efh567hg6787"
SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
PUB_KEY_ID = "PUB_KEY_ID_0112300001092026110100000000000001"
APIV3_KEY = "0123456789abcdef0123456789ABCDEF"
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
def merchant_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def wechat_key() -> rsa.RSAPrivateKey:
    """Stands in for the WeChat Pay public-key pair (PUB_KEY_ID_…)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def config(merchant_key: rsa.RSAPrivateKey, wechat_key: rsa.RSAPrivateKey) -> WechatPayConfig:
    return WechatPayConfig(
        mchid=MCHID,
        appid=APPID,
        merchant_private_key=private_pem(merchant_key).encode(),
        merchant_serial_no=SERIAL,
        apiv3_key=APIV3_KEY.encode(),
        wechatpay_public_key=public_pem(wechat_key).encode(),
        wechatpay_public_key_id=PUB_KEY_ID,
    )


@pytest.fixture
def channel(config: WechatPayConfig, clock: FrozenClock) -> WechatPayChannel:
    return WechatPayChannel(config, clock=clock)


@pytest.fixture(scope="module")
def sdk(merchant_key: rsa.RSAPrivateKey, wechat_key: rsa.RSAPrivateKey) -> WeChatPay:
    # public_key + public_key_id: the SDK then never fetches /v3/certificates.
    return WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE,
        mchid=MCHID,
        private_key=private_pem(merchant_key),
        cert_serial_no=SERIAL,
        appid=APPID,
        apiv3_key=APIV3_KEY,
        public_key=public_pem(wechat_key),
        public_key_id=PUB_KEY_ID,
    )


def payment_request(method: str, **overrides: Any) -> PaymentRequest:
    fields: dict[str, Any] = {
        "payment_id": PAYMENT_ID,
        "order_id": "ord_01J9Z3K4QW8YV6T2N5B7C0D1EF",
        "amount": 8880,
        "currency": "CNY",
        "subject": "Python 进阶课",
        "method": method,
        "notify_url": "https://pay.example.com/v1/notify/wechatpay",
        "return_url": None,
        "expires_at": NOW + timedelta(minutes=15),
    }
    fields.update(overrides)
    return PaymentRequest(**fields)


def sdk_authorization(
    sdk_key: rsa.RSAPrivateKey,
    request: httpx.Request,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """The SDK's header for the same request, nonce and second as ours."""
    ours = parse_authorization(request.headers["authorization"])
    monkeypatch.setattr(wechatpayv3.utils, "time", SimpleNamespace(time=lambda: ours.timestamp))
    return str(
        wechatpayv3.utils.build_authorization(
            request.url.raw_path.decode(),
            request.method,
            MCHID,
            SERIAL,
            sdk_key,
            data=request.content.decode() or None,
            nonce_str=ours.nonce_str,
        )
    )


async def test_our_authorization_header_equals_the_sdks_for_the_same_request(
    config: WechatPayConfig,
    clock: FrozenClock,
    merchant_key: rsa.RSAPrivateKey,
    wechat_key: rsa.RSAPrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET":
            answer = fixture("query")["responses"]["success"]["json"]
        else:
            answer = fixture("native")["responses"]["success"]["json"]
        body = json.dumps(answer).encode()
        headers = signature_headers(
            body, private_key=wechat_key, serial=PUB_KEY_ID, timestamp=unix_seconds(clock.now())
        )
        return httpx.Response(200, content=body, headers=headers)

    channel = WechatPayChannel(config, transport=httpx.MockTransport(gateway), clock=clock)
    await channel.create_payment(payment_request("native"))
    await channel.query_payment(PAYMENT_ID)

    sdk_key = wechatpayv3.utils.load_private_key(private_pem(merchant_key))
    for request in seen:
        assert request.headers["authorization"] == sdk_authorization(sdk_key, request, monkeypatch)


def test_requests_the_sdk_signs_pass_our_gateway_side_check_and_it_trusts_our_answers(
    sdk: WeChatPay,
    merchant_key: rsa.RSAPrivateKey,
    wechat_key: rsa.RSAPrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer = json.dumps(fixture("query")["responses"]["success"]["json"], ensure_ascii=False)

    def fake_get(url: str, headers: dict[str, str], **_: Any) -> SimpleNamespace:
        target = url.removeprefix("https://api.mch.weixin.qq.com")
        verify_authorization(
            "GET", target, b"", headers["Authorization"], merchant_key.public_key()
        )
        assert headers["Wechatpay-Serial"] == PUB_KEY_ID
        signed = signature_headers(
            answer.encode(),
            private_key=wechat_key,
            serial=PUB_KEY_ID,
            timestamp=unix_seconds(datetime.now(UTC)),
        )
        return SimpleNamespace(
            status_code=200,
            headers={**signed, "Content-Type": "application/json"},
            text=answer,
            content=answer.encode(),
        )

    monkeypatch.setattr(wechatpayv3.core.requests, "get", fake_get)

    code, text = sdk.query(out_trade_no=PAYMENT_ID)

    assert code == 200
    assert json.loads(text)["trade_state"] == "SUCCESS"


async def test_our_jsapi_pay_sign_equals_the_sdks(
    channel: WechatPayChannel, sdk: WeChatPay
) -> None:
    params = channel.jsapi_params("wx201410272009395522657a690389285100")
    expected = sdk.sign(
        [params["appId"], params["timeStamp"], params["nonceStr"], params["package"]]
    )
    assert params["paySign"] == expected


@pytest.mark.parametrize("name", ["transaction_success", "refund_success", "refund_closed"])
def test_the_sdk_callback_accepts_notifications_our_gateway_side_builds(
    sdk: WeChatPay, wechat_key: rsa.RSAPrivateKey, name: str
) -> None:
    data = fixture("notifications")[name]
    headers, body = sign_notification(
        data["event_type"],
        data["resource"],
        apiv3_key=APIV3_KEY.encode(),
        private_key=wechat_key,
        serial=PUB_KEY_ID,
        timestamp=unix_seconds(datetime.now(UTC)),
        notification_id="EV-2026110117032200001",
        create_time="2026-11-01T17:03:22+08:00",
    )

    result = sdk.callback(headers, body)

    assert result is not None
    assert result["event_type"] == data["event_type"]
    assert result["resource"] == data["resource"]


def test_the_sdk_decrypts_resources_our_gateway_side_encrypts() -> None:
    resource = encrypt_resource(
        b'{"a":"\xe4\xbd\xa0"}', APIV3_KEY.encode(), original_type="transaction"
    )
    plain = wechatpayv3.utils.aes_decrypt(
        resource["nonce"], resource["ciphertext"], resource["associated_data"], APIV3_KEY
    )
    assert plain == '{"a":"你"}'


# -- an independent notification builder, written from the v3 documentation --------------


def documented_notification(
    key: rsa.RSAPrivateKey,
    *,
    serial: str = PUB_KEY_ID,
    apiv3_key: str = APIV3_KEY,
    timestamp: int,
) -> tuple[dict[str, str], bytes]:
    """Encrypt the resource (AES-256-GCM, 12-byte nonce, AAD "transaction"), then sign
    ``timestamp\\nnonce\\nbody\\n`` with SHA256withRSA, as the documentation describes."""
    resource = fixture("notifications")["transaction_success"]["resource"]
    nonce = secrets.token_urlsafe(9)[:12]
    sealed = AESGCM(apiv3_key.encode()).encrypt(
        nonce.encode(), json.dumps(resource).encode(), b"transaction"
    )
    body = json.dumps(
        {
            "id": "EV-2018022511223320873",
            "create_time": "2026-11-01T17:03:22+08:00",
            "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS",
            "summary": "支付成功",
            "resource": {
                "original_type": "transaction",
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(sealed).decode(),
                "associated_data": "transaction",
                "nonce": nonce,
            },
        },
        ensure_ascii=False,
        indent=2,
    ).encode()
    header_nonce = secrets.token_hex(16)
    message = f"{timestamp}\n{header_nonce}\n".encode() + body + b"\n"
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    headers = {
        "Wechatpay-Timestamp": str(timestamp),
        "Wechatpay-Nonce": header_nonce,
        "Wechatpay-Signature": base64.b64encode(signature).decode(),
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }
    return headers, body


def test_our_verifier_accepts_a_notification_built_from_the_documentation(
    channel: WechatPayChannel, wechat_key: rsa.RSAPrivateKey
) -> None:
    headers, body = documented_notification(wechat_key, timestamp=unix_seconds(NOW))

    verified = channel.verify_notification(headers, body)

    assert verified.kind is NotificationKind.PAYMENT
    assert verified.payment is not None
    assert (verified.payment.payment_id, verified.payment.amount) == (PAYMENT_ID, 8880)


def test_the_sdk_and_our_verifier_agree_on_a_documented_notification(
    sdk: WeChatPay, channel: WechatPayChannel, wechat_key: rsa.RSAPrivateKey, clock: FrozenClock
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    clock.set(now)
    headers, body = documented_notification(wechat_key, timestamp=unix_seconds(now))
    result = sdk.callback(headers, body)
    verified = channel.verify_notification(headers, body)
    assert result is not None
    assert verified.payment is not None
    assert result["resource"]["out_trade_no"] == verified.payment.payment_id == PAYMENT_ID
    assert result["resource"]["amount"]["total"] == verified.payment.amount


@pytest.mark.parametrize(
    ("variant", "reason"),
    [
        ("wrong-serial", "unknown Wechatpay-Serial"),
        ("bad-signature", "does not verify"),
        ("stale", "stale"),
        ("wrong-apiv3-key", "does not decrypt"),
    ],
)
def test_our_verifier_rejects_a_documented_notification_that_is_off_in_one_way(
    channel: WechatPayChannel, wechat_key: rsa.RSAPrivateKey, variant: str, reason: str
) -> None:
    now = unix_seconds(NOW)
    match variant:
        case "wrong-serial":
            headers, body = documented_notification(
                wechat_key, serial="PUB_KEY_ID_0000", timestamp=now
            )
        case "bad-signature":
            other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            headers, body = documented_notification(other, timestamp=now)
        case "stale":
            headers, body = documented_notification(wechat_key, timestamp=now - 301)
        case _:
            headers, body = documented_notification(
                wechat_key, apiv3_key="fedcba9876543210FEDCBA9876543210", timestamp=now
            )
    with pytest.raises(NotificationRejected, match=reason):
        channel.verify_notification(headers, body)
