"""The ``wechatpay`` channel: WeChat Pay API v3 for a directly connected merchant.

Requests are JSON, signed with the merchant API certificate's key::

    Authorization: WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",signature="…",
                   timestamp="…",serial_no="…"
    signature = base64(SHA256withRSA("<METHOD>\\n<path?query>\\n<timestamp>\\n<nonce>\\n<body>\\n"))

Every 2xx answer must carry a valid ``Wechatpay-*`` signature (see
:mod:`.notifications`). Failures follow :mod:`tuition.channels.base`: a timeout, a
connection error, a 5xx, an unreadable or unverifiable 2xx is :class:`ChannelTimeout`;
a 4xx ``{"code", "message"}`` is :class:`WechatPayRefused` with WeChat Pay's code.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from datetime import date
from typing import ParamSpec, TypeVar
from urllib.parse import quote, urlencode

import httpx

from tuition.channels.alipay.config import load_rsa_public_key, rsa_sign
from tuition.channels.base import (
    Ack,
    AgreementCharge,
    AgreementSignRequest,
    AgreementState,
    Channel,
    ChannelTimeout,
    CloseOutcome,
    CreatedPayment,
    NextAction,
    NextActionType,
    PaymentNotFound,
    PaymentRequest,
    PaymentState,
    RefundFeePolicy,
    RefundNotFound,
    RefundRequest,
    RefundState,
    SupportsAgreements,
    SupportsBills,
    SupportsStatements,
    SupportsTransfers,
    TransferRequest,
    TransferState,
    TransferStatus,
    VerifiedAgreementNotification,
    VerifiedNotification,
)
from tuition.channels.wechatpay import app_pay, notifications, papay, transfers, transformers
from tuition.channels.wechatpay.config import WechatPayConfig
from tuition.channels.wechatpay.notifications import (
    SignatureRejected,
    SignatureVerifier,
    unix_seconds,
)
from tuition.channels.wechatpay.oauth import WebOAuth
from tuition.channels.wechatpay.transformers import JsonObject, UnknownWireStatus
from tuition.clock import Clock, SystemClock
from tuition.domain.errors import ChannelError, ValidationFailed
from tuition.domain.payments import PaymentStatus
from tuition.domain.reconciliation import Bill

AUTH_SCHEME = "WECHATPAY2-SHA256-RSA2048"
USER_AGENT = "tuition (WeChat Pay API v3; +https://github.com/tuition)"

_P = ParamSpec("_P")
_T = TypeVar("_T")


class WechatPayRefused(ChannelError):
    """WeChat Pay answered 4xx; ``code`` is its code (e.g. ``ORDER_NOT_EXIST``).

    ``verified`` tells whether the answer carried a valid WeChat Pay signature: only a
    verified refusal may drive a decision such as "the gateway never saw this order".
    """

    def __init__(self, code: str, message: str, status_code: int, *, verified: bool) -> None:
        super().__init__(f"WeChat Pay refused ({code}): {message}", code=code)
        self.status_code = status_code
        self.verified = verified


class OrderNotFound(PaymentNotFound, WechatPayRefused):
    """A signed ``ORDER_NOT_EXIST`` from a query: the one not-found signal, still a refusal."""


class WechatPayChannel:
    slug: str = "wechatpay"
    methods: frozenset[str] = frozenset({"native", "jsapi", "h5"})
    supports_partial_refund: bool = True

    def __init__(
        self,
        config: WechatPayConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        transfer_scene: transfers.TransferScene | None = None,
        web_oauth: WebOAuth | None = None,
    ) -> None:
        # The merchant id is the account both payment and refund notifications name.
        self.app_id = config.mchid
        # How a page inside WeChat learns the buyer's openid for JSAPI (channels/wechatpay/
        # oauth.py); None when the official account's secret is not configured.
        self.web_oauth = web_oauth
        # The platform's own app and mini-program pay too when their appids are set.
        self.methods = self.methods | frozenset(
            method
            for method, appid in (
                ("app", config.app_appid),
                ("miniprogram", config.miniprogram_appid),
            )
            if appid
        )
        self.fee_rate = config.fee_rate
        self.refund_fee_policy: RefundFeePolicy = config.refund_fee_policy
        self._config = config
        self._key = config.private_key()
        self._clock = clock or SystemClock()
        self._verifier = SignatureVerifier(config.verification_keys(), self._clock)
        self._transfer_scene = transfer_scene or transfers.TransferScene()
        self._http = httpx.AsyncClient(
            base_url=config.base_url, transport=transport, timeout=config.timeout_seconds
        )

    def __repr__(self) -> str:
        return f"WechatPayChannel(mchid={self.app_id!r}, appid={self._config.appid!r})"

    async def aclose(self) -> None:
        await self._http.aclose()
        if self.web_oauth is not None:
            await self.web_oauth.aclose()

    # -- payments ---------------------------------------------------------------------

    async def create_payment(self, request: PaymentRequest) -> CreatedPayment:
        if request.method not in self.methods:
            raise ValidationFailed(
                f"WeChat Pay offers {', '.join(sorted(self.methods))}, not {request.method!r}",
                code="payment_method_unsupported",
                param="method",
            )
        _check_money(request.amount, request.currency)
        body = transformers.payment_body(
            request,
            appid=self._appid(request.method),
            mchid=self._config.mchid,
            notify_url=self._config.notify_url or request.notify_url,
        )
        answer = await self._call("POST", transformers.ENDPOINTS[request.method], body)
        match request.method:
            case "native":
                code_url = _parse(transformers.text_field, answer, "code_url")
                action = NextAction(NextActionType.QR_CODE, qr_payload=code_url)
            case "jsapi":
                prepay_id = _parse(transformers.text_field, answer, "prepay_id")
                action = NextAction(NextActionType.APP_PARAMS, params=self.jsapi_params(prepay_id))
            case "app" | "miniprogram":
                prepay_id = _parse(transformers.text_field, answer, "prepay_id")
                action = NextAction(
                    NextActionType.APP_PARAMS, params=self._client_params(request.method, prepay_id)
                )
            case _:
                h5_url = _parse(transformers.text_field, answer, "h5_url")
                url = transformers.h5_redirect(h5_url, request.return_url)
                action = NextAction(NextActionType.REDIRECT, url=url)
        return CreatedPayment(action)

    def jsapi_params(self, prepay_id: str) -> dict[str, str]:
        """What the page hands to ``WeixinJSBridge`` / ``wx.requestPayment``."""
        timestamp = str(unix_seconds(self._clock.now()))
        nonce = secrets.token_hex(16).upper()
        package = f"prepay_id={prepay_id}"
        message = f"{self._config.appid}\n{timestamp}\n{nonce}\n{package}\n"
        return {
            "appId": self._config.appid,
            "timeStamp": timestamp,
            "nonceStr": nonce,
            "package": package,
            "signType": "RSA",
            "paySign": rsa_sign(self._key, message.encode("utf-8")),
        }

    def _appid(self, method: str) -> str:
        """The appid a method pays under: the official account's, the app's or the
        mini-program's (each bound to this merchant)."""
        match method:
            case "app" if self._config.app_appid:
                return self._config.app_appid
            case "miniprogram" if self._config.miniprogram_appid:
                return self._config.miniprogram_appid
            case _:
                return self._config.appid

    def _client_params(self, method: str, prepay_id: str) -> dict[str, str]:
        """The signed fields the app's OpenSDK or the mini-program's requestPayment takes."""
        timestamp = str(unix_seconds(self._clock.now()))
        nonce = secrets.token_hex(16).upper()
        if method == "app":
            return app_pay.app_params(
                appid=self._appid(method),
                mchid=self._config.mchid,
                prepay_id=prepay_id,
                key=self._key,
                timestamp=timestamp,
                nonce=nonce,
            )
        return app_pay.request_payment_params(
            appid=self._appid(method),
            prepay_id=prepay_id,
            key=self._key,
            timestamp=timestamp,
            nonce=nonce,
        )

    async def query_payment(self, payment_id: str) -> PaymentState:
        """The order as WeChat Pay has it; a signed ``ORDER_NOT_EXIST`` is
        :class:`PaymentNotFound` (an unsigned one proves nothing and stays a refusal)."""
        path = f"/v3/pay/transactions/out-trade-no/{_segment(payment_id)}"
        try:
            answer = await self._call("GET", f"{path}?{urlencode({'mchid': self._config.mchid})}")
        except WechatPayRefused as exc:
            if exc.code == "ORDER_NOT_EXIST" and exc.verified:
                raise OrderNotFound(
                    exc.code, f"no order {payment_id}", exc.status_code, verified=True
                ) from exc
            raise
        state = _parse(transformers.payment_state, answer)
        if state.payment_id != payment_id or answer.get("mchid") != self._config.mchid:
            raise ChannelTimeout(
                f"WeChat Pay answered a query for {payment_id} about another order"
            )
        return state

    async def close_payment(self, payment_id: str) -> CloseOutcome:
        path = f"/v3/pay/transactions/out-trade-no/{_segment(payment_id)}/close"
        try:
            await self._call("POST", path, {"mchid": self._config.mchid})
            return CloseOutcome.CLOSED
        except WechatPayRefused as exc:
            refusal = exc
        # The close error codes vary (ORDER_CLOSED, ORDERPAID, ...); the order's own state
        # is the reliable answer to "why could it not be closed".
        try:
            state = await self.query_payment(payment_id)
        except PaymentNotFound:
            return CloseOutcome.NOT_FOUND
        match state.status:
            case PaymentStatus.SUCCEEDED:
                return CloseOutcome.ALREADY_PAID
            case PaymentStatus.CLOSED | PaymentStatus.FAILED:
                return CloseOutcome.CLOSED
            case _:
                raise refusal

    # -- refunds ----------------------------------------------------------------------

    async def refund(self, request: RefundRequest) -> RefundState:
        """``POST /v3/refund/domestic/refunds``; our refund id is ``out_refund_no``.

        The answer is usually PROCESSING (pending); the end comes as a ``REFUND.*``
        notification or from :meth:`query_refund`. A refusal (e.g. an over-refund, a
        balance too low) raises :class:`WechatPayRefused`.
        """
        _check_money(request.amount, request.currency)
        body = transformers.refund_body(
            request, notify_url=self._config.notify_url or request.notify_url
        )
        answer = await self._call("POST", "/v3/refund/domestic/refunds", body)
        return self._refund_state(answer, request.refund_id)

    async def query_refund(self, refund_id: str, payment_id: str) -> RefundState:
        """``GET /v3/refund/domestic/refunds/{out_refund_no}``.

        A signed ``RESOURCE_NOT_EXISTS`` is :class:`RefundNotFound`: WeChat Pay never
        received the refund, so submitting it again with the same out_refund_no is safe.
        """
        try:
            answer = await self._call("GET", f"/v3/refund/domestic/refunds/{_segment(refund_id)}")
        except WechatPayRefused as exc:
            if exc.code == "RESOURCE_NOT_EXISTS" and exc.verified:
                raise RefundNotFound(f"WeChat Pay has no refund {refund_id}") from exc
            raise
        state = self._refund_state(answer, refund_id)
        if state.payment_id != payment_id:
            raise ChannelTimeout(f"WeChat Pay reports refund {refund_id} on another order")
        return state

    def _refund_state(self, answer: JsonObject, refund_id: str) -> RefundState:
        state = _parse(transformers.refund_state, answer)
        if state.refund_id != refund_id:
            raise ChannelTimeout(f"WeChat Pay answered about another refund than {refund_id}")
        return state

    async def download_statement(self, day: date) -> bytes:
        """The day's trade bill (all trades) as WeChat Pay's CSV-like text, hash-checked."""
        query = urlencode({"bill_date": day.isoformat(), "bill_type": "ALL"})
        answer = await self._call("GET", f"/v3/bill/tradebill?{query}")
        url = httpx.URL(_parse(transformers.text_field, answer, "download_url"))
        if url.host != httpx.URL(self._config.base_url).host:
            # Our Authorization header goes with the download; never to another host.
            raise ChannelTimeout(f"WeChat Pay's bill download_url points at {url.host!r}")
        request = self._signed_request("GET", str(url), None)
        response = await self._send(request, "bill download")
        if response.status_code != 200:
            raise ChannelError(
                f"WeChat Pay bill download answered HTTP {response.status_code}",
                code=f"http_{response.status_code}",
            )
        expected = str(answer.get("hash_value", "")).lower()
        # The file itself is not signed; the signed answer's SHA1 vouches for it.
        actual = hashlib.sha1(response.content, usedforsecurity=False).hexdigest()
        if answer.get("hash_type") != "SHA1" or not hmac.compare_digest(expected, actual):
            raise ChannelError("WeChat Pay bill does not match its hash", code="bill_hash_mismatch")
        return response.content

    async def fetch_bill(self, day: date) -> Bill:
        """The day's bill, parsed (:mod:`tuition.channels.wechatpay.bills`)."""
        from tuition.channels.wechatpay import bills

        return await bills.fetch_bill(self, day)

    # -- transfers to payees (payouts) ------------------------------------------------

    async def transfer(self, request: TransferRequest) -> TransferState:
        """Create the payout's transfer bill (``out_bill_no`` = the payout id).

        A refusal is not taken at its word: the bill is asked for, and only when WeChat
        Pay has none (nothing was made) does the payout fail, with the refusal's code.
        """
        _check_money(request.amount, request.currency)
        name = self._encrypted(request.name)
        try:
            body = transfers.bill_body(
                request,
                appid=self._config.appid,
                scene=self._transfer_scene,
                encrypted_name=name,
            )
        except ValueError as exc:
            return TransferState(
                request.payout_id,
                TransferStatus.FAILED,
                failure_code="payee_name_unencryptable",
                failure_message=f"{exc}; configure the WeChat Pay public key",
            )
        try:
            answer = await self._call("POST", transfers.BILLS_PATH, body)
        except WechatPayRefused as exc:
            if not exc.verified or exc.code in ("FREQUENCY_LIMITED", "SYSTEM_ERROR"):
                raise ChannelTimeout(f"WeChat Pay did not take the transfer: {exc}") from exc
            made = await self.query_transfer(request.payout_id)
            if made is not None:
                return made
            return TransferState(
                request.payout_id,
                TransferStatus.FAILED,
                failure_code=exc.code,
                failure_message=exc.message,
            )
        return _parse(transfers.bill_state, answer, request.payout_id)

    async def query_transfer(self, payout_id: str) -> TransferState | None:
        """The payout's bill as WeChat Pay has it; ``None`` on a signed ``NOT_FOUND``."""
        try:
            answer = await self._call("GET", transfers.query_path(_segment(payout_id)))
        except WechatPayRefused as exc:
            if exc.code in transfers.NOT_FOUND_CODES and exc.verified:
                return None
            raise ChannelTimeout(f"WeChat Pay could not answer the bill query: {exc}") from exc
        return _parse(transfers.bill_state, answer, payout_id)

    def _encrypted(self, name: str) -> str | None:
        """The payee's name sealed with the WeChat Pay public key (whose id goes in
        ``Wechatpay-Serial``); None without that key or without a name."""
        pem = self._config.wechatpay_public_key
        if pem is None or not name:
            return None
        key = load_rsa_public_key(pem, setting="wechatpay.wechatpay_public_key")
        return transfers.encrypt_sensitive(key, name)

    # -- agreements (委托代扣 / papay) ----------------------------------------------------

    @property
    def agreements_enabled(self) -> bool:
        """Only with a 委托代扣 plan configured (``TUITION_WECHATPAY_PAPAY_PLAN_ID``)."""
        return self._config.papay_plan_id is not None

    def _plan_id(self) -> int:
        plan_id = self._config.papay_plan_id
        if plan_id is None:
            raise ValidationFailed(
                "WeChat Pay contract deduction needs TUITION_WECHATPAY_PAPAY_PLAN_ID",
                code="agreements_unsupported",
                param="channel",
            )
        return plan_id

    async def sign_agreement(self, request: AgreementSignRequest) -> NextAction:
        """``pre-entrust-sign``: the buyer opens ``redirect_url`` (the sign QR code)."""
        body = papay.sign_body(request, appid=self._config.appid, plan_id=self._plan_id())
        answer = await self._call("POST", papay.PRE_SIGN, body)
        url = _parse(transformers.text_field, answer, "redirect_url")
        return NextAction(NextActionType.REDIRECT, url=url)

    async def query_agreement(self, agreement_id: str) -> AgreementState | None:
        path = papay.contract_path(self._plan_id(), _segment(agreement_id))
        try:
            answer = await self._call("GET", path)
        except WechatPayRefused as exc:
            if exc.code in ("RESOURCE_NOT_EXISTS", "CONTRACT_NOT_EXIST") and exc.verified:
                return None
            raise
        return _parse(papay.contract_state, answer, agreement_id)

    async def charge_agreement(self, charge: AgreementCharge) -> PaymentState:
        """预约扣费, then ``transactions/apply``: accepted means pending (see :mod:`.papay`)."""
        _check_money(charge.amount, charge.currency)
        appid = self._config.appid
        schedule = f"/v3/papay/pay/schedules/contract-id/{_segment(charge.agreement_no)}/schedule"
        await self._call(
            "POST", schedule, papay.schedule_body(charge, appid=appid, plan_id=self._plan_id())
        )
        notify_url = self._config.notify_url or charge.notify_url
        body = papay.apply_body(charge, appid=appid, notify_url=notify_url)
        answer = await self._call("POST", papay.APPLY, body)
        return _parse(papay.accepted_state, answer, charge)

    async def end_agreement(self, agreement_id: str, agreement_no: str) -> None:
        path = papay.contract_path(self._plan_id(), _segment(agreement_id)) + "/terminate"
        await self._call("POST", path, {"contract_termination_remark": "subscription ended"})

    def verify_agreement_notification(
        self, headers: Mapping[str, str], body: bytes
    ) -> VerifiedAgreementNotification:
        return notifications.verify_agreement_notification(
            headers,
            body,
            verifier=self._verifier,
            apiv3_key=self._config.apiv3_key,
            mchid=self._config.mchid,
            appid=self._config.appid,
        )

    # -- notifications ----------------------------------------------------------------

    def verify_notification(self, headers: Mapping[str, str], body: bytes) -> VerifiedNotification:
        return notifications.verify_notification(
            headers,
            body,
            verifier=self._verifier,
            apiv3_key=self._config.apiv3_key,
            appid=frozenset(
                a
                for a in (
                    self._config.appid,
                    self._config.app_appid,
                    self._config.miniprogram_appid,
                )
                if a
            ),
        )

    def ack(self, accepted: bool) -> Ack:
        return notifications.ack(accepted)

    # -- protocol ---------------------------------------------------------------------

    def authorization(self, method: str, target: str, body: bytes) -> str:
        """The ``Authorization`` header for ``method target`` (path and query) with ``body``."""
        timestamp = unix_seconds(self._clock.now())
        nonce = secrets.token_hex(16).upper()
        message = f"{method}\n{target}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"
        signature = rsa_sign(self._key, message)
        return (
            f'{AUTH_SCHEME} mchid="{self._config.mchid}",nonce_str="{nonce}",'
            f'signature="{signature}",timestamp="{timestamp}",'
            f'serial_no="{self._config.merchant_serial_no}"'
        )

    def _signed_request(self, method: str, url: str, body: JsonObject | None) -> httpx.Request:
        content = b"" if body is None else transformers.encode(body)
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._config.wechatpay_public_key_id:
            headers["Wechatpay-Serial"] = self._config.wechatpay_public_key_id
        request = self._http.build_request(method, url, content=content, headers=headers)
        target = request.url.raw_path.decode("ascii")
        request.headers["Authorization"] = self.authorization(method, target, content)
        return request

    async def _call(self, method: str, path: str, body: JsonObject | None = None) -> JsonObject:
        response = await self._send(self._signed_request(method, path, body), f"{method} {path}")
        status = response.status_code
        if status >= 500 or status < 200 or 300 <= status < 400:
            error = transformers.error_of(response.content)
            raise ChannelTimeout(
                f"WeChat Pay answered HTTP {status} to {method} {path}",
                code=error[0] if error else "channel_timeout",
            )
        verified = self._verified(response)
        if status >= 400:
            code, message = transformers.error_of(response.content) or (f"HTTP_{status}", "")
            raise WechatPayRefused(code, message, status, verified=verified)
        if not verified:
            raise ChannelTimeout(
                f"WeChat Pay's answer to {method} {path} is unsigned",
                code="wechatpay_response_unverified",
            )
        if status == 204 or not response.content:
            return {}
        return _parse(transformers.decode, response.content)

    def _verified(self, response: httpx.Response) -> bool:
        """True if signed and valid, False if unsigned; a bad signature is never passed on."""
        if "wechatpay-signature" not in response.headers:
            return False
        try:
            self._verifier.verify(response.headers, response.content)
        except SignatureRejected as exc:
            raise ChannelTimeout(
                f"WeChat Pay's answer failed verification: {exc}",
                code="wechatpay_response_unverified",
            ) from None
        return True

    async def _send(self, request: httpx.Request, what: str) -> httpx.Response:
        try:
            return await self._http.send(request)
        except httpx.TimeoutException as exc:
            raise ChannelTimeout(f"WeChat Pay timed out on {what}") from exc
        except httpx.RequestError as exc:
            raise ChannelTimeout(f"WeChat Pay unreachable on {what}: {type(exc).__name__}") from exc


def _parse(parse: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Read a verified answer; a malformed one leaves the outcome unknown (ChannelTimeout)."""
    try:
        return parse(*args, **kwargs)
    except UnknownWireStatus:
        raise
    except ValueError as exc:
        raise ChannelTimeout(
            f"unreadable WeChat Pay answer: {exc}", code="channel_bad_response"
        ) from exc


def _segment(value: str) -> str:
    return quote(value, safe="")


def _check_money(amount: int, currency: str) -> None:
    transformers.require_cny(currency)
    if type(amount) is not int or amount <= 0:
        raise ValidationFailed("amount must be a positive integer of fen", param="amount")


def _conforms(
    channel: WechatPayChannel,
) -> tuple[Channel, SupportsStatements, SupportsBills, SupportsTransfers, SupportsAgreements]:
    # Never called: makes mypy prove WechatPayChannel satisfies the protocols.
    return channel, channel, channel, channel, channel
