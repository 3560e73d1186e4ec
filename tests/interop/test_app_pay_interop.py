"""The platform's own apps: Alipay App pay's order string and WeChat Pay's APP and
mini-program client fields, against the official formats, with the independent SDKs
(``python-alipay-sdk``, ``wechatpayv3``) as oracles where they cover them.

PKCS#1 v1.5 signatures are deterministic, so the same parameters signed by the SDK and
by us must give the same string.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from alipay import AliPay  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from wechatpayv3 import WeChatPay, WeChatPayType  # type: ignore[import-untyped]

from tuition.channels.alipay import AlipayChannel, AlipayConfig
from tuition.channels.base import NextActionType, PaymentRequest
from tuition.channels.wechatpay import WechatPayChannel, WechatPayConfig
from tuition.channels.wechatpay.app_pay import app_params, request_payment_params
from tuition.clock import FrozenClock
from tuition.domain.errors import ValidationFailed

NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
PAYMENT_ID = "pay_01J9Z3K4QW8YV6T2N5B7C0D1EF"
ALIPAY_APP_ID = "2021000000000001"
MCHID = "1230000109"
APPID = "wxd678efh567hg6787"
APP_APPID = "wx8888888888888888"
MINI_APPID = "wx9999999999999999"
SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
PUB_KEY_ID = "PUB_KEY_ID_0112300001092026110100000000000001"
PREPAY_ID = "wx201410272009395522657a690389285100"


def _private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def peer_key() -> rsa.RSAPrivateKey:
    """Stands in for the gateway's own key pair."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _request(method: str, **overrides: Any) -> PaymentRequest:
    fields: dict[str, Any] = {
        "payment_id": PAYMENT_ID,
        "order_id": "ord_01J9Z3K4QW8YV6T2N5B7C0D1EF",
        "amount": 8880,
        "currency": "CNY",
        "subject": "Python 进阶课 & 答疑 = 100%",
        "method": method,
        "notify_url": "https://pay.example.com/v1/notify/x?y=1",
        "return_url": "https://shop.example.com/paid",
        "expires_at": NOW + timedelta(minutes=15),
    }
    fields.update(overrides)
    return PaymentRequest(**fields)


# -- Alipay App pay ---------------------------------------------------------------------


async def test_the_alipay_order_string_is_exactly_what_the_sdk_signs(
    key: rsa.RSAPrivateKey, peer_key: rsa.RSAPrivateKey
) -> None:
    calls: list[httpx.Request] = []
    channel = AlipayChannel(
        AlipayConfig(
            app_id=ALIPAY_APP_ID,
            app_private_key=_private_pem(key).encode(),
            alipay_public_key=_public_pem(peer_key).encode(),
        ),
        clock=FrozenClock(NOW),
        transport=httpx.MockTransport(lambda r: calls.append(r) or httpx.Response(500)),
    )
    created = await channel.create_payment(_request("app"))
    assert calls == []  # nothing is sent: the app SDK submits the string to Alipay
    assert created.next_action.type is NextActionType.APP_PARAMS
    ours = created.next_action.params["order_string"]
    params = dict(parse_qsl(ours, keep_blank_values=True))
    assert params["method"] == "alipay.trade.app.pay"
    assert "return_url" not in params  # an app has no page to return to
    biz = json.loads(params["biz_content"])
    assert biz["product_code"] == "QUICK_MSECURITY_PAY"
    assert (biz["out_trade_no"], biz["total_amount"]) == (PAYMENT_ID, "88.80")
    assert ours.rpartition("&")[2].startswith("sign=")  # sign last
    assert "biz_content=%7B%22" in ours  # values URL-encoded
    assert "{" not in ours
    assert " " not in ours

    sdk = AliPay(
        appid=ALIPAY_APP_ID,
        app_private_key_string=_private_pem(key),
        alipay_public_key_string=_public_pem(peer_key),
        sign_type="RSA2",
    )
    unsigned = {k: v for k, v in params.items() if k != "sign"}
    assert sdk.sign_data(unsigned) == ours
    await channel.aclose()


def test_the_sdks_own_app_pay_string_has_our_shape(
    key: rsa.RSAPrivateKey, peer_key: rsa.RSAPrivateKey
) -> None:
    """The SDK's api_alipay_trade_app_pay and our string differ only in what the
    request carries (timestamp, time_expire): the layout is the same."""
    sdk = AliPay(
        appid=ALIPAY_APP_ID,
        app_private_key_string=_private_pem(key),
        alipay_public_key_string=_public_pem(peer_key),
        sign_type="RSA2",
    )
    theirs = sdk.api_alipay_trade_app_pay("课", PAYMENT_ID, "88.80", notify_url="https://n/x")
    keys = [pair.split("=", 1)[0] for pair in theirs.split("&")]
    assert keys[-1] == "sign"
    assert keys[:-1] == sorted(keys[:-1])
    assert "method=alipay.trade.app.pay" in theirs


# -- WeChat Pay APP and mini-program ----------------------------------------------------


@pytest.fixture(scope="module")
def sdk(key: rsa.RSAPrivateKey, peer_key: rsa.RSAPrivateKey) -> WeChatPay:
    return WeChatPay(
        wechatpay_type=WeChatPayType.APP,
        mchid=MCHID,
        private_key=_private_pem(key),
        cert_serial_no=SERIAL,
        appid=APP_APPID,
        apiv3_key="0123456789abcdef0123456789ABCDEF",
        public_key=_public_pem(peer_key),
        public_key_id=PUB_KEY_ID,
    )


def test_the_app_fields_are_signed_as_the_sdk_signs_them(
    key: rsa.RSAPrivateKey, sdk: WeChatPay
) -> None:
    fields = app_params(
        appid=APP_APPID,
        mchid=MCHID,
        prepay_id=PREPAY_ID,
        key=key,
        timestamp="1414561699",
        nonce="5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
    )
    assert set(fields) == {
        "appid",
        "partnerid",
        "prepayid",
        "package",
        "noncestr",
        "timestamp",
        "sign",
    }
    assert (fields["partnerid"], fields["package"]) == (MCHID, "Sign=WXPay")
    assert fields["sign"] == sdk.sign(
        [APP_APPID, "1414561699", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", PREPAY_ID]
    )


def test_the_request_payment_fields_are_signed_as_the_sdk_signs_them(
    key: rsa.RSAPrivateKey, sdk: WeChatPay
) -> None:
    fields = request_payment_params(
        appid=MINI_APPID,
        prepay_id=PREPAY_ID,
        key=key,
        timestamp="1414561699",
        nonce="5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
    )
    assert set(fields) == {"timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert (fields["package"], fields["signType"]) == (f"prepay_id={PREPAY_ID}", "RSA")
    expected = sdk.sign(
        [MINI_APPID, "1414561699", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", f"prepay_id={PREPAY_ID}"]
    )
    assert fields["paySign"] == expected
    key.public_key().verify(
        base64.b64decode(fields["paySign"]),
        f"{MINI_APPID}\n1414561699\n5K8264ILTKCH16CQ2502SI8ZNMTM67VS\nprepay_id={PREPAY_ID}\n".encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )


@pytest.mark.parametrize(
    ("method", "path", "appid"),
    [
        ("app", "/v3/pay/transactions/app", APP_APPID),
        ("miniprogram", "/v3/pay/transactions/jsapi", MINI_APPID),
    ],
)
async def test_the_channel_opens_app_and_mini_program_trades_under_their_own_appid(
    key: rsa.RSAPrivateKey, peer_key: rsa.RSAPrivateKey, method: str, path: str, appid: str
) -> None:
    from tuition.channels.wechatpay.gateway_side import signature_headers

    sent: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        body = json.dumps({"prepay_id": PREPAY_ID}).encode()
        headers = signature_headers(
            body, private_key=peer_key, serial=PUB_KEY_ID, timestamp=int(NOW.timestamp())
        )
        return httpx.Response(200, content=body, headers=headers)

    config = WechatPayConfig(
        mchid=MCHID,
        appid=APPID,
        merchant_private_key=_private_pem(key).encode(),
        merchant_serial_no=SERIAL,
        apiv3_key=b"0123456789abcdef0123456789ABCDEF",
        wechatpay_public_key=_public_pem(peer_key).encode(),
        wechatpay_public_key_id=PUB_KEY_ID,
        app_appid=APP_APPID,
        miniprogram_appid=MINI_APPID,
    )
    channel = WechatPayChannel(
        config, clock=FrozenClock(NOW), transport=httpx.MockTransport(gateway)
    )
    assert {"app", "miniprogram"} <= channel.methods
    if method == "miniprogram":
        with pytest.raises(ValidationFailed) as refused:
            await channel.create_payment(_request(method))
        assert refused.value.code == "payer_id_required"
        assert sent == []
    created = await channel.create_payment(_request(method, payer_id="o_mini_openid"))
    assert sent[-1].url.path == path
    body = json.loads(sent[-1].content)
    assert body["appid"] == appid
    assert ("payer" in body) is (method == "miniprogram")
    params = created.next_action.params
    signed = params.get("sign") or params["paySign"]
    stamp = params.get("timestamp") or params["timeStamp"]
    nonce = params.get("noncestr") or params["nonceStr"]
    last = PREPAY_ID if method == "app" else f"prepay_id={PREPAY_ID}"
    key.public_key().verify(
        base64.b64decode(signed),
        f"{appid}\n{stamp}\n{nonce}\n{last}\n".encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    await channel.aclose()


def test_without_their_appids_the_channel_offers_no_app_methods(
    key: rsa.RSAPrivateKey, peer_key: rsa.RSAPrivateKey
) -> None:
    config = WechatPayConfig(
        mchid=MCHID,
        appid=APPID,
        merchant_private_key=_private_pem(key).encode(),
        merchant_serial_no=SERIAL,
        apiv3_key=b"0123456789abcdef0123456789ABCDEF",
        wechatpay_public_key=_public_pem(peer_key).encode(),
        wechatpay_public_key_id=PUB_KEY_ID,
    )
    assert WechatPayChannel(config).methods == frozenset({"native", "jsapi", "h5"})
