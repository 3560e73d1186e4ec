"""The simulator playing UnionPay's online-payment gateway (全渠道 5.1.0).

=====================================  ===============================================
``POST /unionpay/gateway/api/frontTransReq.do``  the buyer's browser arrives with the
                                        signed consumption form; the order opens and the
                                        browser is sent to the simulator's buyer page
``POST /unionpay/gateway/api/appTransReq.do``    the app's consumption: opens the order
                                        and answers its ``tn``
``POST /unionpay/gateway/api/backTransReq.do``   refund (``txnType=04``) or undo (``31``)
``POST /unionpay/gateway/api/queryTrans.do``     a consumption, refund or undo by
                                        ``orderId`` + ``txnTime``
``POST /unionpay/file``                 the day's bill file (``txnType=76``)
=====================================  ===============================================

Requests must be signed by a merchant added with :meth:`UnionPayGateway.add_merchant`
(looked up by ``merId`` and ``certId``); answers and notifications are signed with the
signing certificate of the simulator's own test CA (:mod:`.unionpay_ca`), sent along in
``signPubKeyCert`` as UnionPay does. A request that fails verification is answered
unsigned with ``respCode=11``. Refunds are accepted (``respCode=00``) and settle in the
background, then are notified; an undo is accepted only on the payment's own Beijing day.
"""

# ruff: noqa: RUF001  (UnionPay's formats use full-width punctuation)

from __future__ import annotations

import base64
import io
import zipfile
import zlib
from collections.abc import Mapping
from datetime import date
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from tuition.channels.unionpay import gateway_side
from tuition.channels.unionpay import transformers as wire
from tuition.channels.unionpay.bills import ZM_LAYOUT, zm_file_name
from tuition.clock import Clock
from tuition.simulator.faults import Operation, with_faults
from tuition.simulator.notifier import NotificationBody
from tuition.simulator.pages import result_page
from tuition.simulator.records import (
    GatewayError,
    PaymentWireStatus,
    RefundWireStatus,
    SimPayment,
    SimRefund,
)
from tuition.simulator.state import GatewayEvent, GatewayState
from tuition.simulator.unionpay_ca import TestCA

if TYPE_CHECKING:
    from tuition.simulator.app import Simulator

FRONT = "/unionpay/gateway/api/frontTransReq.do"
APP = "/unionpay/gateway/api/appTransReq.do"
BACK = "/unionpay/gateway/api/backTransReq.do"
QUERY = "/unionpay/gateway/api/queryTrans.do"
FILE = "/unionpay/file"
FORM = "application/x-www-form-urlencoded; charset=utf-8"
_TEXT = "text/plain;charset=UTF-8"
_MAX_BODY = 64 * 1024
_REQUIRED = ("version", "encoding", "signMethod", "certId", "signature", "txnType", "merId")
# Codes and words the simulator answers with, from UnionPay's response code table.
_MESSAGES = {
    "00": "成功[0000000]",
    "01": "交易失败",
    "05": "交易已受理，请稍后查询交易结果",
    "10": "报文格式错误",
    "11": "验证签名失败",
    "12": "重复交易",
    "13": "报文交易要素缺失",
    "31": "商户状态不正确",
    "34": "查无此交易",
    "35": "原交易不存在或状态不正确",
    "36": "交易金额超限",
    "98": "文件不存在",
}
_STATE_CODES = {  # the simulator's state refusals, in UnionPay's codes
    "TRADE_NOT_EXIST": "35",
    "TRADE_NOT_PAID": "35",
    "TRADE_STATUS_ERROR": "35",
    "REFUND_AMOUNT_EXCEEDED": "36",
    "OUT_REFUND_NO_USED": "12",
    "OUT_TRADE_NO_USED": "12",
}


class UnionPayGateway:
    def __init__(self, sim: Simulator) -> None:
        self._sim = sim
        self._ca: TestCA | None = None
        self.merchants: dict[tuple[str, str], rsa.RSAPublicKey] = {}
        # What UnionPay keeps of each back transaction beyond the shared refund record.
        self.reserved: dict[tuple[str, str], str] = {}
        self.txn_types: dict[tuple[str, str], str] = {}
        self.notifications = UnionPayNotifications(self, sim.state, sim.config.clock)

    @property
    def ca(self) -> TestCA:
        """The test CA (made on first use unless a deployment handed one in)."""
        if self._ca is None:
            self._ca = TestCA.create()
        return self._ca

    def use_ca(self, ca: TestCA) -> None:
        self._ca = ca

    def add_merchant(self, mer_id: str, certificate: x509.Certificate) -> None:
        """Accept requests from ``mer_id`` signed with ``certificate``'s key."""
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("a UnionPay merchant certificate holds an RSA key")
        self.merchants[(mer_id, str(certificate.serial_number))] = key

    def routes(self) -> list[Route]:
        return [
            Route(FRONT, self._front, methods=["POST"]),
            Route(APP, self._app, methods=["POST"]),
            Route(BACK, self._back, methods=["POST"]),
            Route(QUERY, self._query, methods=["POST"]),
            Route(FILE, self._file, methods=["POST"]),
        ]

    def sign(self, params: Mapping[str, str]) -> dict[str, str]:
        return gateway_side.sign_message(params, self.ca.signing_key, self.ca.signing)

    def answer(self, params: Mapping[str, str]) -> Response:
        return Response(wire.render_response(self.sign(params)), media_type=_TEXT)

    # -- the endpoints ----------------------------------------------------------------

    async def _front(self, request: Request) -> Response:
        try:
            params = await _params(request)
            self._authenticate(params)
            payment = self._open(params)
        except GatewayError as exc:
            return HTMLResponse(result_page(None, detail=f"{exc.code}: {exc.message}"), 400)
        return RedirectResponse(payment.pay_url, status_code=303)

    async def _app(self, request: Request) -> Response:
        try:
            params = await _params(request)
            self._authenticate(params)
        except GatewayError as exc:
            return _unsigned(exc)

        def answer() -> Response:
            try:
                payment = self._open(params, method="app")
            except GatewayError as exc:
                return self.answer(_refusal(params, exc))
            # The app's SDK pays with tn; the simulator's buyer page stands in for it.
            return self.answer(
                {
                    "version": wire.VERSION,
                    "encoding": wire.ENCODING,
                    "txnType": wire.CONSUME,
                    "txnSubType": "01",
                    "bizType": params.get("bizType", ""),
                    "accessType": "0",
                    "merId": params["merId"],
                    "orderId": payment.out_trade_no,
                    "txnTime": params.get("txnTime", ""),
                    "tn": payment.trade_no[-12:] + payment.out_trade_no[-9:],
                    "respCode": "00",
                    "respMsg": _MESSAGES["00"],
                }
            )

        return await with_faults(self._sim.faults, self._sim.config, Operation.CREATE, answer)

    async def _back(self, request: Request) -> Response:
        try:
            params = await _params(request)
            self._authenticate(params)
        except GatewayError as exc:
            return _unsigned(exc)

        def answer() -> Response:
            try:
                return self.answer(self._refund(params))
            except GatewayError as exc:
                return self.answer(_refusal(params, exc))

        return await with_faults(self._sim.faults, self._sim.config, Operation.REFUND, answer)

    async def _query(self, request: Request) -> Response:
        try:
            params = await _params(request)
            self._authenticate(params)
        except GatewayError as exc:
            return _unsigned(exc)

        def answer() -> Response:
            try:
                return self.answer(self._queried(params))
            except GatewayError as exc:
                return self.answer(_refusal(params, exc))

        return await with_faults(self._sim.faults, self._sim.config, Operation.QUERY, answer)

    async def _file(self, request: Request) -> Response:
        try:
            params = await _params(request)
            self._authenticate(params)
        except GatewayError as exc:
            return _unsigned(exc)

        def answer() -> Response:
            try:
                return self.answer(self._bill(params))
            except GatewayError as exc:
                return self.answer(_refusal(params, exc))

        return await with_faults(self._sim.faults, self._sim.config, Operation.QUERY, answer)

    def _bill(self, params: Mapping[str, str]) -> dict[str, str]:
        if params.get("txnType") != wire.FILE_TRANSFER or params.get("fileType") != "00":
            raise GatewayError("10", "txnType 76 with fileType 00 only")
        today = self._sim.config.clock.now().astimezone(wire.BEIJING).date()
        try:
            day = date(today.year, int(params["settleDate"][:2]), int(params["settleDate"][2:]))
        except (KeyError, ValueError):
            raise GatewayError("10", "settleDate is MMDD") from None
        if day > today:
            day = day.replace(year=day.year - 1)
        try:
            self._sim.bills._require_ended(day)
        except GatewayError:
            raise GatewayError("98", "no file for that day yet") from None
        mer_id = params["merId"]
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
            out.writestr(zm_file_name(mer_id, day), self.zm_text(mer_id, day).encode("gbk"))
        content = base64.b64encode(zlib.compress(archive.getvalue())).decode("ascii")
        return {
            "version": wire.VERSION,
            "encoding": wire.ENCODING,
            "txnType": wire.FILE_TRANSFER,
            "txnSubType": params.get("txnSubType", ""),
            "bizType": params.get("bizType", ""),
            "accessType": "0",
            "merId": mer_id,
            "settleDate": params["settleDate"],
            "txnTime": params.get("txnTime", ""),
            "fileType": "00",
            "fileName": f"{mer_id}_{day:%Y%m%d}.zip",
            "fileContent": content,
            "respCode": "00",
            "respMsg": _MESSAGES["00"],
        }

    def zm_text(self, mer_id: str, day: date) -> str:
        """The day's general transaction detail (ZM) of ``mer_id``, from the shared books."""
        lines = []
        for row in self._sim.bills.rows(mer_id, day):
            refund = row.kind == "refund"
            txn_type = self.txn_types.get((mer_id, row.out_refund_no), wire.REFUND)
            values = {
                "交易代码": ("S31" if txn_type == wire.CONSUME_UNDO else "S30")
                if refund
                else "S22",
                "代理机构标识码": "00049992",
                "发送机构标识码": "00049992",
                "系统跟踪号": f"{zlib.crc32(row.reference.encode()) % 1_000_000:06d}",
                "交易传输时间": f"{row.at.astimezone(wire.BEIJING):%m%d%H%M%S}",
                "帐号": "6216***********0018",
                "交易金额": f"{row.amount:012d}",
                "商户类别": "5811",
                "终端类型": "07",
                "查询流水号": row.refund_no if refund else row.trade_no,
                "支付方式（旧）": "",
                "商户订单号": row.out_refund_no if refund else row.out_trade_no,
                "支付卡类型": "01",
                "原始交易的系统跟踪号": "",
                "原始交易日期时间": "",
                "商户手续费": f"{'C' if refund else 'D'}{row.fee:012d}",
                "结算金额": f"{'D' if refund else 'C'}{row.amount - row.fee:012d}",
                "支付方式": "0001",
                "集团商户代码": "",
                "交易类型": txn_type if refund else wire.CONSUME,
                "交易子类": "00" if refund else "01",
                "业务类型": wire.B2C_GATEWAY,
                "帐号类型": "01",
                "账单类型": "",
                "账单号码": "",
                "交互方式": "0",
                "原交易查询流水号": row.trade_no if refund else "",
                "商户代码": mer_id,
            }
            lines.append(
                " ".join(_pad(values[name], width) for name, width in ZM_LAYOUT) + " " * 40
            )
        return "".join(line + "\r\n" for line in lines)

    def _authenticate(self, params: Mapping[str, str]) -> None:
        for name in _REQUIRED:
            if not params.get(name):
                raise GatewayError("13", f"{name} is required")
        if params["version"] != wire.VERSION or params["signMethod"] != wire.SIGN_METHOD:
            raise GatewayError("10", "version 5.1.0 with signMethod 01 only")
        key = self.merchants.get((params["merId"], params["certId"]))
        if key is None:
            raise GatewayError("11", "unknown merId or certId")
        if not gateway_side.verify_request(params, key):
            raise GatewayError("11", "signature check failed")

    # -- transactions -----------------------------------------------------------------

    def _open(self, params: Mapping[str, str], *, method: str | None = None) -> SimPayment:
        if params.get("txnType") != wire.CONSUME or params.get("currencyCode") != "156":
            raise GatewayError("10", "a consumption in CNY only")
        try:
            amount = wire.fen(params.get("txnAmt"))
            expires_at = wire.parse_wire_time(params.get("payTimeout", ""))
            wire.parse_wire_time(params.get("txnTime", ""))
        except ValueError as exc:
            raise GatewayError("10", str(exc)) from None
        if amount <= 0:
            raise GatewayError("10", "txnAmt must be positive")
        return self._sim.state.create_payment(
            params["merId"],
            out_trade_no=params.get("orderId", ""),
            amount=amount,
            currency="CNY",
            subject="UnionPay",
            method=method or ("page" if params.get("channelType") == "07" else "wap"),
            notify_url=params.get("backUrl", ""),
            return_url=params.get("frontUrl") or None,
            expires_at=expires_at,
            protocol="unionpay",
            details={"txnTime": params.get("txnTime", "")},
        )

    def _refund(self, params: Mapping[str, str]) -> dict[str, str]:
        txn_type = params.get("txnType", "")
        if txn_type not in (wire.REFUND, wire.CONSUME_UNDO):
            raise GatewayError("10", f"txnType {txn_type} is not a back transaction here")
        mer_id = params["merId"]
        payment = self._sim.state.by_trade_no(params.get("origQryId", ""))
        if payment.app_id != mer_id or payment.protocol != "unionpay":
            raise GatewayError("35", "no such original transaction")
        try:
            amount = wire.fen(params.get("txnAmt"))
        except ValueError as exc:
            raise GatewayError("10", str(exc)) from None
        if txn_type == wire.CONSUME_UNDO:
            self._check_undo(payment, amount)
        order_id = params.get("orderId", "")
        refund, new = self._sim.state.create_refund(
            mer_id,
            out_trade_no=payment.out_trade_no,
            out_refund_no=order_id,
            amount=amount,
            currency=None,
            reason="",
            notify_url=params.get("backUrl") or None,
        )
        if new:
            self.reserved[(mer_id, order_id)] = params.get("reqReserved", "")
            self.txn_types[(mer_id, order_id)] = txn_type
            self._sim.start_refund(refund)
        return self._back_fields(params, refund)

    def _check_undo(self, payment: SimPayment, amount: int) -> None:
        now = self._sim.config.clock.now().astimezone(wire.BEIJING)
        paid = payment.paid_at
        if paid is None or paid.astimezone(wire.BEIJING).date() != now.date() or now.hour >= 23:
            raise GatewayError("35", "an undo is possible only on the payment's day")
        if amount != payment.amount:
            raise GatewayError("36", "an undo returns the whole amount")

    def _back_fields(self, params: Mapping[str, str], refund: SimRefund) -> dict[str, str]:
        return {
            "version": wire.VERSION,
            "encoding": wire.ENCODING,
            "bizType": params.get("bizType", ""),
            "txnType": params["txnType"],
            "txnSubType": params.get("txnSubType", ""),
            "accessType": "0",
            "merId": params["merId"],
            "orderId": refund.out_refund_no,
            "txnTime": params.get("txnTime", ""),
            "txnAmt": str(refund.amount),
            "origQryId": refund.trade_no,
            "queryId": refund.refund_no,
            "respCode": "00",
            "respMsg": _MESSAGES["00"],
            **({"reqReserved": params["reqReserved"]} if params.get("reqReserved") else {}),
        }

    def _queried(self, params: Mapping[str, str]) -> dict[str, str]:
        mer_id, order_id = params["merId"], params.get("orderId", "")
        head = {
            "version": wire.VERSION,
            "encoding": wire.ENCODING,
            "txnType": wire.QUERY,
            "txnSubType": "00",
            "bizType": params.get("bizType", "000000"),
            "accessType": "0",
            "merId": mer_id,
            "orderId": order_id,
            "txnTime": params.get("txnTime", ""),
        }
        refund = self._sim.state.refunds.get((mer_id, order_id))
        if refund is not None:
            code = {
                RefundWireStatus.REFUND_SUCCESS: "00",
                RefundWireStatus.REFUND_PROCESSING: "05",
                RefundWireStatus.REFUND_FAILED: "01",
            }[refund.status]
            return head | {
                "txnType": self.txn_types.get((mer_id, order_id), wire.REFUND),
                "origTxnType": self.txn_types.get((mer_id, order_id), wire.REFUND),
                "txnAmt": str(refund.amount),
                "currencyCode": "156",
                "queryId": refund.refund_no,
                "origQryId": refund.trade_no,
                "respCode": "00",
                "respMsg": _MESSAGES["00"],
                "origRespCode": code,
                "origRespMsg": _MESSAGES[code],
            }
        try:
            payment = self._sim.state.get_payment(mer_id, order_id)
        except GatewayError:
            return head | {"respCode": "34", "respMsg": _MESSAGES["34"]}
        code = {
            PaymentWireStatus.PAID: "00",
            PaymentWireStatus.WAIT_PAY: "05",
            PaymentWireStatus.CLOSED: "01",
            PaymentWireStatus.FAILED: "01",
        }[payment.status]
        answer = head | {
            "txnType": wire.CONSUME,
            "txnSubType": "01",
            "txnTime": payment.details.get("txnTime", ""),
            "txnAmt": str(payment.amount),
            "currencyCode": "156",
            "queryId": payment.trade_no,
            "respCode": "00",
            "respMsg": _MESSAGES["00"],
            "origRespCode": code,
            "origRespMsg": _MESSAGES[code],
        }
        if payment.paid_at is not None:
            answer |= {
                "settleAmt": str(payment.amount),
                "settleCurrencyCode": "156",
                "settleDate": f"{payment.paid_at.astimezone(wire.BEIJING):%m%d}",
                "traceTime": f"{payment.paid_at.astimezone(wire.BEIJING):%m%d%H%M%S}",
            }
        return answer


class UnionPayNotifications:
    """backUrl notifications: a signed form; UnionPay stops once answered HTTP 200.

    A consumption is notified when paid (``respCode=00``); a refund or undo when it
    settles (``00``, or ``01`` when it failed). Failed or lapsed consumptions are not.
    """

    def __init__(self, gateway: UnionPayGateway, state: GatewayState, clock: Clock) -> None:
        self._gateway = gateway
        self._state = state
        self._clock = clock

    def body(self, event: GatewayEvent, notify_id: str) -> NotificationBody | None:
        payment = event.payment
        if event.name in ("payment.failed", "payment.closed", "refund.abnormal"):
            return None
        refund = event.refund
        if refund is None:
            if not payment.notify_url:
                return None
            params = {
                "txnType": wire.CONSUME,
                "txnSubType": "01",
                "bizType": wire.B2C_GATEWAY,
                "orderId": payment.out_trade_no,
                "txnTime": payment.details.get("txnTime", ""),
                "txnAmt": str(payment.amount),
                "queryId": payment.trade_no,
                "respCode": "00",
            }
        else:
            key = (refund.app_id, refund.out_refund_no)
            code = "00" if refund.status is RefundWireStatus.REFUND_SUCCESS else "01"
            params = {
                "txnType": self._gateway.txn_types.get(key, wire.REFUND),
                "txnSubType": "00",
                "bizType": wire.B2C_GATEWAY,
                "orderId": refund.out_refund_no,
                "txnTime": wire.wire_time(refund.created_at),
                "txnAmt": str(refund.amount),
                "queryId": refund.refund_no,
                "origQryId": refund.trade_no,
                "respCode": code,
            }
            reserved = self._gateway.reserved.get(key)
            if reserved:
                params["reqReserved"] = reserved
        params |= {
            "version": wire.VERSION,
            "encoding": wire.ENCODING,
            "accessType": "0",
            "merId": payment.app_id,
            "currencyCode": "156",
            "respMsg": _MESSAGES.get(params["respCode"], ""),
        }
        processed = payment.paid_at if refund is None else refund.refunded_at
        params["traceTime"] = (
            f"{(processed or self._clock.now()).astimezone(wire.BEIJING):%m%d%H%M%S}"
        )
        signed = self._gateway.sign(params)
        body = urlencode(signed).encode("ascii")
        return NotificationBody(body, lambda: _tamper(signed))

    def headers(self, body: bytes, timestamp: int) -> dict[str, str]:
        return {"Content-Type": FORM}

    def acknowledged(self, response: httpx.Response) -> bool:
        return response.status_code == 200


def _pad(value: str, width: int) -> str:
    """A field as wide as its column (GBK counts a Chinese character as one here: none)."""
    if len(value) > width:
        raise ValueError(f"{value!r} is wider than {width}")
    return value.ljust(width)


def _tamper(signed: Mapping[str, str]) -> bytes:
    changed = dict(signed)
    changed["txnAmt"] = str(int(changed["txnAmt"]) + 1)
    return urlencode(changed).encode("ascii")


async def _params(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > _MAX_BODY:
        raise GatewayError("10", "request too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise GatewayError("10", "not a form") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise GatewayError("10", f"field {name} repeated")
        params[name] = value
    return params


def _unsigned(exc: GatewayError) -> Response:
    """How UnionPay answers a message it refused outright: unsigned."""
    code = exc.code if exc.code in _MESSAGES else "10"
    text = wire.render_response({"respCode": code, "respMsg": f"{_MESSAGES[code]}: {exc.message}"})
    return Response(text, media_type=_TEXT)


def _refusal(params: Mapping[str, str], exc: GatewayError) -> dict[str, str]:
    code = exc.code if exc.code in _MESSAGES else _STATE_CODES.get(exc.code, "01")
    return {
        "version": wire.VERSION,
        "encoding": wire.ENCODING,
        "txnType": params.get("txnType", ""),
        "merId": params.get("merId", ""),
        "orderId": params.get("orderId", ""),
        "txnTime": params.get("txnTime", ""),
        "respCode": code,
        "respMsg": f"{_MESSAGES.get(code, '')}: {exc.message}",
    }
