"""The ``unionpay`` channel: UnionPay online payments (全渠道), version 5.1.0, signMethod 01.

Endpoints under the gateway URL (``https://gateway.95516.com`` in production):

=================================  ===================================================
``/gateway/api/frontTransReq.do``  front consumption: the buyer's browser POSTs the
                                   signed form (:class:`NextActionType.FORM_POST`)
``/gateway/api/appTransReq.do``    back consumption for the app (手机控件支付): we POST
                                   the order and hand its ``tn`` to the app
``/gateway/api/backTransReq.do``   refund (``txnType=04``) and consumption undo
                                   (消费撤销, ``txnType=31``)
``/gateway/api/queryTrans.do``     transaction status query (``txnType=00``)
file URL                           the day's bill file (``txnType=76``)
=================================  ===================================================

Every request is a URL-encoded form signed as :mod:`.signatures` describes; every answer
must verify against UnionPay's certificate chain before it is read. ``respCode`` is
classified by :mod:`.codes`: ``00`` passes, ``03``/``04``/``05`` and ``02``/``06`` (or a
timeout, a 5xx, an unreadable or unverifiable answer, even an unsigned refusal) are
:class:`ChannelTimeout`, ``34``
is "no such transaction", anything else :class:`UnionPayRefused`. A refund or undo
answered ``00`` is only *accepted*: it is pending until its notification or a query.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from datetime import date
from decimal import Decimal
from typing import ParamSpec, TypeVar
from urllib.parse import urlencode

import httpx

from tuition.channels.base import (
    Ack,
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
    SupportsBills,
    SupportsStatements,
    VerifiedNotification,
)
from tuition.channels.unionpay import notifications, signatures, transformers
from tuition.channels.unionpay.codes import CodeClass, UnknownWireStatus, classify
from tuition.channels.unionpay.config import UnionPayConfig
from tuition.clock import Clock, SystemClock
from tuition.domain.errors import ChannelError, ValidationFailed
from tuition.domain.payments import PaymentStatus, RefundStatus
from tuition.domain.reconciliation import Bill

FRONT_PATH = "/gateway/api/frontTransReq.do"
APP_PATH = "/gateway/api/appTransReq.do"
BACK_PATH = "/gateway/api/backTransReq.do"
QUERY_PATH = "/gateway/api/queryTrans.do"
# UnionPay's daily cut-off: an undo is accepted only on the payment's own day before it.
UNDO_CUTOFF_HOUR = 23
_FORM = "application/x-www-form-urlencoded;charset=UTF-8"

_P = ParamSpec("_P")
_T = TypeVar("_T")


class UnionPayRefused(ChannelError):
    """UnionPay answered and refused; ``code`` is ``unionpay_<respCode>``."""

    def __init__(self, resp_code: str, message: str) -> None:
        super().__init__(f"UnionPay refused ({resp_code}): {message}", code=f"unionpay_{resp_code}")
        self.resp_code = resp_code


class TransactionNotFound(PaymentNotFound):
    """``respCode=34`` to a query: UnionPay has no such transaction."""


class UnionPayChannel:
    slug: str = "unionpay"
    methods: frozenset[str] = frozenset(transformers.CHANNEL_TYPES)
    supports_partial_refund: bool = True

    def __init__(
        self,
        config: UnionPayConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.app_id = config.mer_id
        self.fee_rate: Decimal = config.fee_rate
        self.refund_fee_policy: RefundFeePolicy = config.refund_fee_policy
        self._config = config
        self._key = config.private_key()
        self._cert_id = config.cert_id
        self._root, self._middle = config.trust_anchors()
        self._clock = clock or SystemClock()
        self._http = httpx.AsyncClient(transport=transport, timeout=config.timeout_seconds)

    def __repr__(self) -> str:
        return f"UnionPayChannel(mer_id={self.app_id!r}, gateway={self._config.gateway_url!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- payments ---------------------------------------------------------------------

    async def create_payment(self, request: PaymentRequest) -> CreatedPayment:
        """Front consumption (``page``, ``wap``): the signed form the buyer's browser POSTs
        to UnionPay. Nothing is sent from here; UnionPay first hears of the order when the
        buyer arrives, so a query before that answers 34 (no such transaction).

        Back consumption (``app``): the order is sent now and UnionPay's ``tn`` (受理订单号)
        is handed to the app, whose UnionPay SDK takes the buyer through paying.
        """
        if request.method not in self.methods:
            raise ValidationFailed(
                f"UnionPay offers {', '.join(sorted(self.methods))}, not {request.method!r}",
                code="payment_method_unsupported",
                param="method",
            )
        _check_money(request.amount, request.currency)
        fields = transformers.consume_fields(
            payment_id=request.payment_id,
            amount=request.amount,
            method=request.method,
            expires_at=request.expires_at,
            back_url=self._config.notify_url or request.notify_url,
            front_url=request.return_url,
        )
        if request.method == "app":
            fields.pop("frontUrl", None)
        params = self.signed(transformers.CONSUME, "01", transformers.B2C_GATEWAY, fields)
        if request.method == "app":
            answer = await self._call(APP_PATH, params, "app consumption")
            tn = answer.get("tn")
            if not tn:
                raise ChannelTimeout("UnionPay accepted the order without a tn")
            return CreatedPayment(NextAction(NextActionType.APP_PARAMS, params={"tn": tn}))
        url = self._config.gateway_url + FRONT_PATH
        return CreatedPayment(NextAction(NextActionType.FORM_POST, url=url, params=params))

    async def query_payment(self, payment_id: str) -> PaymentState:
        answer = await self._query(payment_id)
        return _parse(transformers.payment_state, answer, payment_id, self._clock.now())

    async def close_payment(self, payment_id: str) -> CloseOutcome:
        """UnionPay has no close for a consumption: the order lapses at ``payTimeout``
        (the attempt's expiry). Asked whether it was paid, an unpaid one counts as closed."""
        try:
            state = await self.query_payment(payment_id)
        except TransactionNotFound:
            return CloseOutcome.NOT_FOUND
        if state.status is PaymentStatus.SUCCEEDED:
            return CloseOutcome.ALREADY_PAID
        return CloseOutcome.CLOSED

    # -- refunds ----------------------------------------------------------------------

    async def refund(self, request: RefundRequest) -> RefundState:
        """A consumption undo when the whole payment goes back on its own day before the
        cut-off (UnionPay then charges no fee), else a refund; both are accepted now and
        settled by their notification or a query."""
        if self.undo_applies(request):
            return await self.cancel(request)
        return await self._back(transformers.REFUND, request)

    def undo_applies(self, request: RefundRequest) -> bool:
        now = self._clock.now().astimezone(transformers.BEIJING)
        paid_day = transformers.parse_wire_time(transformers.txn_time(request.payment_id)).date()
        return (
            request.amount == request.payment_amount
            and paid_day == now.date()
            and now.hour < UNDO_CUTOFF_HOUR
        )

    async def cancel(self, request: RefundRequest) -> RefundState:
        """消费撤销 (``txnType=31``): the whole payment, on its own day only."""
        if request.amount != request.payment_amount:
            raise ValidationFailed("an undo returns the whole payment", param="amount")
        return await self._back(transformers.CONSUME_UNDO, request)

    async def query_refund(self, refund_id: str, payment_id: str) -> RefundState:
        try:
            answer = await self._query(refund_id)
        except TransactionNotFound as exc:
            raise RefundNotFound(f"UnionPay has no refund {refund_id}") from exc
        return _parse(transformers.refund_state, answer, refund_id, payment_id)

    async def _back(self, txn_type: str, request: RefundRequest) -> RefundState:
        _check_money(request.amount, request.currency)
        qry_id = request.channel_trade_no
        if not qry_id:
            qry_id = (await self.query_payment(request.payment_id)).channel_trade_no
        if not qry_id:
            raise ChannelError(
                f"UnionPay gave no queryId for {request.payment_id}", code="unionpay_no_query_id"
            )
        fields = transformers.refund_fields(
            refund_id=request.refund_id,
            orig_qry_id=qry_id,
            amount=request.amount,
            back_url=self._config.notify_url or request.notify_url,
        )
        fields["reqReserved"] = transformers.reserved(request.payment_id)
        params = self.signed(txn_type, "00", transformers.B2C_GATEWAY, fields)
        answer = await self._call(BACK_PATH, params, "undo" if txn_type == "31" else "refund")
        return RefundState(
            refund_id=request.refund_id,
            payment_id=request.payment_id,
            status=RefundStatus.PENDING,
            amount=request.amount,
            currency=request.currency,
            channel_refund_no=answer.get("queryId") or None,
            raw_status=f"respCode={answer.get('respCode')}",
        )

    # -- bills ------------------------------------------------------------------------

    async def download_statement(self, day: date) -> bytes:
        """The day's bill file (``txnType=76``, ``fileType=00``): the zip UnionPay serves."""
        fields = {"settleDate": transformers.settle_date(day), "fileType": "00"}
        fields["txnTime"] = transformers.wire_time(self._clock.now())
        params = self.signed(transformers.FILE_TRANSFER, "01", "000000", fields)
        answer = await self._call(self._config.file_url, params, "file transfer", absolute=True)
        from tuition.channels.unionpay import bills

        try:
            deflated = base64.b64decode(answer.get("fileContent", ""), validate=True)
        except ValueError as exc:
            raise ChannelTimeout(
                "unreadable UnionPay fileContent", code="channel_bad_response"
            ) from exc
        return bills.decode_file_content(deflated)

    async def fetch_bill(self, day: date) -> Bill:
        """The day's bill, parsed (:mod:`tuition.channels.unionpay.bills`)."""
        from tuition.channels.unionpay import bills

        return await bills.fetch_bill(self, day)

    # -- notifications ----------------------------------------------------------------

    def verify_notification(self, headers: Mapping[str, str], body: bytes) -> VerifiedNotification:
        return notifications.verify_notification(
            body,
            root=self._root,
            middle=self._middle,
            expected_cn=self._config.certificate_cn,
            now=self._clock.now(),
        )

    def ack(self, accepted: bool) -> Ack:
        return notifications.ack(accepted)

    # -- protocol ---------------------------------------------------------------------

    def signed(
        self, txn_type: str, sub_type: str, biz_type: str, fields: Mapping[str, str]
    ) -> dict[str, str]:
        params = transformers.common(self.app_id, self._cert_id, txn_type, sub_type, biz_type)
        params.update(fields)
        params["signature"] = signatures.sign(params, self._key)
        return params

    async def _query(self, our_id: str) -> dict[str, str]:
        fields = transformers.query_fields(our_id)
        params = self.signed(transformers.QUERY, "00", "000000", fields)
        try:
            return await self._call(QUERY_PATH, params, "query")
        except _NotFound as exc:
            raise TransactionNotFound(f"UnionPay has no transaction {our_id}", code="34") from exc

    async def _call(
        self, path: str, params: Mapping[str, str], what: str, *, absolute: bool = False
    ) -> dict[str, str]:
        url = path if absolute else self._config.gateway_url + path
        request = self._http.build_request(
            "POST", url, content=urlencode(params).encode("ascii"), headers={"Content-Type": _FORM}
        )
        try:
            response = await self._http.send(request)
        except httpx.TimeoutException as exc:
            raise ChannelTimeout(f"UnionPay timed out on {what}") from exc
        except httpx.RequestError as exc:
            raise ChannelTimeout(f"UnionPay unreachable on {what}: {type(exc).__name__}") from exc
        if response.status_code != 200:
            if 400 <= response.status_code < 500:
                raise ChannelError(
                    f"UnionPay answered HTTP {response.status_code} to {what}",
                    code=f"http_{response.status_code}",
                )
            raise ChannelTimeout(f"UnionPay answered HTTP {response.status_code} to {what}")
        try:
            answer = transformers.parse_response(response.content.decode("utf-8"))
        except ValueError as exc:
            raise ChannelTimeout(
                f"unreadable UnionPay answer to {what}", code="channel_bad_response"
            ) from exc
        code = answer.get("respCode", "")
        try:
            signatures.verify(
                answer,
                root=self._root,
                middle=self._middle,
                expected_cn=self._config.certificate_cn,
                now=self._clock.now(),
            )
        except signatures.SignatureRefused as exc:
            # Even UnionPay's unsigned "bad message" answers (respCode 1x) are not taken
            # as a refusal: a refund believed refused but applied would be paid twice.
            # The outcome stays unknown; a query (signed) decides it.
            raise ChannelTimeout(
                f"UnionPay's answer to {what} is not trusted ({exc.reason}); "
                f"it said respCode={code[:2]!r}",
                code="unionpay_response_unverified",
            ) from None
        message = answer.get("respMsg", "")
        try:
            kind = classify(code)
        except UnknownWireStatus:
            raise ChannelTimeout(
                f"UnionPay answered {what} with unknown respCode {code!r}"
            ) from None
        match kind:
            case CodeClass.SUCCESS:
                return answer
            case CodeClass.IN_DOUBT | CodeClass.NOT_DONE:
                raise ChannelTimeout(f"UnionPay could not finish {what}: {message}", code=code)
            case CodeClass.NOT_FOUND if path == QUERY_PATH:
                raise _NotFound(code)
            case CodeClass.NOT_FOUND:
                raise UnionPayRefused(code, message)
            case CodeClass.FAILED | CodeClass.WAITING_BUYER:
                raise UnionPayRefused(code, message)


class _NotFound(Exception):
    """respCode 34, turned into the caller's own not-found error."""


def _parse(parse: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Read a verified answer; a malformed one leaves the outcome unknown (ChannelTimeout)."""
    try:
        return parse(*args, **kwargs)
    except UnknownWireStatus:
        raise
    except ValueError as exc:
        raise ChannelTimeout(
            f"unreadable UnionPay answer: {exc}", code="channel_bad_response"
        ) from exc


def _check_money(amount: int, currency: str) -> None:
    transformers.require_cny(currency)
    if type(amount) is not int or amount <= 0:
        raise ValidationFailed("amount must be a positive integer of fen", param="amount")


def _conforms(channel: UnionPayChannel) -> tuple[Channel, SupportsStatements, SupportsBills]:
    # Never called: makes mypy prove UnionPayChannel satisfies the protocols.
    return channel, channel, channel
