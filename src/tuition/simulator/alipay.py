"""The simulator playing Alipay's open-API gateway: ``GET|POST /alipay/gateway.do``.

One endpoint dispatching on ``method``, as Alipay's does:

=====================================  ==============================================
``alipay.trade.page.pay`` / ``wap.pay``  the buyer's browser arrives with the signed
                                        parameters; the trade opens and the browser is
                                        sent to the simulator's buyer page
``alipay.trade.precreate``              open a trade; ``qr_code`` opens the buyer page
``alipay.trade.query``                  the trade
``alipay.trade.close``                  close an unpaid trade
``alipay.trade.refund``                 refund (idempotent per ``out_request_no``)
``alipay.trade.fastpay.refund.query``   one refund
=====================================  ==============================================

Requests must be signed (RSA2) with the key of an app added by :meth:`AlipayGateway.add_app`;
answers are signed with the simulator's own "Alipay" key (:attr:`AlipayGateway.key`).
Refusals before business processing (bad signature, unknown app) are unsigned, as Alipay's
are. Trades live in the simulator's shared state, so paying, expiry, fault injection and
notifications work as for every protocol. Refunds settle at once (Alipay refunds
synchronously, ``fund_change=Y``) unless planned otherwise: a held, delayed or abnormal
refund answers ``fund_change=N`` and shows in the refund query without ``refund_status``
until it succeeds; a failed one is refused (``ACQ.SELLER_BALANCE_NOT_ENOUGH``) and may
be retried with the same ``out_request_no``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from tuition.channels.alipay import gateway_side
from tuition.channels.alipay.config import load_rsa_public_key
from tuition.simulator import alipay_wire as wire
from tuition.simulator.faults import Operation, with_faults
from tuition.simulator.pages import result_page
from tuition.simulator.records import (
    GatewayError,
    PaymentWireStatus,
    RefundWireStatus,
    SimPayment,
)
from tuition.simulator.signing import PlatformKey

if TYPE_CHECKING:
    from tuition.simulator.app import Simulator

PATH = "/alipay/gateway.do"
_JSON = "application/json;charset=utf-8"
# The buyer's side submits these (a browser; for app.pay, the Alipay app SDK with the
# order string): the trade opens and the buyer page stands in for Alipay's.
_PAGE_METHODS = {
    "alipay.trade.page.pay": "page",
    "alipay.trade.wap.pay": "wap",
    "alipay.trade.app.pay": "app",
}
_REQUIRED = ("app_id", "method", "charset", "sign_type", "sign", "timestamp", "version")
_DEFAULT_TTL = timedelta(hours=2)
_MAX_BODY = 64 * 1024

Handler = Callable[[str, Mapping[str, str], Mapping[str, object]], wire.JsonNode]


class AlipayGateway:
    def __init__(self, sim: Simulator) -> None:
        self._sim = sim
        self.key = PlatformKey()
        self.apps: dict[str, rsa.RSAPublicKey] = {}
        self.notifications = wire.AlipayNotifications(sim.state, self.key, sim.config.clock)
        self._api: dict[str, tuple[Operation, Handler]] = {
            "alipay.trade.precreate": (Operation.CREATE, self._precreate),
            "alipay.trade.query": (Operation.QUERY, self._query),
            "alipay.trade.close": (Operation.CLOSE, self._close),
            "alipay.trade.refund": (Operation.REFUND, self._refund),
            "alipay.trade.fastpay.refund.query": (Operation.REFUND_QUERY, self._refund_query),
        }
        # Other page calls (the browser arrives with signed parameters), by method.
        self.page_methods: dict[
            str, Callable[[str, Mapping[str, str], Mapping[str, object]], Response]
        ] = {}

    def add_app(self, app_id: str, public_key_pem: str | bytes) -> None:
        """Accept requests from ``app_id`` signed with the key whose public half is given."""
        self.apps[app_id] = load_rsa_public_key(public_key_pem, setting=f"alipay app {app_id}")

    @property
    def public_key_pem(self) -> str:
        """What merchants configure as "the Alipay public key"."""
        return self.key.public_key_pem

    def routes(self) -> list[Route]:
        return [Route(PATH, self._gateway, methods=["GET", "POST"])]

    # -- the endpoint -----------------------------------------------------------------

    async def _gateway(self, request: Request) -> Response:
        try:
            params = await _params(request)
        except ValueError as exc:
            return self._unsigned(
                "alipay.error", wire.gateway_error("40002", "isv.invalid-request", str(exc))
            )
        method = params.get("method", "")
        refused = self._authenticate(params)
        if refused is not None:
            if method in _PAGE_METHODS or method in self.page_methods:
                return _error_page(refused)
            return self._unsigned(method or "alipay.error", refused)
        try:
            biz = wire.biz_content(params)
        except GatewayError as exc:
            return self._signed(method, wire.refusal(exc))
        app_id = params["app_id"]
        if method in _PAGE_METHODS:
            return self._page_pay(app_id, params, biz, _PAGE_METHODS[method])
        if method in self.page_methods:
            try:
                return self.page_methods[method](app_id, params, biz)
            except GatewayError as exc:
                return _error_page(wire.refusal(exc))
        if method not in self._api:
            node = wire.gateway_error("40002", "isv.invalid-method", f"unknown method {method}")
            return Response(
                gateway_side.sign_response(method, node, self.key.private_key, error_node=True),
                media_type=_JSON,
            )
        operation, handler = self._api[method]

        def answer() -> Response:
            try:
                return self._signed(method, handler(app_id, params, biz))
            except GatewayError as exc:
                return self._signed(method, wire.refusal(exc))

        return await with_faults(self._sim.faults, self._sim.config, operation, answer)

    def _authenticate(self, params: Mapping[str, str]) -> wire.JsonNode | None:
        for name in _REQUIRED:
            if not params.get(name):
                missing = f"isv.missing-{name.replace('_', '-')}"
                return wire.gateway_error("40001", missing, f"{name} is required")
        key = self.apps.get(params["app_id"])
        if key is None:
            return wire.gateway_error("40002", "isv.invalid-app-id", "unknown app_id")
        if params["charset"].lower() != "utf-8":
            return wire.gateway_error("40002", "isv.invalid-charset", "charset must be utf-8")
        if params["sign_type"] != "RSA2":
            return wire.gateway_error("40002", "isv.invalid-signature-type", "use RSA2")
        if not gateway_side.verify_request(params, key):
            return wire.gateway_error("40002", "isv.invalid-signature", "signature check failed")
        return None

    def _signed(self, method: str, node: wire.JsonNode) -> Response:
        body = gateway_side.sign_response(method, node, self.key.private_key)
        return Response(body, media_type=_JSON)

    def _unsigned(self, method: str, node: wire.JsonNode) -> Response:
        return Response(gateway_side.unsigned_response(method, node), media_type=_JSON)

    # -- methods ----------------------------------------------------------------------

    def _page_pay(
        self, app_id: str, params: Mapping[str, str], biz: Mapping[str, object], method: str
    ) -> Response:
        try:
            payment = self._open(app_id, params, biz, method)
        except GatewayError as exc:
            return _error_page(wire.refusal(exc))
        # A repeat visit finds the trade as it stands; the buyer page shows its status.
        return RedirectResponse(payment.pay_url, status_code=303)

    def _precreate(
        self, app_id: str, params: Mapping[str, str], biz: Mapping[str, object]
    ) -> wire.JsonNode:
        payment = self._open(app_id, params, biz, "qr")
        if payment.status is PaymentWireStatus.PAID:
            raise GatewayError("ACQ.TRADE_HAS_SUCCESS", "the trade is already paid")
        if payment.status is not PaymentWireStatus.WAIT_PAY:
            raise GatewayError("ACQ.TRADE_HAS_CLOSE", "the trade is closed")
        # Scanning the code opens the buyer page, standing in for the Alipay app.
        return {**wire.SUCCESS, "out_trade_no": payment.out_trade_no, "qr_code": payment.pay_url}

    def _query(
        self, app_id: str, _params: Mapping[str, str], biz: Mapping[str, object]
    ) -> wire.JsonNode:
        payment = self._payment(app_id, biz)
        return wire.trade_node(payment, wire.refunded(self._sim.state, payment))

    def _close(
        self, app_id: str, _params: Mapping[str, str], biz: Mapping[str, object]
    ) -> wire.JsonNode:
        payment = self._payment(app_id, biz)
        if payment.status is not PaymentWireStatus.WAIT_PAY:
            raise GatewayError("ACQ.TRADE_STATUS_ERROR", f"the trade is {payment.status}")
        self._sim.state.close_payment(app_id, payment.out_trade_no)
        return {**wire.SUCCESS, "trade_no": payment.trade_no, "out_trade_no": payment.out_trade_no}

    def _refund(
        self, app_id: str, _params: Mapping[str, str], biz: Mapping[str, object]
    ) -> wire.JsonNode:
        payment = self._payment(app_id, biz)
        amount = wire.amount(biz, "refund_amount")
        refund, new = self._sim.state.create_refund(
            app_id,
            out_trade_no=payment.out_trade_no,
            # Without out_request_no Alipay treats the call as the trade's one full refund.
            out_refund_no=wire.text(biz, "out_request_no", required=False) or payment.out_trade_no,
            amount=amount,
            currency=None,
            reason=wire.text(biz, "refund_reason", required=False)[:256],
            notify_url=None,
            # Alipay asks that a failed refund be retried with the same out_request_no.
            retry_failed=True,
        )
        if new:
            self._sim.start_refund(refund, synchronous=True)
        if refund.status is RefundWireStatus.REFUND_FAILED:
            raise GatewayError("ACQ.SELLER_BALANCE_NOT_ENOUGH", "the refund could not be paid")
        refund_fee = wire.refunded(self._sim.state, payment)
        config = self._sim.config
        return wire.refund_node(
            payment,
            refund,
            refund_fee,
            new=new,
            fee_returned=config.fee_returned(refund.amount),
            fee_rate=config.refund_fee_rate,
        )

    def _refund_query(
        self, app_id: str, _params: Mapping[str, str], biz: Mapping[str, object]
    ) -> wire.JsonNode:
        payment = self._payment(app_id, biz)
        out_request_no = wire.text(biz, "out_request_no", required=False) or payment.out_trade_no
        refund = self._sim.state.refunds.get((app_id, out_request_no))
        if refund is not None and refund.out_trade_no != payment.out_trade_no:
            refund = None
        fee = None if refund is None else self._sim.config.fee_returned(refund.amount)
        return wire.refund_query_node(payment, refund, fee_returned=fee)

    # -- helpers ----------------------------------------------------------------------

    def _open(
        self, app_id: str, params: Mapping[str, str], biz: Mapping[str, object], method: str
    ) -> SimPayment:
        now = self._sim.config.clock.now()
        return self._sim.state.create_payment(
            app_id,
            out_trade_no=wire.text(biz, "out_trade_no"),
            amount=wire.amount(biz, "total_amount"),
            currency="CNY",
            subject=wire.text(biz, "subject")[:256],
            method=method,
            notify_url=params.get("notify_url") or "",
            return_url=params.get("return_url") or None,
            expires_at=wire.expiry(biz) or now + _DEFAULT_TTL,
            protocol="alipay",
        )

    def _payment(self, app_id: str, biz: Mapping[str, object]) -> SimPayment:
        out_trade_no = wire.text(biz, "out_trade_no", required=False)
        trade_no = wire.text(biz, "trade_no", required=False)
        if out_trade_no:
            payment = self._sim.state.get_payment(app_id, out_trade_no)
        elif trade_no:
            payment = self._sim.state.by_trade_no(trade_no)
        else:
            raise GatewayError("ACQ.INVALID_PARAMETER", "out_trade_no or trade_no is required")
        if (payment.app_id, payment.protocol) != (app_id, "alipay") or (
            trade_no and payment.trade_no != trade_no
        ):
            raise GatewayError("ACQ.TRADE_NOT_EXIST", "no such trade")
        return payment


async def _params(request: Request) -> dict[str, str]:
    """Query string and form body together, as the gateway reads them; ValueError."""
    pairs = list(request.query_params.multi_items())
    if request.method == "POST":
        body = await request.body()
        if len(body) > _MAX_BODY:
            raise ValueError("request too large")
        pairs += parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise ValueError(f"parameter {name} repeated")
        params[name] = value
    return params


def _error_page(node: wire.JsonNode) -> Response:
    detail = f"{node.get('sub_code')}: {node.get('sub_msg')}"
    return HTMLResponse(result_page(None, detail=detail), status_code=400)
