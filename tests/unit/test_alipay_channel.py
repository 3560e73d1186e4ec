"""The Alipay channel against a fake gateway speaking recorded-style JSON (httpx.MockTransport).

The fake gateway checks every request's RSA2 signature with the app's public key and
answers with fixtures from ``tests/fixtures/alipay``, signed at test time by a gateway
key generated for the session; no private key is committed.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tuition.channels.alipay import AlipayChannel, AlipayConfig, AlipayRefused, load_alipay_config
from tuition.channels.alipay.gateway_side import (
    sign_notification,
    sign_response,
    unsigned_response,
    verify_request,
)
from tuition.channels.alipay.transformers import UnknownWireStatus
from tuition.channels.base import (
    ChannelTimeout,
    CloseOutcome,
    NextActionType,
    NotificationKind,
    NotificationRejected,
    PaymentRequest,
    RefundNotFound,
    RefundRequest,
)
from tuition.clock import FrozenClock
from tuition.domain.errors import ChannelError, ValidationFailed
from tuition.domain.payments import PaymentStatus, RefundStatus

FIXTURES = Path(__file__).parent.parent / "fixtures" / "alipay"
APP_ID = "2021000000000001"
PAYMENT_ID = "pay_01J9Z3K4QW8YV6T2N5B7C0D1EF"
REFUND_ID = "re_01J9Z4M2T1AB3CD4EF5GH6JK7M"
TRADE_NO = "2026110122001419121412730660"
GATEWAY = "https://openapi.alipay.com/gateway.do"
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


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def gateway_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def config(app_key: rsa.RSAPrivateKey, gateway_key: rsa.RSAPrivateKey) -> AlipayConfig:
    return AlipayConfig(
        app_id=APP_ID,
        app_private_key=pem(app_key, serialization.PrivateFormat.PKCS8),
        alipay_public_key=public_pem(gateway_key),
    )


Reply = Callable[[httpx.Request, dict[str, str]], httpx.Response]


@dataclass
class FakeGateway:
    """Plays the Alipay gateway: checks request signatures, answers queued replies."""

    app_key: rsa.RSAPrivateKey
    key: rsa.RSAPrivateKey
    replies: list[Reply] = field(default_factory=list)
    calls: list[dict[str, str]] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        params = dict(parse_qsl(request.content.decode(), keep_blank_values=True))
        if request.method == "POST":
            assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")
            assert verify_request(params, self.app_key.public_key()), "request signature"
            self.calls.append(params)
        return self.replies.pop(0)(request, params)

    def answer(self, payload: dict[str, Any]) -> None:
        def reply(_request: httpx.Request, params: dict[str, str]) -> httpx.Response:
            return httpx.Response(200, content=sign_response(params["method"], payload, self.key))

        self.replies.append(reply)

    def answer_fixture(self, name: str, case: str) -> dict[str, Any]:
        data = fixture(name)
        self.answer(data["responses"][case])
        return data

    def answer_raw(self, response: httpx.Response | Exception) -> None:
        def reply(request: httpx.Request, _params: dict[str, str]) -> httpx.Response:
            if isinstance(response, Exception):
                raise response
            return response

        self.replies.append(reply)

    def biz(self, index: int = -1) -> dict[str, Any]:
        content: dict[str, Any] = json.loads(self.calls[index]["biz_content"])
        return content


@pytest.fixture
def gateway(app_key: rsa.RSAPrivateKey, gateway_key: rsa.RSAPrivateKey) -> FakeGateway:
    return FakeGateway(app_key, gateway_key)


@pytest.fixture
async def channel(config: AlipayConfig, gateway: FakeGateway) -> AsyncIterator[AlipayChannel]:
    channel = AlipayChannel(
        config, transport=httpx.MockTransport(gateway.handle), clock=FrozenClock(NOW)
    )
    yield channel
    await channel.aclose()


def payment_request(method: str = "page", **overrides: Any) -> PaymentRequest:
    fields: dict[str, Any] = {
        "payment_id": PAYMENT_ID,
        "order_id": "ord_01J9Z3K4QW8YV6T2N5B7C0D1EF",
        "amount": 8880,
        "currency": "CNY",
        "subject": "Python 进阶课",
        "method": method,
        "notify_url": "https://pay.example.com/v1/notify/alipay",
        "return_url": "https://shop.example.com/paid",
        "expires_at": NOW + timedelta(minutes=15),
    }
    fields.update(overrides)
    return PaymentRequest(**fields)


def refund_request(**overrides: Any) -> RefundRequest:
    fields: dict[str, Any] = {
        "refund_id": REFUND_ID,
        "payment_id": PAYMENT_ID,
        "channel_trade_no": TRADE_NO,
        "amount": 3000,
        "payment_amount": 8880,
        "currency": "CNY",
        "reason": "课程未开课",
        "notify_url": "https://pay.example.com/v1/notify/alipay",
    }
    fields.update(overrides)
    return RefundRequest(**fields)


# -- creating payments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "product_code"), [("page", "FAST_INSTANT_TRADE_PAY"), ("wap", "QUICK_WAP_WAY")]
)
async def test_page_and_wap_payments_redirect_to_a_signed_gateway_url(
    channel: AlipayChannel, app_key: rsa.RSAPrivateKey, method: str, product_code: str
) -> None:
    created = await channel.create_payment(payment_request(method))

    assert created.next_action.type is NextActionType.REDIRECT
    url = created.next_action.url or ""
    assert url.startswith(GATEWAY + "?")
    params = dict(parse_qsl(urlsplit(url).query))
    assert verify_request(params, app_key.public_key())
    assert params["method"] == f"alipay.trade.{method}.pay"
    assert params["timestamp"] == "2026-11-01 17:00:00"  # Beijing time
    assert params["return_url"] == "https://shop.example.com/paid"
    assert params["notify_url"] == "https://pay.example.com/v1/notify/alipay"
    assert (params["app_id"], params["sign_type"], params["charset"]) == (APP_ID, "RSA2", "utf-8")
    assert json.loads(params["biz_content"]) == {
        **fixture("trade_precreate")["biz_content"],
        "product_code": product_code,
    }


async def test_a_qr_payment_precreates_the_trade_and_shows_its_qr_code(
    channel: AlipayChannel, gateway: FakeGateway
) -> None:
    data = gateway.answer_fixture("trade_precreate", "success")

    created = await channel.create_payment(payment_request("qr"))

    assert created.next_action.type is NextActionType.QR_CODE
    assert created.next_action.qr_payload == data["responses"]["success"]["qr_code"]
    assert gateway.calls[0]["method"] == "alipay.trade.precreate"
    assert gateway.calls[0]["notify_url"] == "https://pay.example.com/v1/notify/alipay"
    assert gateway.biz() == data["biz_content"]


async def test_a_configured_notify_url_overrides_the_one_derived_from_the_base_url(
    config: AlipayConfig, gateway: FakeGateway
) -> None:
    override = AlipayConfig(
        app_id=APP_ID,
        app_private_key=config.app_private_key,
        alipay_public_key=config.alipay_public_key,
        notify_url="https://edge.example.com/alipay",
    )
    channel = AlipayChannel(override, transport=httpx.MockTransport(gateway.handle))
    created = await channel.create_payment(payment_request("page"))
    assert "notify_url=https%3A%2F%2Fedge.example.com%2Falipay" in (created.next_action.url or "")


@pytest.mark.parametrize("currency", ["USD", "HKD", "cny"])
async def test_a_currency_other_than_cny_is_refused_before_any_call(
    channel: AlipayChannel, gateway: FakeGateway, currency: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await channel.create_payment(payment_request("qr", currency=currency))
    assert caught.value.param == "currency"
    assert gateway.calls == []


async def test_an_unknown_method_is_refused_naming_the_method(channel: AlipayChannel) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await channel.create_payment(payment_request("jsapi"))  # WeChat's, not Alipay's
    assert caught.value.param == "method"


async def test_a_business_refusal_carries_the_alipay_sub_code(
    channel: AlipayChannel, gateway: FakeGateway
) -> None:
    gateway.answer_fixture("trade_precreate", "total_fee_exceed")
    with pytest.raises(AlipayRefused) as caught:
        await channel.create_payment(payment_request("qr"))
    assert caught.value.code == "ACQ.TOTAL_FEE_EXCEED"
    assert not isinstance(caught.value, ChannelTimeout)


@pytest.mark.parametrize("case", ["system_error", "service_unavailable"])
async def test_a_gateway_system_error_leaves_the_outcome_unknown(
    channel: AlipayChannel, gateway: FakeGateway, case: str
) -> None:
    gateway.answer_fixture("trade_precreate", case)
    with pytest.raises(ChannelTimeout):
        await channel.create_payment(payment_request("qr"))


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.ConnectError("connection refused"),
        httpx.Response(502, text="Bad Gateway"),
        httpx.Response(503, text="Service Unavailable"),
        httpx.Response(200, text="<html>maintenance</html>"),
    ],
    ids=["read-timeout", "connect-timeout", "refused", "502", "503", "not-json"],
)
async def test_timeouts_connection_errors_5xx_and_garbage_are_channel_timeouts(
    channel: AlipayChannel, gateway: FakeGateway, failure: httpx.Response | Exception
) -> None:
    gateway.answer_raw(failure)
    with pytest.raises(ChannelTimeout):
        await channel.query_payment(PAYMENT_ID)


async def test_a_4xx_from_the_gateway_host_is_a_refusal_not_a_timeout(
    channel: AlipayChannel, gateway: FakeGateway
) -> None:
    gateway.answer_raw(httpx.Response(404, text="Not Found"))
    with pytest.raises(ChannelError) as caught:
        await channel.query_payment(PAYMENT_ID)
    assert not isinstance(caught.value, ChannelTimeout)
    assert caught.value.code == "http_404"


# -- response signatures -------------------------------------------------------------------


async def test_a_response_signed_by_another_key_is_not_trusted(
    channel: AlipayChannel, gateway: FakeGateway
) -> None:
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body = sign_response(
        "alipay.trade.query", fixture("trade_query")["responses"]["success"], impostor
    )
    gateway.answer_raw(httpx.Response(200, content=body))
    with pytest.raises(ChannelTimeout) as caught:
        await channel.query_payment(PAYMENT_ID)
    assert caught.value.code == "alipay_response_unverified"


async def test_a_response_tampered_after_signing_is_not_trusted(
    channel: AlipayChannel, gateway: FakeGateway, gateway_key: rsa.RSAPrivateKey
) -> None:
    payload = fixture("trade_query")["responses"]["waiting"]
    body = sign_response("alipay.trade.query", payload, gateway_key)
    gateway.answer_raw(
        httpx.Response(200, content=body.replace(b"WAIT_BUYER_PAY", b"TRADE_SUCCESS"))
    )
    with pytest.raises(ChannelTimeout):
        await channel.query_payment(PAYMENT_ID)


async def test_an_unsigned_success_is_not_trusted(
    channel: AlipayChannel, gateway: FakeGateway
) -> None:
    payload = fixture("trade_query")["responses"]["success"]
    gateway.answer_raw(
        httpx.Response(200, content=unsigned_response("alipay.trade.query", payload))
    )
    with pytest.raises(ChannelTimeout):
        await channel.query_payment(PAYMENT_ID)


async def test_an_unsigned_error_response_about_our_signature_is_a_refusal(
    channel: AlipayChannel, gateway: FakeGateway
) -> None:
    error = fixture("errors")["invalid_signature"]
    node = json.dumps(error, ensure_ascii=False)
    gateway.answer_raw(httpx.Response(200, text=f'{{"error_response":{node}}}'))
    with pytest.raises(AlipayRefused) as caught:
        await channel.query_payment(PAYMENT_ID)
    assert caught.value.code == "isv.invalid-signature"


async def test_the_signed_node_is_cut_from_the_raw_text_not_re_serialised(
    channel: AlipayChannel, gateway: FakeGateway, gateway_key: rsa.RSAPrivateKey
) -> None:
    # Odd spacing, escaped slashes and braces inside strings: re-serialising would break it.
    node = (
        '{ "code":"10000", "msg":"Success", "trade_no":"' + TRADE_NO + '", '
        '"out_trade_no":"' + PAYMENT_ID + '", "trade_status":"WAIT_BUYER_PAY",'
        ' "total_amount":"88.80", "store_name":"a}{\\"b\\/c\\u4e2d" }'
    )
    sign = base64.b64encode(gateway_key.sign(node.encode(), padding.PKCS1v15(), hashes.SHA256()))
    sign_text = sign.decode()
    body = '{\n  "alipay_trade_query_response" : ' + node + ',\n  "sign" : "' + sign_text + '"\n}'
    gateway.answer_raw(httpx.Response(200, text=body))

    state = await channel.query_payment(PAYMENT_ID)

    assert state.status is PaymentStatus.PENDING


# -- querying and closing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("success", PaymentStatus.SUCCEEDED),
        ("waiting", PaymentStatus.PENDING),
        ("closed", PaymentStatus.CLOSED),
    ],
)
async def test_a_query_maps_the_trade_status_and_converts_yuan_to_fen(
    channel: AlipayChannel, gateway: FakeGateway, case: str, status: PaymentStatus
) -> None:
    data = gateway.answer_fixture("trade_query", case)

    state = await channel.query_payment(PAYMENT_ID)

    assert gateway.biz() == data["biz_content"]
    assert (state.payment_id, state.status, state.amount, state.currency) == (
        PAYMENT_ID,
        status,
        8880,
        "CNY",
    )
    assert state.channel_trade_no == TRADE_NO
    assert state.raw_status == data["responses"][case]["trade_status"]


async def test_a_query_reads_the_paid_time_as_beijing_time(
    channel: AlipayChannel, gateway: FakeGateway
) -> None:
    gateway.answer_fixture("trade_query", "success")
    state = await channel.query_payment(PAYMENT_ID)
    assert state.paid_at == datetime(2026, 11, 1, 9, 3, 21, tzinfo=UTC)


async def test_trade_finished_is_also_the_paid_path(
    channel: AlipayChannel, gateway: FakeGateway
) -> None:
    gateway.answer(
        {**fixture("trade_query")["responses"]["success"], "trade_status": "TRADE_FINISHED"}
    )
    assert (await channel.query_payment(PAYMENT_ID)).status is PaymentStatus.SUCCEEDED


async def test_an_unknown_trade_status_raises_instead_of_being_guessed(
    channel: AlipayChannel, gateway: FakeGateway
) -> None:
    gateway.answer(
        {**fixture("trade_query")["responses"]["success"], "trade_status": "TRADE_PENDING"}
    )
    with pytest.raises(UnknownWireStatus):
        await channel.query_payment(PAYMENT_ID)


async def test_querying_a_trade_alipay_never_saw_is_a_refusal(
    channel: AlipayChannel, gateway: FakeGateway
) -> None:
    gateway.answer_fixture("trade_query", "not_exist")
    with pytest.raises(AlipayRefused) as caught:
        await channel.query_payment(PAYMENT_ID)
    assert caught.value.code == "ACQ.TRADE_NOT_EXIST"


async def test_closing_an_unpaid_trade_closes_it(
    channel: AlipayChannel, gateway: FakeGateway
) -> None:
    data = gateway.answer_fixture("trade_close", "success")
    assert await channel.close_payment(PAYMENT_ID) is CloseOutcome.CLOSED
    assert gateway.biz() == data["biz_content"]


async def test_closing_a_trade_alipay_never_saw_reports_not_found(
    channel: AlipayChannel, gateway: FakeGateway
) -> None:
    gateway.answer_fixture("trade_close", "not_exist")
    assert await channel.close_payment(PAYMENT_ID) is CloseOutcome.NOT_FOUND


@pytest.mark.parametrize(
    ("query_case", "outcome"),
    [("success", CloseOutcome.ALREADY_PAID), ("closed", CloseOutcome.CLOSED)],
)
async def test_closing_a_trade_in_the_wrong_state_asks_alipay_which_state(
    channel: AlipayChannel, gateway: FakeGateway, query_case: str, outcome: CloseOutcome
) -> None:
    gateway.answer_fixture("trade_close", "status_error")
    gateway.answer_fixture("trade_query", query_case)
    assert await channel.close_payment(PAYMENT_ID) is outcome
    assert [call["method"] for call in gateway.calls] == [
        "alipay.trade.close",
        "alipay.trade.query",
    ]


# -- refunds -------------------------------------------------------------------------------


async def test_a_refund_sends_our_refund_id_as_out_request_no_and_succeeds_on_fund_change(
    channel: AlipayChannel, gateway: FakeGateway
) -> None:
    data = gateway.answer_fixture("trade_refund", "success")

    state = await channel.refund(refund_request())

    assert gateway.biz() == data["biz_content"]
    assert (state.refund_id, state.payment_id, state.status, state.amount) == (
        REFUND_ID,
        PAYMENT_ID,
        RefundStatus.SUCCEEDED,
        3000,
    )


async def test_a_repeated_refund_without_fund_change_is_settled_by_a_refund_query(
    channel: AlipayChannel, gateway: FakeGateway
) -> None:
    gateway.answer_fixture("trade_refund", "repeat")
    query = gateway.answer_fixture("fastpay_refund_query", "success")

    state = await channel.refund(refund_request())

    assert state.status is RefundStatus.SUCCEEDED
    assert gateway.calls[1]["method"] == "alipay.trade.fastpay.refund.query"
    assert gateway.biz(1) == query["biz_content"]


async def test_a_refund_alipay_refuses_is_a_refusal_with_the_sub_code(
    channel: AlipayChannel, gateway: FakeGateway
) -> None:
    gateway.answer_fixture("trade_refund", "not_allowed")
    with pytest.raises(AlipayRefused) as caught:
        await channel.refund(refund_request())
    assert caught.value.code == "ACQ.TRADE_NOT_ALLOW_REFUND"


async def test_a_refund_in_another_currency_is_refused(channel: AlipayChannel) -> None:
    with pytest.raises(ValidationFailed):
        await channel.refund(refund_request(currency="USD"))


@pytest.mark.parametrize(
    ("case", "status"), [("success", RefundStatus.SUCCEEDED), ("processing", RefundStatus.PENDING)]
)
async def test_a_refund_query_maps_refund_status(
    channel: AlipayChannel, gateway: FakeGateway, case: str, status: RefundStatus
) -> None:
    gateway.answer_fixture("fastpay_refund_query", case)
    state = await channel.query_refund(REFUND_ID, PAYMENT_ID)
    assert (state.status, state.amount, state.currency) == (status, 3000, "CNY")


async def test_a_refund_query_that_finds_nothing_says_so(
    channel: AlipayChannel, gateway: FakeGateway
) -> None:
    gateway.answer_fixture("fastpay_refund_query", "not_found")
    with pytest.raises(RefundNotFound) as caught:
        await channel.query_refund(REFUND_ID, PAYMENT_ID)
    assert caught.value.code == "refund_not_found"


async def test_an_over_refund_is_refused_with_alipays_sub_code(
    channel: AlipayChannel, gateway: FakeGateway
) -> None:
    gateway.answer_fixture("trade_refund", "over_refund")
    with pytest.raises(AlipayRefused) as caught:
        await channel.refund(refund_request())
    assert caught.value.code == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"


async def test_a_refund_reports_the_fee_alipay_gave_back(
    channel: AlipayChannel, gateway: FakeGateway
) -> None:
    gateway.answer_fixture("trade_refund", "success_with_charge")
    state = await channel.refund(refund_request())
    assert (state.status, state.fee_returned) == (RefundStatus.SUCCEEDED, 18)


async def test_a_refund_query_reports_the_fee_and_a_failed_refund(
    channel: AlipayChannel, gateway: FakeGateway
) -> None:
    gateway.answer_fixture("fastpay_refund_query", "success_with_charge")
    gateway.answer_fixture("fastpay_refund_query", "failed")
    done = await channel.query_refund(REFUND_ID, PAYMENT_ID)
    failed = await channel.query_refund(REFUND_ID, PAYMENT_ID)
    assert (done.status, done.fee_returned) == (RefundStatus.SUCCEEDED, 18)
    assert (failed.status, failed.raw_status, failed.fee_returned) == (
        RefundStatus.FAILED,
        "REFUND_FAIL",
        None,
    )


async def test_a_refund_query_with_an_unknown_status_raises(
    channel: AlipayChannel, gateway: FakeGateway
) -> None:
    gateway.answer_fixture("fastpay_refund_query", "unknown_status")
    with pytest.raises(UnknownWireStatus):
        await channel.query_refund(REFUND_ID, PAYMENT_ID)


# -- statements ----------------------------------------------------------------------------


async def test_a_statement_is_downloaded_from_the_url_alipay_returns(
    channel: AlipayChannel, gateway: FakeGateway
) -> None:
    data = gateway.answer_fixture("bill_downloadurl_query", "success")
    seen: list[str] = []

    def bill(request: httpx.Request, _params: dict[str, str]) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, content=b"PK\x03\x04zip-bytes")

    gateway.replies.append(bill)

    content = await channel.download_statement(date(2026, 10, 31))

    assert content == b"PK\x03\x04zip-bytes"
    assert gateway.biz() == data["biz_content"]
    assert seen == [data["responses"]["success"]["bill_download_url"]]


# -- notifications -------------------------------------------------------------------------


def notification_body(name: str, key: rsa.RSAPrivateKey, **changes: str) -> bytes:
    return sign_notification({**fixture("notifications")[name], **changes}, key)


def test_a_signed_payment_notification_is_verified_and_mapped(
    channel: AlipayChannel, gateway_key: rsa.RSAPrivateKey
) -> None:
    verified = channel.verify_notification({}, notification_body("trade_success", gateway_key))

    assert verified.kind is NotificationKind.PAYMENT
    assert (verified.app_id, verified.event, verified.trade_no) == (
        APP_ID,
        "TRADE_SUCCESS",
        TRADE_NO,
    )
    assert verified.payment is not None
    assert (verified.payment.payment_id, verified.payment.amount) == (PAYMENT_ID, 8880)
    assert verified.payment.status is PaymentStatus.SUCCEEDED
    assert verified.payment.paid_at == datetime(2026, 11, 1, 9, 3, 21, tzinfo=UTC)


def test_a_notification_with_out_biz_no_is_a_refund_notification(
    channel: AlipayChannel, gateway_key: rsa.RSAPrivateKey
) -> None:
    verified = channel.verify_notification({}, notification_body("partial_refund", gateway_key))

    assert verified.kind is NotificationKind.REFUND
    assert (verified.trade_no, verified.event) == (REFUND_ID, "REFUND_SUCCESS")
    assert verified.refund is not None
    assert (verified.refund.refund_id, verified.refund.payment_id) == (REFUND_ID, PAYMENT_ID)
    assert (verified.refund.status, verified.refund.amount) == (RefundStatus.SUCCEEDED, 3000)


def test_a_notification_from_another_app_is_verified_but_reports_its_app_id(
    channel: AlipayChannel, gateway_key: rsa.RSAPrivateKey
) -> None:
    body = notification_body("trade_success", gateway_key, app_id="2021999999999999")
    assert channel.verify_notification({}, body).app_id == "2021999999999999"


def test_a_tampered_notification_is_rejected(
    channel: AlipayChannel, gateway_key: rsa.RSAPrivateKey
) -> None:
    body = notification_body("trade_success", gateway_key)
    with pytest.raises(NotificationRejected, match="signature"):
        channel.verify_notification({}, body.replace(b"total_amount=88.80", b"total_amount=0.01"))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: {k: v for k, v in p.items() if k != "sign"}, "missing sign"),
        (lambda p: {**p, "sign_type": "RSA"}, "not RSA2"),
        (lambda p: {**p, "sign": "bm90IGEgc2lnbmF0dXJl"}, "signature"),
        (lambda p: {**p, "sign": "%%%"}, "signature"),
    ],
    ids=["no-sign", "rsa1", "wrong-sign", "not-base64"],
)
def test_a_notification_without_a_valid_rsa2_signature_is_rejected(
    channel: AlipayChannel,
    gateway_key: rsa.RSAPrivateKey,
    mutate: Callable[[dict[str, str]], dict[str, str]],
    reason: str,
) -> None:
    params = dict(parse_qsl(notification_body("trade_success", gateway_key).decode()))
    with pytest.raises(NotificationRejected, match=reason):
        channel.verify_notification({}, urlencode(mutate(params)).encode())


def test_a_notification_signed_by_another_key_is_rejected(channel: AlipayChannel) -> None:
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(NotificationRejected):
        channel.verify_notification({}, notification_body("trade_success", impostor))


@pytest.mark.parametrize(
    "body",
    [b"not a form", b"a=1&a=2", b"\xff\xfe=1", b"sign=" + b"x" * 70000],
    ids=["garbage", "repeated", "not-utf8", "huge"],
)
def test_a_malformed_notification_body_is_rejected(channel: AlipayChannel, body: bytes) -> None:
    with pytest.raises(NotificationRejected):
        channel.verify_notification({}, body)


def test_a_signed_notification_with_an_unknown_status_is_rejected(
    channel: AlipayChannel, gateway_key: rsa.RSAPrivateKey
) -> None:
    body = notification_body("trade_success", gateway_key, trade_status="TRADE_REVERSED")
    with pytest.raises(NotificationRejected, match="trade_status"):
        channel.verify_notification({}, body)


def test_the_acks_are_alipays_plain_text_words(channel: AlipayChannel) -> None:
    assert (channel.ack(True).status_code, channel.ack(True).body) == (200, b"success")
    assert channel.ack(True).media_type == "text/plain"
    assert channel.ack(False).body == b"fail"


# -- configuration -------------------------------------------------------------------------


def load(app_private_key: Any, alipay_public_key: Any) -> AlipayConfig:
    return load_alipay_config(
        app_id=APP_ID, app_private_key=app_private_key, alipay_public_key=alipay_public_key
    )


def test_pkcs1_pkcs8_and_bare_base64_private_keys_are_all_accepted(
    app_key: rsa.RSAPrivateKey, gateway_key: rsa.RSAPrivateKey
) -> None:
    pkcs8 = pem(app_key, serialization.PrivateFormat.PKCS8)
    pkcs1 = pem(app_key, serialization.PrivateFormat.TraditionalOpenSSL)
    bare = b"".join(pkcs8.strip().splitlines()[1:-1])  # what Alipay's key tool prints
    escaped = pkcs8.decode().replace("\n", "\\n")  # a PEM squeezed into an env variable
    loaded = {
        load(key, public_pem(gateway_key)).app_private_key for key in (pkcs8, pkcs1, bare, escaped)
    }
    assert loaded == {pkcs8}


def test_a_bare_base64_public_key_is_accepted(
    app_key: rsa.RSAPrivateKey, gateway_key: rsa.RSAPrivateKey
) -> None:
    bare = "".join(public_pem(gateway_key).decode().strip().splitlines()[1:-1])
    assert load(
        pem(app_key, serialization.PrivateFormat.PKCS8), bare
    ).alipay_public_key == public_pem(gateway_key)


def test_keys_can_be_read_from_files(
    tmp_path: Path, app_key: rsa.RSAPrivateKey, gateway_key: rsa.RSAPrivateKey
) -> None:
    (tmp_path / "app.pem").write_bytes(pem(app_key, serialization.PrivateFormat.TraditionalOpenSSL))
    (tmp_path / "alipay.pem").write_bytes(public_pem(gateway_key))
    config = load(tmp_path / "app.pem", tmp_path / "alipay.pem")
    assert config.app_private_key == pem(app_key, serialization.PrivateFormat.PKCS8)


@pytest.mark.parametrize(
    ("private", "public", "message"),
    [
        (None, "gateway", "alipay.app_private_key: is not set"),
        ("app", None, "alipay.alipay_public_key: is not set"),
        ("", "gateway", "alipay.app_private_key: is not set"),
        (
            "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----",
            "gateway",
            "alipay.app_private_key: not a PEM",
        ),
        ("TUlJQg==", "gateway", "alipay.app_private_key: not a parseable private key"),
        ("gateway_public", "gateway", "alipay.app_private_key: expected a private key"),
        ("app", "app_private", "alipay.alipay_public_key: expected a public key"),
        ("app", "app_public", "alipay.alipay_public_key: this is the app's own public key"),
        ("weak", "gateway", "alipay.app_private_key: RSA key is 1024 bits"),
        ("app", "weak_public", "alipay.alipay_public_key: RSA key is 1024 bits"),
        ("encrypted", "gateway", "alipay.app_private_key: the private key is encrypted"),
        ("encrypted_pkcs1", "gateway", "alipay.app_private_key: the private key is encrypted"),
    ],
)
def test_misconfigured_keys_are_refused_with_a_message_naming_the_setting(
    app_key: rsa.RSAPrivateKey,
    gateway_key: rsa.RSAPrivateKey,
    private: str | None,
    public: str | None,
    message: str,
) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    values = {
        None: None,
        "app": pem(app_key, serialization.PrivateFormat.PKCS8),
        "app_private": pem(app_key, serialization.PrivateFormat.PKCS8),
        "app_public": public_pem(app_key),
        "gateway": public_pem(gateway_key),
        "gateway_public": public_pem(gateway_key),
        "weak": pem(weak, serialization.PrivateFormat.PKCS8),
        "weak_public": public_pem(weak),
        "encrypted": app_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        ),
        "encrypted_pkcs1": app_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.BestAvailableEncryption(b"secret"),
        ),
    }
    with pytest.raises(ValueError, match="^" + re.escape(message)) as caught:
        load(values.get(private, private), values.get(public, public))
    secret_body = pem(app_key, serialization.PrivateFormat.PKCS8).decode().splitlines()[1]
    assert secret_body not in str(caught.value)


def test_the_private_key_never_appears_in_a_repr(
    config: AlipayConfig, channel: AlipayChannel
) -> None:
    body = config.app_private_key.decode().splitlines()[1]
    assert body not in repr(config)
    assert body not in repr(channel)
    assert "app_private_key" not in repr(config)


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"gateway_url": "openapi.alipay.com"}, "alipay.gateway_url"),
        ({"notify_url": "ftp://x"}, "alipay.notify_url"),
        ({"fee_rate": Decimal("1.2")}, "alipay.fee_rate"),
        ({"timeout_seconds": 0}, "alipay.timeout_seconds"),
        ({"app_id": ""}, "alipay.app_id"),
    ],
)
def test_other_bad_settings_are_refused_naming_the_setting(
    config: AlipayConfig, overrides: dict[str, Any], setting: str
) -> None:
    fields: dict[str, Any] = {
        "app_id": APP_ID,
        "app_private_key": config.app_private_key,
        "alipay_public_key": config.alipay_public_key,
        **overrides,
    }
    with pytest.raises(ValueError, match=f"^{setting}"):
        AlipayConfig(**fields)
