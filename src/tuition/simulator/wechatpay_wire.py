"""WeChat Pay API v3's wire format for the simulator: request bodies in; transactions,
refunds, errors and encrypted, signed notifications out.

Trades and refunds are the simulator's shared records; this module renders them in
WeChat Pay's vocabulary (integer fen, RFC 3339 Beijing times, ``NOTPAY`` / ``SUCCESS`` /
``CLOSED`` / ``PAYERROR``, refunds ``PROCESSING`` / ``SUCCESS`` / ``CLOSED``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Literal, TypeVar

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from tuition.channels.wechatpay import gateway_side
from tuition.channels.wechatpay.transformers import wire_time
from tuition.clock import Clock
from tuition.domain.money import MAX_AMOUNT
from tuition.simulator.notifier import NotificationBody
from tuition.simulator.records import (
    GatewayError,
    PaymentWireStatus,
    RefundWireStatus,
    SimPayment,
    SimRefund,
)
from tuition.simulator.state import GatewayEvent

JsonNode = dict[str, object]

TRADE_TYPES = {"native": "NATIVE", "jsapi": "JSAPI", "h5": "MWEB", "app": "APP"}
RECEIVED_ACCOUNT = "支付用户零钱"

# The simulator's own refusal codes as WeChat Pay's status and code.
_ERRORS = {
    "INVALID_REQUEST": (400, "PARAM_ERROR"),
    "CURRENCY_MISMATCH": (400, "PARAM_ERROR"),
    "OUT_TRADE_NO_USED": (400, "INVALID_REQUEST"),
    "TRADE_NOT_EXIST": (404, "ORDER_NOT_EXIST"),
    "TRADE_ALREADY_PAID": (400, "ORDERPAID"),
    "TRADE_STATUS_ERROR": (400, "ORDER_CLOSED"),
    "TRADE_NOT_PAID": (400, "INVALID_REQUEST"),
    "OUT_REFUND_NO_USED": (400, "INVALID_REQUEST"),
    "REFUND_AMOUNT_EXCEEDED": (400, "INVALID_REQUEST"),
    "REFUND_NOT_EXIST": (404, "RESOURCE_NOT_EXISTS"),
}


@dataclass(frozen=True, slots=True)
class WechatMerchant:
    """A merchant the simulator serves: its API certificate's public key checks requests."""

    mchid: str
    appids: frozenset[str]
    public_key: rsa.RSAPublicKey = field(repr=False)
    serial_no: str
    apiv3_key: bytes = field(repr=False)


def error(exc: GatewayError) -> tuple[int, JsonNode]:
    """A refusal as WeChat Pay answers it: status and ``{"code", "message"}``."""
    status, code = _ERRORS.get(exc.code, (exc.status, exc.code))
    return status, {"code": code, "message": exc.message}


def trade_state(payment: SimPayment, refunded: int) -> str:
    match payment.status:
        case PaymentWireStatus.WAIT_PAY:
            return "NOTPAY"
        case PaymentWireStatus.PAID:
            return "REFUND" if refunded > 0 else "SUCCESS"
        case PaymentWireStatus.CLOSED:
            return "CLOSED"
        case PaymentWireStatus.FAILED:
            return "PAYERROR"


def transaction(payment: SimPayment, refunded: int) -> JsonNode:
    """A transaction: the query answer and the ``TRANSACTION.SUCCESS`` resource."""
    state = trade_state(payment, refunded)
    node: JsonNode = {
        "appid": payment.details.get("appid", ""),
        "mchid": payment.app_id,
        "out_trade_no": payment.out_trade_no,
        "trade_type": TRADE_TYPES.get(payment.method, "NATIVE"),
        "trade_state": state,
        "trade_state_desc": _STATE_DESCRIPTIONS[state],
        "attach": "",
        "amount": {"total": payment.amount, "currency": "CNY", "payer_currency": "CNY"},
    }
    if payment.paid_at is not None:
        node.update(
            transaction_id=payment.trade_no,
            bank_type="OTHERS",
            success_time=wire_time(payment.paid_at),
            payer={"openid": payment.details.get("openid", "o_simulated_buyer")},
        )
        node["amount"] = {**_mapping(node["amount"]), "payer_total": payment.amount}
    return node


_STATE_DESCRIPTIONS = {
    "NOTPAY": "订单未支付",
    "SUCCESS": "支付成功",
    "REFUND": "转入退款",
    "CLOSED": "已关闭",
    "PAYERROR": "支付失败",
}


def refund_status(refund: SimRefund) -> str:
    match refund.status:
        case RefundWireStatus.REFUND_PROCESSING:
            return "ABNORMAL" if refund.abnormal else "PROCESSING"
        case RefundWireStatus.REFUND_SUCCESS:
            return "SUCCESS"
        case RefundWireStatus.REFUND_FAILED:
            return "CLOSED"


def refund_object(
    payment: SimPayment,
    refund: SimRefund,
    *,
    status_key: str = "status",
    fee_returned: int | None = None,
) -> JsonNode:
    """A refund: the API's answer (``status``) or a notification resource (``refund_status``).

    ``fee_returned`` becomes ``amount.refund_fee`` (手续费退款金额) once it succeeded.
    """
    node: JsonNode = {
        "mchid": payment.app_id,
        "refund_id": refund.refund_no,
        "out_refund_no": refund.out_refund_no,
        "transaction_id": payment.trade_no,
        "out_trade_no": payment.out_trade_no,
        "channel": "ORIGINAL",
        "user_received_account": RECEIVED_ACCOUNT,
        "create_time": wire_time(refund.created_at),
        status_key: refund_status(refund),
        "funds_account": "AVAILABLE",
        "amount": {
            "total": payment.amount,
            "refund": refund.amount,
            "payer_total": payment.amount,
            "payer_refund": refund.amount,
            "settlement_total": payment.amount,
            "settlement_refund": refund.amount,
            "discount_refund": 0,
            "currency": "CNY",
        },
    }
    if refund.refunded_at is not None:
        node["success_time"] = wire_time(refund.refunded_at)
    if fee_returned is not None and refund.status is RefundWireStatus.REFUND_SUCCESS:
        amount = node["amount"]
        assert isinstance(amount, dict)
        amount["refund_fee"] = fee_returned
    return node


# -- requests ---------------------------------------------------------------------------

_Id = Annotated[str, Field(pattern=r"^[0-9A-Za-z_]{1,32}$")]
_Url = Annotated[str, Field(max_length=256, pattern=r"^https?://")]


class _In(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


class _Amount(_In):
    total: Annotated[int, Field(gt=0, le=MAX_AMOUNT)]
    currency: Literal["CNY"] = "CNY"


class _Payer(_In):
    openid: Annotated[str, Field(min_length=1, max_length=128)]


class _SceneInfo(_In):
    payer_client_ip: Annotated[str, Field(min_length=1, max_length=45)]


class TransactionIn(_In):
    appid: _Id
    mchid: _Id
    description: Annotated[str, Field(min_length=1, max_length=127)]
    out_trade_no: Annotated[str, Field(pattern=r"^[0-9A-Za-z_\-|*]{6,32}$")]
    time_expire: AwareDatetime | None = None
    notify_url: _Url
    amount: _Amount
    payer: _Payer | None = None
    scene_info: _SceneInfo | None = None


class _RefundAmount(_In):
    refund: Annotated[int, Field(gt=0, le=MAX_AMOUNT)]
    total: Annotated[int, Field(gt=0, le=MAX_AMOUNT)]
    currency: Literal["CNY"]


class RefundIn(_In):
    out_trade_no: str | None = None
    transaction_id: str | None = None
    out_refund_no: Annotated[str, Field(pattern=r"^[0-9A-Za-z_\-|*@]{1,64}$")]
    reason: Annotated[str, Field(max_length=80)] = ""
    notify_url: _Url | None = None
    amount: _RefundAmount


class CloseIn(_In):
    mchid: _Id


_M = TypeVar("_M", bound=_In)


def parse(model: type[_M], body: bytes) -> _M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise GatewayError("PARAM_ERROR", f"{where}: {first['msg']}", 400) from None


# -- notifications ----------------------------------------------------------------------


class WechatNotifications:
    """WeChat Pay's notifications: an AEAD_AES_256_GCM resource, ``Wechatpay-*`` headers.

    WeChat Pay notifies a paid transaction and a refund's end; closed or failed payments
    are only seen by querying. 200 or 204 is the ACK.
    """

    def __init__(
        self,
        merchants: Mapping[str, WechatMerchant],
        signing_key: Callable[[], tuple[rsa.RSAPrivateKey, str]],
        clock: Clock,
        fee_returned: Callable[[int], int | None] = lambda _amount: None,
    ) -> None:
        self._merchants = merchants
        self._signing_key = signing_key
        self._clock = clock
        self._fee_returned = fee_returned

    def body(self, event: GatewayEvent, notify_id: str) -> NotificationBody | None:
        merchant = self._merchants.get(event.payment.app_id)
        if merchant is None:
            return None
        payment, refund = event.payment, event.refund
        match event.name, refund:
            case "payment.paid", None:
                event_type, resource = "TRANSACTION.SUCCESS", transaction(payment, 0)
            case "refund.succeeded" | "refund.failed" | "refund.abnormal", SimRefund():
                resource = refund_object(
                    payment,
                    refund,
                    status_key="refund_status",
                    fee_returned=self._fee_returned(refund.amount),
                )
                event_type = f"REFUND.{resource['refund_status']}"
            case _:
                return None
        amount_key = "total" if event_type.startswith("TRANSACTION.") else "refund"

        def render(extra: int) -> bytes:
            amount = _mapping(resource["amount"])
            changed = {
                **resource,
                "amount": {**amount, amount_key: _int(amount[amount_key]) + extra},
            }
            return self._render(event_type, changed, merchant, notify_id)

        return NotificationBody(render(0), lambda: render(1))

    def _render(
        self, event_type: str, resource: JsonNode, merchant: WechatMerchant, notify_id: str
    ) -> bytes:
        key, serial = self._signing_key()
        now = self._clock.now()
        _headers, body = gateway_side.sign_notification(
            event_type,
            resource,
            apiv3_key=merchant.apiv3_key,
            private_key=key,
            serial=serial,
            timestamp=int(now.timestamp()),
            notification_id=notify_id,
            create_time=wire_time(now),
        )
        return body

    def headers(self, body: bytes, timestamp: int) -> dict[str, str]:
        key, serial = self._signing_key()
        headers = gateway_side.signature_headers(
            body, private_key=key, serial=serial, timestamp=timestamp
        )
        return {**headers, "Content-Type": "application/json"}

    def acknowledged(self, response: httpx.Response) -> bool:
        return response.status_code in (200, 204)


def _mapping(value: object) -> Mapping[str, object]:
    assert isinstance(value, Mapping)
    return value


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value
