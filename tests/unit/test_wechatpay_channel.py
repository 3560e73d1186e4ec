"""The WeChat Pay v3 channel against a fake gateway (httpx.MockTransport).

The fake checks every request's ``Authorization`` signature with the merchant's public
key and answers with fixtures from ``tests/fixtures/wechatpay``, signed at test time by a
WeChat Pay key generated for the session; no private key is committed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tuition.channels.base import (
    ChannelTimeout,
    CloseOutcome,
    NextActionType,
    NotificationKind,
    NotificationRejected,
    PaymentRequest,
    RefundRequest,
)
from tuition.channels.wechatpay import (
    WechatPayChannel,
    WechatPayConfig,
    WechatPayRefused,
    load_wechatpay_config,
)
from tuition.channels.wechatpay.gateway_side import (
    sign_notification,
    signature_headers,
    verify_authorization,
)
from tuition.channels.wechatpay.notifications import unix_seconds
from tuition.channels.wechatpay.transformers import UnknownWireStatus
from tuition.clock import FrozenClock
from tuition.domain.errors import ChannelError, ValidationFailed
from tuition.domain.payments import PaymentStatus, RefundStatus

FIXTURES = Path(__file__).parent.parent / "fixtures" / "wechatpay"
MCHID = "1230000109"
APPID = "wxd678efh567hg6787"
SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
PUB_KEY_ID = "PUB_KEY_ID_0112300001092026110100000000000001"
APIV3_KEY = b"0123456789abcdef0123456789ABCDEF"
PAYMENT_ID = "pay_01J9Z3K4QW8YV6T2N5B7C0D1EF"
REFUND_ID = "re_01J9Z4M2T1AB3CD4EF5GH6JK7M"
NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))
    return data


def pem(key: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def certificate(key: rsa.RSAPrivateKey, serial: int) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def merchant_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def wechat_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def config(merchant_key: rsa.RSAPrivateKey, wechat_key: rsa.RSAPrivateKey) -> WechatPayConfig:
    return WechatPayConfig(
        mchid=MCHID,
        appid=APPID,
        merchant_private_key=pem(merchant_key, serialization.PrivateFormat.PKCS8),
        merchant_serial_no=SERIAL,
        apiv3_key=APIV3_KEY,
        wechatpay_public_key=public_pem(wechat_key),
        wechatpay_public_key_id=PUB_KEY_ID,
    )


Reply = Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeWechatPay:
    """Plays api.mch.weixin.qq.com: checks Authorization, answers signed queued replies."""

    merchant_key: rsa.RSAPrivateKey
    key: rsa.RSAPrivateKey
    clock: FrozenClock
    replies: list[Reply] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        auth = verify_authorization(
            request.method,
            request.url.raw_path.decode(),
            request.content,
            request.headers["authorization"],
            self.merchant_key.public_key(),
        )
        assert (auth.mchid, auth.serial_no) == (MCHID, SERIAL)
        assert auth.timestamp == unix_seconds(self.clock.now())
        assert request.headers["accept"] == "application/json"
        assert request.headers["user-agent"]
        self.requests.append(request)
        return self.replies.pop(0)(request)

    def signed(
        self, status: int, payload: Any = None, *, serial: str = PUB_KEY_ID, key: Any = None
    ) -> httpx.Response:
        body = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        headers = signature_headers(
            body,
            private_key=key or self.key,
            serial=serial,
            timestamp=unix_seconds(self.clock.now()),
        )
        if body:
            headers["Content-Type"] = "application/json; charset=utf-8"
        return httpx.Response(status, content=body, headers=headers)

    def answer(self, status: int, payload: Any = None, **kwargs: Any) -> None:
        self.replies.append(lambda _request: self.signed(status, payload, **kwargs))

    def answer_fixture(self, name: str, case: str) -> dict[str, Any]:
        data = fixture(name)
        response = data["responses"][case]
        self.answer(response["status"], response.get("json"))
        return data

    def answer_raw(self, response: httpx.Response | Exception) -> None:
        def reply(_request: httpx.Request) -> httpx.Response:
            if isinstance(response, Exception):
                raise response
            return response

        self.replies.append(reply)

    def check(self, expected: dict[str, Any], index: int = -1) -> None:
        request = self.requests[index]
        assert request.method == expected["method"]
        assert request.url.raw_path.decode() == expected["path"]
        if "json" in expected:
            assert request.headers["content-type"] == "application/json"
            assert request.headers["wechatpay-serial"] == PUB_KEY_ID
            assert json.loads(request.content) == expected["json"]
        else:
            assert request.content == b""


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def gateway(
    merchant_key: rsa.RSAPrivateKey, wechat_key: rsa.RSAPrivateKey, clock: FrozenClock
) -> FakeWechatPay:
    return FakeWechatPay(merchant_key, wechat_key, clock)


@pytest.fixture
async def channel(
    config: WechatPayConfig, gateway: FakeWechatPay, clock: FrozenClock
) -> AsyncIterator[WechatPayChannel]:
    channel = WechatPayChannel(config, transport=httpx.MockTransport(gateway.handle), clock=clock)
    yield channel
    await channel.aclose()


def payment_request(method: str = "native", **overrides: Any) -> PaymentRequest:
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


def refund_request(**overrides: Any) -> RefundRequest:
    fields: dict[str, Any] = {
        "refund_id": REFUND_ID,
        "payment_id": PAYMENT_ID,
        "channel_trade_no": "4200002345202611013456789012",
        "amount": 3000,
        "payment_amount": 8880,
        "currency": "CNY",
        "reason": "课程未开课",
        "notify_url": "https://pay.example.com/v1/notify/wechatpay",
    }
    fields.update(overrides)
    return RefundRequest(**fields)


# -- creating payments ---------------------------------------------------------------------


async def test_a_native_payment_shows_the_code_url_as_a_qr_code(
    channel: WechatPayChannel, gateway: FakeWechatPay
) -> None:
    data = gateway.answer_fixture("native", "success")

    created = await channel.create_payment(payment_request("native"))

    gateway.check(data["request"])
    assert created.next_action.type is NextActionType.QR_CODE
    assert created.next_action.qr_payload == "weixin://wxpay/bizpayurl?pr=p4lpSuKzz"


async def test_a_jsapi_payment_hands_signed_parameters_to_the_page(
    channel: WechatPayChannel, gateway: FakeWechatPay, merchant_key: rsa.RSAPrivateKey
) -> None:
    data = gateway.answer_fixture("jsapi", "success")

    created = await channel.create_payment(
        payment_request("jsapi", payer_id="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o")
    )

    gateway.check(data["request"])
    params = created.next_action.params
    assert created.next_action.type is NextActionType.APP_PARAMS
    assert params["appId"] == APPID
    assert params["package"] == "prepay_id=wx201410272009395522657a690389285100"
    assert params["signType"] == "RSA"
    assert params["timeStamp"] == str(unix_seconds(NOW))
    message = f"{APPID}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
    merchant_key.public_key().verify(
        base64.b64decode(params["paySign"]),
        message.encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )


async def test_an_h5_payment_redirects_to_h5_url_with_our_return_url(
    channel: WechatPayChannel, gateway: FakeWechatPay
) -> None:
    data = gateway.answer_fixture("h5", "success")

    created = await channel.create_payment(
        payment_request("h5", client_ip="203.0.113.7", return_url="https://shop.example.com/paid")
    )

    gateway.check(data["request"])
    assert created.next_action.type is NextActionType.REDIRECT
    assert created.next_action.url == (
        data["responses"]["success"]["json"]["h5_url"]
        + "&redirect_url=https%3A%2F%2Fshop.example.com%2Fpaid"
    )


@pytest.mark.parametrize(("method", "missing"), [("jsapi", "payer_id"), ("h5", "client_ip")])
async def test_a_payment_missing_what_its_method_needs_is_refused_naming_the_field(
    channel: WechatPayChannel, gateway: FakeWechatPay, method: str, missing: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await channel.create_payment(payment_request(method))
    assert caught.value.param == missing
    assert gateway.requests == []


async def test_a_currency_other_than_cny_is_refused_before_any_call(
    channel: WechatPayChannel, gateway: FakeWechatPay
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await channel.create_payment(payment_request(currency="USD"))
    assert caught.value.param == "currency"
    assert gateway.requests == []


async def test_an_unknown_method_is_refused(channel: WechatPayChannel) -> None:
    with pytest.raises(ValidationFailed):
        await channel.create_payment(payment_request("app"))


@pytest.mark.parametrize(
    ("case", "code"), [("param_error", "PARAM_ERROR"), ("sign_error", "SIGN_ERROR")]
)
async def test_a_4xx_answer_is_a_refusal_with_wechat_pays_code(
    channel: WechatPayChannel, gateway: FakeWechatPay, case: str, code: str
) -> None:
    gateway.answer_fixture("native", case)
    with pytest.raises(WechatPayRefused) as caught:
        await channel.create_payment(payment_request())
    assert caught.value.code == code
    assert caught.value.verified
    assert not isinstance(caught.value, ChannelTimeout)


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectError("connection refused"),
        httpx.Response(500, json={"code": "SYSTEM_ERROR", "message": "系统错误"}),
        httpx.Response(502, text="Bad Gateway"),
    ],
    ids=["timeout", "refused", "500", "502"],
)
async def test_timeouts_connection_errors_and_5xx_are_channel_timeouts(
    channel: WechatPayChannel, gateway: FakeWechatPay, failure: httpx.Response | Exception
) -> None:
    gateway.answer_raw(failure)
    with pytest.raises(ChannelTimeout):
        await channel.create_payment(payment_request())


# -- response signatures -------------------------------------------------------------------


async def test_an_unsigned_success_is_not_trusted(
    channel: WechatPayChannel, gateway: FakeWechatPay
) -> None:
    gateway.answer_raw(httpx.Response(200, json={"code_url": "weixin://wxpay/bizpayurl?pr=x"}))
    with pytest.raises(ChannelTimeout) as caught:
        await channel.create_payment(payment_request())
    assert caught.value.code == "wechatpay_response_unverified"


async def test_a_response_signed_by_another_key_is_not_trusted(
    channel: WechatPayChannel, gateway: FakeWechatPay
) -> None:
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    gateway.answer(200, {"code_url": "weixin://x"}, key=impostor)
    with pytest.raises(ChannelTimeout, match="does not verify"):
        await channel.create_payment(payment_request())


async def test_a_response_naming_an_unknown_serial_is_not_trusted(
    channel: WechatPayChannel, gateway: FakeWechatPay
) -> None:
    gateway.answer(
        200, {"code_url": "weixin://x"}, serial="PUB_KEY_ID_0000000000000000000000000000000"
    )
    with pytest.raises(ChannelTimeout, match="unknown Wechatpay-Serial"):
        await channel.create_payment(payment_request())


async def test_a_stale_response_timestamp_is_not_trusted(
    channel: WechatPayChannel, gateway: FakeWechatPay, clock: FrozenClock
) -> None:
    stale = gateway.signed(200, {"code_url": "weixin://x"})
    clock.advance(timedelta(minutes=5, seconds=1))
    gateway.clock = FrozenClock(clock.now())
    gateway.answer_raw(stale)
    with pytest.raises(ChannelTimeout, match="stale"):
        await channel.create_payment(payment_request())


async def test_a_platform_certificate_serial_verifies_during_the_migration(
    merchant_key: rsa.RSAPrivateKey, gateway: FakeWechatPay, clock: FrozenClock
) -> None:
    platform_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    serial = 0x3775B6A45ACD588826D15E583A95F5DD
    config = WechatPayConfig(
        mchid=MCHID,
        appid=APPID,
        merchant_private_key=pem(merchant_key, serialization.PrivateFormat.TraditionalOpenSSL),
        merchant_serial_no=SERIAL.lower(),
        apiv3_key=APIV3_KEY.decode(),  # type: ignore[arg-type]
        platform_certificates={f"{serial:x}": certificate(platform_key, serial)},
    )
    channel = WechatPayChannel(config, transport=httpx.MockTransport(gateway.handle), clock=clock)
    gateway.answer(
        200, {"code_url": "weixin://wxpay/bizpayurl?pr=1"}, serial=f"{serial:X}", key=platform_key
    )

    created = await channel.create_payment(payment_request())

    assert created.next_action.qr_payload == "weixin://wxpay/bizpayurl?pr=1"
    assert "wechatpay-serial" not in gateway.requests[0].headers  # no public key id to name


# -- querying and closing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trade_state", "status"),
    [
        ("SUCCESS", PaymentStatus.SUCCEEDED),
        ("REFUND", PaymentStatus.SUCCEEDED),
        ("NOTPAY", PaymentStatus.PENDING),
        ("USERPAYING", PaymentStatus.PENDING),
        ("CLOSED", PaymentStatus.CLOSED),
        ("REVOKED", PaymentStatus.CLOSED),
        ("PAYERROR", PaymentStatus.FAILED),
    ],
)
async def test_a_query_maps_every_trade_state(
    channel: WechatPayChannel, gateway: FakeWechatPay, trade_state: str, status: PaymentStatus
) -> None:
    data = fixture("query")
    gateway.answer(200, {**data["responses"]["success"]["json"], "trade_state": trade_state})

    state = await channel.query_payment(PAYMENT_ID)

    gateway.check(data["request"])
    assert (state.payment_id, state.status, state.raw_status) == (PAYMENT_ID, status, trade_state)
    assert (state.amount, state.currency) == (8880, "CNY")


async def test_a_paid_query_carries_the_transaction_id_and_paid_time(
    channel: WechatPayChannel, gateway: FakeWechatPay
) -> None:
    gateway.answer_fixture("query", "success")
    state = await channel.query_payment(PAYMENT_ID)
    assert state.channel_trade_no == "4200002345202611013456789012"
    assert state.paid_at == datetime(2026, 11, 1, 9, 3, 21, tzinfo=UTC)


async def test_an_unknown_trade_state_raises_instead_of_being_guessed(
    channel: WechatPayChannel, gateway: FakeWechatPay
) -> None:
    gateway.answer(
        200, {**fixture("query")["responses"]["success"]["json"], "trade_state": "ACCEPT"}
    )
    with pytest.raises(UnknownWireStatus):
        await channel.query_payment(PAYMENT_ID)


async def test_a_query_answer_in_another_currency_is_not_trusted(
    channel: WechatPayChannel, gateway: FakeWechatPay
) -> None:
    answer = fixture("query")["responses"]["success"]["json"]
    gateway.answer(200, {**answer, "amount": {"total": 8880, "currency": "USD"}})
    with pytest.raises(ChannelTimeout, match="not CNY"):
        await channel.query_payment(PAYMENT_ID)


@pytest.mark.parametrize("total", [88.8, "8880", True, -1])
async def test_an_amount_that_is_not_whole_fen_is_not_trusted(
    channel: WechatPayChannel, gateway: FakeWechatPay, total: object
) -> None:
    answer = fixture("query")["responses"]["success"]["json"]
    gateway.answer(200, {**answer, "amount": {"total": total, "currency": "CNY"}})
    with pytest.raises(ChannelTimeout, match="integer of fen"):
        await channel.query_payment(PAYMENT_ID)


async def test_querying_an_order_wechat_pay_never_saw_is_a_verified_refusal(
    channel: WechatPayChannel, gateway: FakeWechatPay
) -> None:
    gateway.answer_fixture("query", "not_exist")
    with pytest.raises(WechatPayRefused) as caught:
        await channel.query_payment(PAYMENT_ID)
    assert (caught.value.code, caught.value.status_code, caught.value.verified) == (
        "ORDER_NOT_EXIST",
        404,
        True,
    )


async def test_closing_an_unpaid_order_answers_204_and_closes_it(
    channel: WechatPayChannel, gateway: FakeWechatPay
) -> None:
    data = gateway.answer_fixture("close", "success")
    assert await channel.close_payment(PAYMENT_ID) is CloseOutcome.CLOSED
    gateway.check(data["request"])


@pytest.mark.parametrize(
    ("close_case", "query_case", "outcome"),
    [
        ("order_paid", "success", CloseOutcome.ALREADY_PAID),
        ("order_closed", None, CloseOutcome.CLOSED),
        ("order_closed", "not_exist", CloseOutcome.NOT_FOUND),
    ],
)
async def test_a_close_wechat_pay_refuses_is_decided_by_the_orders_own_state(
    channel: WechatPayChannel,
    gateway: FakeWechatPay,
    close_case: str,
    query_case: str | None,
    outcome: CloseOutcome,
) -> None:
    gateway.answer_fixture("close", close_case)
    if query_case is None:
        closed = {**fixture("query")["responses"]["notpay"]["json"], "trade_state": "CLOSED"}
        gateway.answer(200, closed)
    else:
        gateway.answer_fixture("query", query_case)
    assert await channel.close_payment(PAYMENT_ID) is outcome


async def test_a_close_refused_while_the_order_is_still_payable_stays_a_refusal(
    channel: WechatPayChannel, gateway: FakeWechatPay
) -> None:
    gateway.answer_fixture("close", "order_closed")
    gateway.answer_fixture("query", "notpay")
    with pytest.raises(WechatPayRefused):
        await channel.close_payment(PAYMENT_ID)


# -- refunds -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        ("PROCESSING", RefundStatus.PENDING),
        ("SUCCESS", RefundStatus.SUCCEEDED),
        ("ABNORMAL", RefundStatus.PENDING),
        ("CLOSED", RefundStatus.FAILED),
    ],
)
async def test_a_refund_sends_total_and_refund_and_maps_the_status(
    channel: WechatPayChannel, gateway: FakeWechatPay, wire: str, status: RefundStatus
) -> None:
    data = fixture("refund")
    gateway.answer(200, {**data["responses"]["processing"]["json"], "status": wire})

    state = await channel.refund(refund_request())

    gateway.check(data["request"])
    assert (state.refund_id, state.payment_id, state.status, state.amount) == (
        REFUND_ID,
        PAYMENT_ID,
        status,
        3000,
    )
    assert state.channel_refund_no == "50000000382019052709732678859"


async def test_a_refund_wechat_pay_refuses_is_a_refusal(
    channel: WechatPayChannel, gateway: FakeWechatPay
) -> None:
    gateway.answer_fixture("refund", "not_enough")
    with pytest.raises(WechatPayRefused) as caught:
        await channel.refund(refund_request())
    assert caught.value.code == "NOT_ENOUGH"


async def test_a_refund_query_reads_the_refund_by_our_refund_id(
    channel: WechatPayChannel, gateway: FakeWechatPay
) -> None:
    data = gateway.answer_fixture("refund_query", "success")
    state = await channel.query_refund(REFUND_ID, PAYMENT_ID)
    gateway.check(data["request"])
    assert (state.status, state.amount, state.currency) == (RefundStatus.SUCCEEDED, 3000, "CNY")


async def test_an_unknown_refund_status_raises(
    channel: WechatPayChannel, gateway: FakeWechatPay
) -> None:
    answer = fixture("refund_query")["responses"]["success"]["json"]
    gateway.answer(200, {**answer, "status": "REVERSED"})
    with pytest.raises(UnknownWireStatus):
        await channel.query_refund(REFUND_ID, PAYMENT_ID)


# -- statements ----------------------------------------------------------------------------


def bill_answer(
    data: dict[str, Any], *, digest: str | None = None, host: str = "api.mch.weixin.qq.com"
) -> dict[str, str]:
    content = data["file"].encode()
    return {
        "hash_type": "SHA1",
        "hash_value": digest or hashlib.sha1(content).hexdigest(),
        "download_url": f"https://{host}{data['download_path']}",
    }


async def test_a_statement_is_downloaded_signed_and_checked_against_its_hash(
    channel: WechatPayChannel, gateway: FakeWechatPay
) -> None:
    data = fixture("tradebill")
    gateway.answer(200, bill_answer(data))
    gateway.answer_raw(httpx.Response(200, content=data["file"].encode()))

    content = await channel.download_statement(date(2026, 10, 31))

    assert content == data["file"].encode()
    gateway.check(data["request"], 0)
    assert gateway.requests[1].url.raw_path.decode() == data["download_path"]


async def test_a_statement_that_does_not_match_its_hash_is_refused(
    channel: WechatPayChannel, gateway: FakeWechatPay
) -> None:
    data = fixture("tradebill")
    gateway.answer(200, bill_answer(data, digest="0" * 40))
    gateway.answer_raw(httpx.Response(200, content=data["file"].encode()))
    with pytest.raises(ChannelError, match="hash"):
        await channel.download_statement(date(2026, 10, 31))


async def test_a_statement_url_on_another_host_is_never_sent_our_signature(
    channel: WechatPayChannel, gateway: FakeWechatPay
) -> None:
    gateway.answer(200, bill_answer(fixture("tradebill"), host="evil.example.com"))
    with pytest.raises(ChannelTimeout):
        await channel.download_statement(date(2026, 10, 31))
    assert len(gateway.requests) == 1


# -- notifications -------------------------------------------------------------------------


def notification(
    name: str,
    key: rsa.RSAPrivateKey,
    *,
    serial: str = PUB_KEY_ID,
    apiv3_key: bytes = APIV3_KEY,
    timestamp: datetime = NOW,
    **resource_changes: Any,
) -> tuple[dict[str, str], bytes]:
    data = fixture("notifications")[name]
    return sign_notification(
        data["event_type"],
        {**data["resource"], **resource_changes},
        apiv3_key=apiv3_key,
        private_key=key,
        serial=serial,
        timestamp=unix_seconds(timestamp),
        notification_id="EV-2026110117032200001",
        create_time="2026-11-01T17:03:22+08:00",
    )


def test_a_payment_notification_is_verified_decrypted_and_mapped(
    channel: WechatPayChannel, wechat_key: rsa.RSAPrivateKey
) -> None:
    verified = channel.verify_notification(*notification("transaction_success", wechat_key))

    assert verified.kind is NotificationKind.PAYMENT
    assert (verified.app_id, verified.event) == (MCHID, "TRANSACTION.SUCCESS")
    assert verified.trade_no == "4200002345202611013456789012"
    assert verified.payment is not None
    assert (verified.payment.payment_id, verified.payment.amount) == (PAYMENT_ID, 8880)
    assert verified.payment.status is PaymentStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("name", "status"),
    [("refund_success", RefundStatus.SUCCEEDED), ("refund_closed", RefundStatus.FAILED)],
)
def test_a_refund_notification_is_mapped_to_the_refund(
    channel: WechatPayChannel, wechat_key: rsa.RSAPrivateKey, name: str, status: RefundStatus
) -> None:
    verified = channel.verify_notification(*notification(name, wechat_key))

    assert verified.kind is NotificationKind.REFUND
    assert verified.trade_no == "50000000382019052709732678859"
    assert verified.refund is not None
    assert (verified.refund.refund_id, verified.refund.payment_id) == (REFUND_ID, PAYMENT_ID)
    assert (verified.refund.status, verified.refund.amount, verified.refund.currency) == (
        status,
        3000,
        "CNY",
    )


def test_headers_are_matched_case_insensitively(
    channel: WechatPayChannel, wechat_key: rsa.RSAPrivateKey
) -> None:
    headers, body = notification("transaction_success", wechat_key)
    lowered = {name.lower(): value for name, value in headers.items()}
    assert channel.verify_notification(lowered, body).kind is NotificationKind.PAYMENT


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (
            lambda key: notification("transaction_success", key, serial="PUB_KEY_ID_01999"),
            "unknown Wechatpay-Serial",
        ),
        (
            lambda key: notification(
                "transaction_success", key, serial="7132D72A03E93CDDF8C03BBD1F37EEDF"
            ),
            "unknown Wechatpay-Serial",
        ),
        (
            lambda key: notification(
                "transaction_success",
                rsa.generate_private_key(public_exponent=65537, key_size=2048),
            ),
            "does not verify",
        ),
        (
            lambda key: notification(
                "transaction_success", key, timestamp=NOW - timedelta(minutes=6)
            ),
            "stale",
        ),
        (
            lambda key: notification(
                "transaction_success", key, timestamp=NOW + timedelta(minutes=6)
            ),
            "stale",
        ),
        (
            lambda key: notification("transaction_success", key, apiv3_key=b"f" * 32),
            "does not decrypt",
        ),
        (lambda key: notification("transaction_success", key, appid="wx0000000000000000"), "appid"),
        (
            lambda key: notification("transaction_success", key, trade_state="NOTPAID"),
            "trade_state",
        ),
        (
            lambda key: notification("refund_success", key, refund_status="CLOSED"),
            "carries refund_status",
        ),
    ],
    ids=[
        "unknown-key-id",
        "unknown-cert",
        "bad-signature",
        "stale",
        "future",
        "wrong-apiv3-key",
        "foreign-appid",
        "unknown-state",
        "event-mismatch",
    ],
)
def test_a_notification_failing_any_check_is_rejected(
    channel: WechatPayChannel,
    wechat_key: rsa.RSAPrivateKey,
    make: Callable[[rsa.RSAPrivateKey], tuple[dict[str, str], bytes]],
    reason: str,
) -> None:
    with pytest.raises(NotificationRejected, match=reason):
        channel.verify_notification(*make(wechat_key))


def test_a_notification_tampered_after_signing_is_rejected(
    channel: WechatPayChannel, wechat_key: rsa.RSAPrivateKey
) -> None:
    headers, body = notification("transaction_success", wechat_key)
    with pytest.raises(NotificationRejected, match="does not verify"):
        channel.verify_notification(
            headers, body.replace(b"TRANSACTION.SUCCESS", b"TRANSACTION.SUCCESs")
        )


@pytest.mark.parametrize(
    "header", ["Wechatpay-Signature", "Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Serial"]
)
def test_a_notification_missing_a_signature_header_is_rejected(
    channel: WechatPayChannel, wechat_key: rsa.RSAPrivateKey, header: str
) -> None:
    headers, body = notification("transaction_success", wechat_key)
    del headers[header]
    with pytest.raises(NotificationRejected, match="missing header"):
        channel.verify_notification(headers, body)


def test_the_acks_follow_the_v3_rules(channel: WechatPayChannel) -> None:
    assert (channel.ack(True).status_code, channel.ack(True).body) == (204, b"")
    rejected = channel.ack(False)
    assert rejected.status_code == 400
    assert json.loads(rejected.body)["code"] == "FAIL"


# -- configuration -------------------------------------------------------------------------


def settings(
    merchant_key: rsa.RSAPrivateKey, wechat_key: rsa.RSAPrivateKey, **overrides: Any
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "mchid": MCHID,
        "appid": APPID,
        "merchant_private_key": pem(merchant_key, serialization.PrivateFormat.PKCS8),
        "merchant_serial_no": SERIAL,
        "apiv3_key": APIV3_KEY,
        "wechatpay_public_key": public_pem(wechat_key),
        "wechatpay_public_key_id": PUB_KEY_ID,
    }
    fields.update(overrides)
    return fields


def test_pkcs1_and_pkcs8_merchant_keys_are_both_accepted(
    merchant_key: rsa.RSAPrivateKey, wechat_key: rsa.RSAPrivateKey
) -> None:
    pkcs1 = pem(merchant_key, serialization.PrivateFormat.TraditionalOpenSSL)
    pkcs8 = pem(merchant_key, serialization.PrivateFormat.PKCS8)
    for key in (pkcs1, pkcs8, pkcs8.decode()):
        config = load_wechatpay_config(
            **settings(merchant_key, wechat_key, merchant_private_key=key)
        )
        assert config.merchant_private_key == pkcs8


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"merchant_private_key": None}, "wechatpay.merchant_private_key: is not set"),
        ({"merchant_private_key": "weak"}, "wechatpay.merchant_private_key: RSA key is 1024 bits"),
        ({"apiv3_key": None}, "wechatpay.apiv3_key: is not set"),
        ({"apiv3_key": b"short"}, "wechatpay.apiv3_key: must be exactly 32 bytes"),
        (
            {"wechatpay_public_key_id": "0112300001"},
            "wechatpay.wechatpay_public_key_id: expected PUB_KEY_ID_",
        ),
        ({"wechatpay_public_key_id": None}, "wechatpay.wechatpay_public_key and"),
        (
            {"wechatpay_public_key": None, "wechatpay_public_key_id": None},
            "wechatpay.wechatpay_public_key: is not set",
        ),
        (
            {"wechatpay_public_key": "own"},
            "wechatpay.wechatpay_public_key: this is the merchant's own key",
        ),
        ({"merchant_serial_no": "not-hex"}, "wechatpay.merchant_serial_no"),
        (
            {"platform_certificates": {"ABCD": "cert"}},
            "wechatpay.platform_certificates['ABCD']: the certificate's serial",
        ),
        ({"base_url": "api.mch.weixin.qq.com"}, "wechatpay.base_url"),
        ({"mchid": ""}, "wechatpay.mchid"),
    ],
)
def test_misconfiguration_is_refused_with_a_message_naming_the_setting(
    merchant_key: rsa.RSAPrivateKey,
    wechat_key: rsa.RSAPrivateKey,
    overrides: dict[str, Any],
    message: str,
) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    stand_ins = {
        "weak": pem(weak, serialization.PrivateFormat.PKCS8),
        "own": public_pem(merchant_key),
        "cert": certificate(wechat_key, 0x1234),
    }
    resolved = {
        name: stand_ins.get(value, value) if isinstance(value, str) else value
        for name, value in overrides.items()
    }
    if "platform_certificates" in overrides:
        resolved["platform_certificates"] = {"ABCD": stand_ins["cert"]}
    with pytest.raises(ValueError, match="^" + re.escape(message)) as caught:
        load_wechatpay_config(**settings(merchant_key, wechat_key, **resolved))
    assert APIV3_KEY.decode() not in str(caught.value)


def test_secrets_never_appear_in_a_repr(config: WechatPayConfig, channel: WechatPayChannel) -> None:
    body = config.merchant_private_key.decode().splitlines()[1]
    for text in (repr(config), repr(channel)):
        assert body not in text
        assert APIV3_KEY.decode() not in text
