"""The ``alipay`` channel: Alipay open-platform gateway, RSA2 in public-key mode.

Every call is a form POST of the common parameters plus a JSON ``biz_content`` to the
gateway, signed (SHA256withRSA, app private key) over the sorted ``k=v&...`` string of
all parameters except ``sign``. Page and WAP payments are not called at all: the buyer's
browser is sent to the gateway with the same signed parameters in the query string.

Responses look like ``{"alipay_trade_query_response": {...}, "sign": "..."}``; the
signature covers the exact text of the node, which is cut out of the body, never
re-serialised. Failures follow :mod:`tuition.channels.base`: a timeout, a connection
error, a 5xx, an unreadable or unverifiable answer, ``20000`` or ``ACQ.SYSTEM_ERROR`` is
:class:`ChannelTimeout`; any other ``code`` but ``10000`` is :class:`AlipayRefused`
carrying the ``sub_code``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import date
from decimal import Decimal
from typing import ParamSpec, TypeVar
from urllib.parse import urlencode

import httpx

from tuition.channels.alipay import app_pay, notifications, transformers
from tuition.channels.alipay.config import AlipayConfig, rsa_sign, rsa_verify
from tuition.channels.alipay.transformers import JsonObject, UnknownWireStatus
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
    TransferRequest,
    TransferState,
    VerifiedAgreementNotification,
    VerifiedNotification,
)
from tuition.clock import Clock, SystemClock
from tuition.domain.errors import ChannelError, ValidationFailed
from tuition.domain.payments import PaymentStatus, RefundStatus
from tuition.domain.reconciliation import Bill

SUCCESS_CODE = "10000"
# The gateway could not tell whether it applied the request: retry or query, never fail.
_UNKNOWN_OUTCOME_CODES = frozenset({"20000"})
_UNKNOWN_OUTCOME_SUB_CODES = frozenset(
    {"ACQ.SYSTEM_ERROR", "aop.ACQ.SYSTEM_ERROR", "isp.unknow-error", "isp.unknown-error"}
)
# Answers Alipay gives unsigned: it refused the call before any business processing.
_UNSIGNED_REFUSAL_CODES = frozenset({"20001", "40001", "40002", "40006"})
_FORM = "application/x-www-form-urlencoded;charset=utf-8"

_P = ParamSpec("_P")
_T = TypeVar("_T")


class AlipayRefused(ChannelError):
    """Alipay answered and refused; ``code`` is its ``sub_code`` (e.g. ``ACQ.TRADE_NOT_EXIST``)."""

    def __init__(self, code: str, message: str, gateway_code: str) -> None:
        super().__init__(f"Alipay refused ({code}): {message}", code=code)
        self.gateway_code = gateway_code


class TradeNotFound(PaymentNotFound, AlipayRefused):
    """``ACQ.TRADE_NOT_EXIST`` from a query: the one not-found signal, still a refusal."""


class AlipayChannel:
    slug: str = "alipay"
    # "app": App pay for the platform's own iOS / Android app (channels/alipay/app_pay.py).
    methods: frozenset[str] = frozenset({"page", "wap", "qr", "app"})
    supports_partial_refund: bool = True

    def __init__(
        self,
        config: AlipayConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.app_id = config.app_id
        self.fee_rate = config.fee_rate
        self.refund_fee_policy: RefundFeePolicy = config.refund_fee_policy
        self._config = config
        self._private_key = config.private_key()
        self._alipay_key = config.public_key()
        self._clock = clock or SystemClock()
        self._http = httpx.AsyncClient(transport=transport, timeout=config.timeout_seconds)

    def __repr__(self) -> str:
        return f"AlipayChannel(app_id={self.app_id!r}, gateway={self._config.gateway_url!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- payments ---------------------------------------------------------------------

    async def create_payment(self, request: PaymentRequest) -> CreatedPayment:
        if request.method not in self.methods:
            raise ValidationFailed(
                f"Alipay offers {', '.join(sorted(self.methods))}, not {request.method!r}",
                code="payment_method_unsupported",
                param="method",
            )
        _check_money(request.amount, request.currency)
        biz = transformers.payment_biz(request)
        notify_url = self._config.notify_url or request.notify_url
        if request.method == "qr":
            node = await self._call("alipay.trade.precreate", biz, notify_url=notify_url)
            qr_code = _parse(transformers.text_field, node, "qr_code")
            return CreatedPayment(NextAction(NextActionType.QR_CODE, qr_payload=qr_code))
        if request.method == "app":  # nothing is sent: the app SDK submits the string
            signed = self.signed_params(app_pay.METHOD, biz, notify_url=notify_url)
            params = {"order_string": app_pay.order_string(signed)}
            return CreatedPayment(NextAction(NextActionType.APP_PARAMS, params=params))
        method = f"alipay.trade.{request.method}.pay"
        params = self.signed_params(
            method, biz, notify_url=notify_url, return_url=request.return_url
        )
        url = f"{self._config.gateway_url}?{urlencode(params)}"
        return CreatedPayment(NextAction(NextActionType.REDIRECT, url=url))

    async def query_payment(self, payment_id: str) -> PaymentState:
        """``alipay.trade.query``; :class:`PaymentNotFound` for ``ACQ.TRADE_NOT_EXIST``."""
        try:
            node = await self._call("alipay.trade.query", {"out_trade_no": payment_id})
        except AlipayRefused as exc:
            if exc.code == "ACQ.TRADE_NOT_EXIST":
                raise TradeNotFound(exc.code, f"no trade {payment_id}", exc.gateway_code) from exc
            raise
        state = _parse(transformers.payment_state, node)
        if state.payment_id != payment_id:
            raise ChannelTimeout(f"Alipay answered a query for {payment_id} about another trade")
        return state

    async def close_payment(self, payment_id: str) -> CloseOutcome:
        try:
            await self._call("alipay.trade.close", {"out_trade_no": payment_id})
        except AlipayRefused as exc:
            if exc.code == "ACQ.TRADE_NOT_EXIST":
                return CloseOutcome.NOT_FOUND
            if exc.code != "ACQ.TRADE_STATUS_ERROR":
                raise
            # Only a WAIT_BUYER_PAY trade can be closed; ask which other state it is in
            # rather than assume "paid" (it may as well be closed already).
            state = await self.query_payment(payment_id)
            match state.status:
                case PaymentStatus.SUCCEEDED:
                    return CloseOutcome.ALREADY_PAID
                case PaymentStatus.CLOSED | PaymentStatus.FAILED:
                    return CloseOutcome.CLOSED
                case _:
                    raise
        return CloseOutcome.CLOSED

    # -- refunds ----------------------------------------------------------------------

    async def refund(self, request: RefundRequest) -> RefundState:
        """``alipay.trade.refund`` with our refund id as ``out_request_no``.

        Each partial refund is its own request number; repeating one is idempotent on
        Alipay's side, which is how a refund whose answer was lost is sent again. A
        refund Alipay refused applied nothing: retrying it (the refunds API's retry)
        makes a new refund under a new number. A refusal
        (``ACQ.REFUND_AMT_NOT_EQUAL_TOTAL`` for an over-refund,
        ``ACQ.SELLER_BALANCE_NOT_ENOUGH``, ...) raises :class:`AlipayRefused`.
        """
        _check_money(request.amount, request.currency)
        node = await self._call("alipay.trade.refund", transformers.refund_biz(request))
        state = _parse(transformers.refund_state, node, request)
        if state.status is RefundStatus.PENDING:
            # fund_change=N: a repeat of a refund already done, or one still in flight.
            try:
                return await self.query_refund(request.refund_id, request.payment_id)
            except (AlipayRefused, RefundNotFound, ChannelTimeout):
                return state
        return state

    async def query_refund(self, refund_id: str, payment_id: str) -> RefundState:
        """``alipay.trade.fastpay.refund.query``; :class:`RefundNotFound` if Alipay has none."""
        biz = transformers.refund_query_biz(refund_id, payment_id)
        node = await self._call("alipay.trade.fastpay.refund.query", biz)
        state = _parse(transformers.queried_refund_state, node, refund_id, payment_id)
        if state is None:
            raise RefundNotFound(f"Alipay has no refund {refund_id} on {payment_id}")
        return state

    async def download_statement(self, day: date) -> bytes:
        """The day's trade bill: a zip of CSV files, as Alipay serves it."""
        node = await self._call(
            "alipay.data.dataservice.bill.downloadurl.query", transformers.statement_biz(day)
        )
        url = _parse(transformers.text_field, node, "bill_download_url")
        response = await self._send(self._http.build_request("GET", url), "bill download")
        if response.status_code != 200:
            raise ChannelError(
                f"Alipay bill download answered HTTP {response.status_code}",
                code=f"http_{response.status_code}",
            )
        return response.content

    async def fetch_bill(self, day: date) -> Bill:
        """The day's bill, parsed (:mod:`tuition.channels.alipay.bills`)."""
        from tuition.channels.alipay import bills

        return await bills.fetch_bill(self, day)

    # -- transfers (payouts) ----------------------------------------------------------

    async def transfer(self, request: TransferRequest) -> TransferState:
        """``alipay.fund.trans.uni.transfer``; see :mod:`tuition.channels.alipay.transfers`."""
        from tuition.channels.alipay import transfers

        return await transfers.transfer(self._call, request)

    async def query_transfer(self, payout_id: str) -> TransferState | None:
        """``alipay.fund.trans.common.query``; ``None`` when Alipay has no such transfer."""
        from tuition.channels.alipay import transfers

        return await transfers.query_transfer(self._call, payout_id)

    # -- agreements (periodic deduction) ----------------------------------------------

    agreements_enabled: bool = True

    async def sign_agreement(self, request: AgreementSignRequest) -> NextAction:
        """The buyer's browser goes to ``alipay.user.agreement.page.sign`` (a page call)."""
        from tuition.channels.alipay import agreements

        url = agreements.sign_url(self._config.gateway_url, self.signed_params, request)
        return NextAction(NextActionType.REDIRECT, url=url)

    async def query_agreement(self, agreement_id: str) -> AgreementState | None:
        """``alipay.user.agreement.query``; None when Alipay has no such agreement."""
        from tuition.channels.alipay import agreements

        try:
            node = await self._call(
                "alipay.user.agreement.query", agreements.query_biz(agreement_id)
            )
        except AlipayRefused as exc:
            if exc.code in agreements.NOT_FOUND_CODES:
                return None
            raise
        return _parse(agreements.queried_state, node, agreement_id)

    async def charge_agreement(self, charge: AgreementCharge) -> PaymentState:
        """``alipay.trade.pay`` with the agreement; see :mod:`.agreements`."""
        from tuition.channels.alipay import agreements

        _check_money(charge.amount, charge.currency)
        notify_url = self._config.notify_url or charge.notify_url
        try:
            node = await self._call(
                "alipay.trade.pay", agreements.charge_biz(charge), notify_url=notify_url
            )
        except AlipayRefused as exc:
            if exc.gateway_code == "10003" or exc.code == "ACQ.TRADE_HAS_SUCCESS":
                # Still deducting, or a repeat of a trade already paid: the query decides.
                return await self.query_payment(charge.payment_id)
            raise
        return _parse(agreements.charged_state, node, charge)

    async def end_agreement(self, agreement_id: str, agreement_no: str) -> None:
        """``alipay.user.agreement.unsign``; an agreement already gone counts as ended."""
        from tuition.channels.alipay import agreements

        try:
            await self._call("alipay.user.agreement.unsign", {"agreement_no": agreement_no})
        except AlipayRefused as exc:
            if exc.code not in agreements.NOT_FOUND_CODES:
                raise

    def verify_agreement_notification(
        self, headers: Mapping[str, str], body: bytes
    ) -> VerifiedAgreementNotification:
        from tuition.channels.alipay import agreements

        return agreements.verify_notification(body, self._alipay_key)

    # -- notifications ----------------------------------------------------------------

    def verify_notification(self, headers: Mapping[str, str], body: bytes) -> VerifiedNotification:
        return notifications.verify_notification(body, self._alipay_key)

    def ack(self, accepted: bool) -> Ack:
        return notifications.ack(accepted)

    # -- protocol ---------------------------------------------------------------------

    def signed_params(
        self,
        method: str,
        biz: JsonObject,
        *,
        notify_url: str | None = None,
        return_url: str | None = None,
    ) -> dict[str, str]:
        """The common parameters for ``method`` plus ``biz_content``, signed."""
        params = {
            "app_id": self.app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": transformers.wire_time(self._clock.now()),
            "version": "1.0",
            "biz_content": transformers.biz_content(biz),
        }
        # Empty optional parameters are left out: Alipay drops them before verifying.
        if notify_url:
            params["notify_url"] = notify_url
        if return_url:
            params["return_url"] = return_url
        message = transformers.canonical_string(params).encode("utf-8")
        params["sign"] = rsa_sign(self._private_key, message)
        return params

    async def _call(
        self, method: str, biz: JsonObject, *, notify_url: str | None = None
    ) -> JsonObject:
        params = self.signed_params(method, biz, notify_url=notify_url)
        request = self._http.build_request(
            "POST",
            self._config.gateway_url,
            content=urlencode(params).encode("ascii"),
            headers={"Content-Type": _FORM},
        )
        response = await self._send(request, method)
        if response.status_code != 200:
            if 400 <= response.status_code < 500:
                raise ChannelError(
                    f"Alipay gateway answered HTTP {response.status_code} to {method}",
                    code=f"http_{response.status_code}",
                )
            raise ChannelTimeout(f"Alipay gateway answered HTTP {response.status_code} to {method}")
        node = self._verified_node(response.content, method)
        code = str(node.get("code", ""))
        if code == SUCCESS_CODE:
            return node
        sub_code = str(node.get("sub_code") or code or "unknown")
        message = str(node.get("sub_msg") or node.get("msg") or "")
        if code in _UNKNOWN_OUTCOME_CODES or sub_code in _UNKNOWN_OUTCOME_SUB_CODES:
            raise ChannelTimeout(f"Alipay could not complete {method}: {message}", code=sub_code)
        raise AlipayRefused(sub_code, message, code)

    async def _send(self, request: httpx.Request, what: str) -> httpx.Response:
        try:
            return await self._http.send(request)
        except httpx.TimeoutException as exc:
            raise ChannelTimeout(f"Alipay timed out on {what}") from exc
        except httpx.RequestError as exc:
            raise ChannelTimeout(f"Alipay unreachable on {what}: {type(exc).__name__}") from exc

    def _verified_node(self, body: bytes, method: str) -> JsonObject:
        """The response node, after its signature verified (or a recognised refusal)."""
        try:
            text = body.decode("utf-8")
            spans = transformers.top_level_spans(text)
            name = method.replace(".", "_") + "_response"
            if name not in spans:
                name = "error_response"
            start, end = spans[name]
            node = json.loads(text[start:end], parse_float=Decimal)
            sign_span = spans.get("sign")
            sign = json.loads(text[sign_span[0] : sign_span[1]]) if sign_span else None
        except (ValueError, KeyError) as exc:
            raise _unreadable(method, exc) from exc
        if not isinstance(node, dict):
            raise _unreadable(method, ValueError("response node is not an object"))
        if isinstance(sign, str) and rsa_verify(
            self._alipay_key, text[start:end].encode("utf-8"), sign
        ):
            return node
        code = str(node.get("code", ""))
        if sign is None and code in _UNSIGNED_REFUSAL_CODES:
            return node  # becomes an AlipayRefused; it can only fail the call, never pass it
        raise ChannelTimeout(
            f"Alipay's answer to {method} is {'unsigned' if sign is None else 'badly signed'}; "
            "check alipay_public_key",
            code="alipay_response_unverified",
        )


def _unreadable(method: str, exc: Exception) -> ChannelTimeout:
    return ChannelTimeout(
        f"unreadable Alipay answer to {method}: {type(exc).__name__}: {exc}",
        code="channel_bad_response",
    )


def _parse(parse: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Read a verified node; a malformed one leaves the outcome unknown (ChannelTimeout)."""
    try:
        return parse(*args, **kwargs)
    except UnknownWireStatus:
        raise
    except ValueError as exc:
        raise ChannelTimeout(
            f"unreadable Alipay answer: {exc}", code="channel_bad_response"
        ) from exc


def _check_money(amount: int, currency: str) -> None:
    transformers.require_cny(currency)
    if type(amount) is not int or amount <= 0:
        raise ValidationFailed("amount must be a positive integer of fen", param="amount")


def _conforms(
    channel: AlipayChannel,
) -> tuple[Channel, SupportsStatements, SupportsBills, SupportsAgreements]:
    # Never called: makes mypy prove AlipayChannel satisfies the protocols.
    return channel, channel, channel, channel
