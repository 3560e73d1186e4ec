"""The simulator playing WeChat Pay API v3 under ``/wechatpay``.

============================================================  ============================
``POST /wechatpay/v3/pay/transactions/{native|jsapi|h5}``     open a trade (idempotent)
``GET  /wechatpay/v3/pay/transactions/out-trade-no/{no}``     query (``?mchid=``)
``POST /wechatpay/v3/pay/transactions/out-trade-no/{no}/close``  close (204)
``POST /wechatpay/v3/refund/domestic/refunds``                refund (idempotent)
``GET  /wechatpay/v3/refund/domestic/refunds/{out_refund_no}``  one refund
``/wechatpay/v3/fund-app/mch-transfer/transfer-bills[...]``   payouts (wechatpay_transfers)
============================================================  ============================

Requests must carry a ``WECHATPAY2-SHA256-RSA2048`` Authorization signed with the key of
a merchant added by :meth:`WechatPayGateway.add_merchant` (fresh timestamp, unused
nonce, its certificate serial). Every answer, refusals included, is signed with the
simulator's "WeChat Pay public key" (``Wechatpay-Serial: PUB_KEY_ID_…``). ``code_url``
and ``h5_url`` open the simulator's buyer page; refunds settle in the background like
every simulated refund and end with a ``REFUND.*`` notification.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tuition.channels.alipay.config import load_rsa_public_key
from tuition.channels.wechatpay import gateway_side
from tuition.channels.wechatpay.transformers import encode
from tuition.simulator import wechatpay_wire as wire
from tuition.simulator.api import request_target
from tuition.simulator.faults import Operation, with_faults
from tuition.simulator.records import GatewayError, PaymentWireStatus, SimPayment
from tuition.simulator.signing import NonceBook, PlatformKey, key_serial
from tuition.simulator.wechatpay_transfers import WechatTransferDesk

if TYPE_CHECKING:
    from tuition.clock import Clock
    from tuition.simulator.app import Simulator

PREFIX = "/wechatpay/v3"
_DEFAULT_TTL = timedelta(hours=2)
Action = Callable[[wire.WechatMerchant, bytes], tuple[int, wire.JsonNode | None]]


class WechatPayGateway:
    def __init__(self, sim: Simulator) -> None:
        self._sim = sim
        self.key = PlatformKey()
        self._public_key_id: str | None = None
        self.merchants: dict[str, wire.WechatMerchant] = {}
        self._nonces = NonceBook(sim.config.auth_max_skew_seconds)
        self.notifications = wire.WechatNotifications(
            self.merchants, self._signing_key, sim.config.clock, sim.config.fee_returned
        )
        self.transfers = WechatTransferDesk(self)

    @property
    def clock(self) -> Clock:
        return self._sim.config.clock

    def use_key(self, pem: bytes, public_key_id: str | None = None) -> None:
        """Sign with this key (kept on disk by a deployment), under ``public_key_id``."""
        self.key.use(pem)
        self._public_key_id = public_key_id

    @property
    def public_key_pem(self) -> str:
        """What merchants configure as "the WeChat Pay public key"."""
        return self.key.public_key_pem

    @property
    def public_key_id(self) -> str:
        return self._public_key_id or "PUB_KEY_ID_" + key_serial(self.key.private_key.public_key())

    def add_merchant(
        self,
        mchid: str,
        *,
        appid: str,
        public_key_pem: str | bytes,
        serial_no: str,
        apiv3_key: bytes,
    ) -> None:
        """Serve ``mchid`` (selling through ``appid``), whose requests its key signs."""
        existing = self.merchants.get(mchid)
        self.merchants[mchid] = wire.WechatMerchant(
            mchid=mchid,
            appids=frozenset({appid, *(existing.appids if existing else ())}),
            public_key=load_rsa_public_key(public_key_pem, setting=f"wechatpay merchant {mchid}"),
            serial_no=serial_no.upper(),
            apiv3_key=apiv3_key,
        )

    def routes(self) -> list[Route]:
        by_no = f"{PREFIX}/pay/transactions/out-trade-no/{{out_trade_no}}"
        return [
            Route(f"{PREFIX}/pay/transactions/{{kind}}", self._create, methods=["POST"]),
            Route(by_no, self._query, methods=["GET"]),
            Route(f"{by_no}/close", self._close, methods=["POST"]),
            Route(f"{PREFIX}/refund/domestic/refunds", self._refund, methods=["POST"]),
            Route(
                f"{PREFIX}/refund/domestic/refunds/{{out_refund_no}}",
                self._query_refund,
                methods=["GET"],
            ),
            *self.transfers.routes(PREFIX),
        ]

    def _signing_key(self) -> tuple[rsa.RSAPrivateKey, str]:
        return self.key.private_key, self.public_key_id

    # -- the protocol -----------------------------------------------------------------

    async def handle(self, request: Request, operation: Operation, action: Action) -> Response:
        """Authenticate ``request``, run ``action`` (faults permitting), answer signed."""
        return await self._handle(request, operation, action)

    async def _handle(self, request: Request, operation: Operation, action: Action) -> Response:
        body = await request.body()
        try:
            merchant = self._authenticate(request, body)
        except GatewayError as exc:
            return self._respond(*wire.error(exc))

        def answer() -> Response:
            try:
                return self._respond(*action(merchant, body))
            except GatewayError as exc:
                return self._respond(*wire.error(exc))

        return await with_faults(self._sim.faults, self._sim.config, operation, answer)

    def _authenticate(self, request: Request, body: bytes) -> wire.WechatMerchant:
        header = request.headers.get("authorization", "")
        try:
            auth = gateway_side.parse_authorization(header)
        except ValueError as exc:
            raise GatewayError("SIGN_ERROR", f"Authorization: {exc}", 401) from None
        merchant = self.merchants.get(auth.mchid)
        if merchant is None:
            raise GatewayError("SIGN_ERROR", f"unknown mchid {auth.mchid}", 401)
        if auth.serial_no.upper() != merchant.serial_no:
            raise GatewayError("SIGN_ERROR", "serial_no is not the merchant certificate's", 401)
        try:
            gateway_side.verify_authorization(
                request.method, request_target(request), body, header, merchant.public_key
            )
        except ValueError as exc:
            raise GatewayError("SIGN_ERROR", str(exc), 401) from None
        now = int(self._sim.config.clock.now().timestamp())
        if abs(now - auth.timestamp) > self._sim.config.auth_max_skew_seconds:
            raise GatewayError("SIGN_ERROR", "timestamp is too far from now", 401)
        if not self._nonces.remember((auth.mchid, auth.nonce_str), now):
            raise GatewayError("SIGN_ERROR", "nonce_str was already used", 401)
        return merchant

    def _respond(self, status: int, payload: wire.JsonNode | None) -> Response:
        body = b"" if payload is None else encode(payload)
        timestamp = int(self._sim.config.clock.now().timestamp())
        key, serial = self._signing_key()
        headers = gateway_side.signature_headers(
            body, private_key=key, serial=serial, timestamp=timestamp
        )
        if payload is not None:
            headers["Content-Type"] = "application/json"
        return Response(body, status_code=status, headers=headers)

    # -- endpoints --------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        kind = str(request.path_params["kind"])
        if kind not in wire.TRADE_TYPES:
            return self._respond(404, {"code": "NOT_FOUND", "message": f"no API {kind}"})

        def action(merchant: wire.WechatMerchant, body: bytes) -> tuple[int, wire.JsonNode]:
            data = wire.parse(wire.TransactionIn, body)
            payment = self._open(merchant, data, kind)
            if payment.status is PaymentWireStatus.PAID:
                raise GatewayError("ORDERPAID", "该订单已支付", 400)
            if payment.status is not PaymentWireStatus.WAIT_PAY:
                raise GatewayError("ORDER_CLOSED", "订单已关闭", 400)
            match kind:
                case "native":
                    return 200, {"code_url": payment.pay_url}
                case "h5":
                    return 200, {"h5_url": payment.pay_url}
                case _:
                    # Kept so the JSAPI payment sheet (simulator/wechat_oauth.py) finds it.
                    prepay_id = f"wx{secrets.token_hex(15)}"
                    payment.details["prepay_id"] = prepay_id
                    return 200, {"prepay_id": prepay_id}

        return await self._handle(request, Operation.CREATE, action)

    def _open(
        self, merchant: wire.WechatMerchant, data: wire.TransactionIn, kind: str
    ) -> SimPayment:
        if data.mchid != merchant.mchid:
            raise GatewayError("PARAM_ERROR", "mchid is not the signing merchant's", 400)
        if data.appid not in merchant.appids:
            raise GatewayError("APPID_MCHID_NOT_MATCH", "appid 和 mch_id 不匹配", 400)
        if kind == "jsapi" and data.payer is None:
            raise GatewayError("PARAM_ERROR", "payer.openid is required for JSAPI", 400)
        if kind == "h5" and data.scene_info is None:
            raise GatewayError("PARAM_ERROR", "scene_info is required for H5", 400)
        details = {"appid": data.appid}
        if data.payer is not None:
            details["openid"] = data.payer.openid
        now = self._sim.config.clock.now()
        return self._sim.state.create_payment(
            merchant.mchid,
            out_trade_no=data.out_trade_no,
            amount=data.amount.total,
            currency=data.amount.currency,
            subject=data.description,
            method=kind,
            notify_url=data.notify_url,
            return_url=None,
            expires_at=data.time_expire or now + _DEFAULT_TTL,
            protocol="wechatpay",
            details=details,
        )

    async def _query(self, request: Request) -> Response:
        def action(merchant: wire.WechatMerchant, _body: bytes) -> tuple[int, wire.JsonNode]:
            if request.query_params.get("mchid") != merchant.mchid:
                raise GatewayError("PARAM_ERROR", "mchid must be the signing merchant's", 400)
            payment = self._payment(merchant, str(request.path_params["out_trade_no"]))
            return 200, wire.transaction(payment, self._sim.state.refunded_amount(payment))

        return await self._handle(request, Operation.QUERY, action)

    async def _close(self, request: Request) -> Response:
        def action(merchant: wire.WechatMerchant, body: bytes) -> tuple[int, None]:
            if wire.parse(wire.CloseIn, body).mchid != merchant.mchid:
                raise GatewayError("PARAM_ERROR", "mchid must be the signing merchant's", 400)
            payment = self._payment(merchant, str(request.path_params["out_trade_no"]))
            self._sim.state.close_payment(merchant.mchid, payment.out_trade_no)
            return 204, None

        return await self._handle(request, Operation.CLOSE, action)

    async def _refund(self, request: Request) -> Response:
        def action(merchant: wire.WechatMerchant, body: bytes) -> tuple[int, wire.JsonNode]:
            data = wire.parse(wire.RefundIn, body)
            if data.out_trade_no:
                payment = self._payment(merchant, data.out_trade_no)
            elif data.transaction_id:
                payment = self._sim.state.by_trade_no(data.transaction_id)
                if payment.app_id != merchant.mchid:
                    raise GatewayError("RESOURCE_NOT_EXISTS", "订单不存在", 404)
            else:
                raise GatewayError("PARAM_ERROR", "out_trade_no or transaction_id is required")
            if data.amount.total != payment.amount:
                raise GatewayError("PARAM_ERROR", "amount.total is not the order's total", 400)
            refund, new = self._sim.state.create_refund(
                merchant.mchid,
                out_trade_no=payment.out_trade_no,
                out_refund_no=data.out_refund_no,
                amount=data.amount.refund,
                currency=data.amount.currency,
                reason=data.reason,
                notify_url=data.notify_url,
            )
            if new:
                self._sim.start_refund(refund)
            fee = self._sim.config.fee_returned(refund.amount)
            return 200, wire.refund_object(payment, refund, fee_returned=fee)

        return await self._handle(request, Operation.REFUND, action)

    async def _query_refund(self, request: Request) -> Response:
        def action(merchant: wire.WechatMerchant, _body: bytes) -> tuple[int, wire.JsonNode]:
            no = str(request.path_params["out_refund_no"])
            refund = self._sim.state.refunds.get((merchant.mchid, no))
            if refund is None:
                raise GatewayError("RESOURCE_NOT_EXISTS", "退款单不存在", 404)
            payment = self._sim.state.get_payment(merchant.mchid, refund.out_trade_no)
            fee = self._sim.config.fee_returned(refund.amount)
            return 200, wire.refund_object(payment, refund, fee_returned=fee)

        return await self._handle(request, Operation.REFUND_QUERY, action)

    def _payment(self, merchant: wire.WechatMerchant, out_trade_no: str) -> SimPayment:
        payment = self._sim.state.get_payment(merchant.mchid, out_trade_no)
        if payment.protocol != "wechatpay":
            raise GatewayError("ORDER_NOT_EXIST", "订单不存在", 404)
        return payment
