"""The ``sandbox`` channel: Tuition's client for the plain sandbox gateway protocol.

Requests are JSON, authenticated with an HMAC-SHA256 ``Authorization`` header::

    Authorization: SANDBOX-HMAC-SHA256 app_id="…",timestamp="<unix>",nonce="…",signature="<hex>"
    signature = hex(HMAC-SHA256(secret,
                                "<METHOD>\\n<path?query>\\n<timestamp>\\n<nonce>\\n<body>\\n"))

Failures follow :mod:`tuition.channels.base`: no answer, a timeout, a 5xx or an
unreadable 2xx is :class:`ChannelTimeout` (the gateway may have acted); a 4xx with the
gateway's ``{"code", "message"}`` is :class:`GatewayRefused` (a ``ChannelError`` whose
``code`` is the gateway's code, e.g. ``REFUND_AMOUNT_EXCEEDED``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import ParamSpec, TypeVar
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from tuition.channels.base import (
    Ack,
    Channel,
    ChannelTimeout,
    CloseOutcome,
    CreatedPayment,
    PaymentNotFound,
    PaymentRequest,
    PaymentState,
    RefundFeePolicy,
    RefundNotFound,
    RefundRequest,
    RefundState,
    VerifiedNotification,
)
from tuition.channels.sandbox import transformers
from tuition.channels.sandbox.notifications import NotificationVerifier, load_public_key
from tuition.channels.sandbox.transformers import UnknownWireStatus
from tuition.clock import Clock, SystemClock
from tuition.domain.errors import ChannelError, InvalidRequest
from tuition.domain.payments import PaymentStatus

AUTH_SCHEME = "SANDBOX-HMAC-SHA256"

_P = ParamSpec("_P")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    base_url: str
    app_id: str
    secret: str = field(repr=False)
    gateway_public_key_pem: str
    gateway_serial: str
    fee_rate: Decimal = Decimal("0.006")
    timeout_seconds: float = 10.0
    # The sandbox plays whichever rule a test needs; by default the real gateways' one.
    refund_fee_policy: RefundFeePolicy = RefundFeePolicy.PRO_RATA


class GatewayRefused(ChannelError):
    """The gateway answered 4xx; ``code`` is its business code, ``status_code`` the HTTP one."""

    def __init__(self, code: str, message: str, status_code: int) -> None:
        super().__init__(f"sandbox gateway refused ({code}): {message}", code=code)
        self.status_code = status_code


class TradeNotFound(PaymentNotFound, GatewayRefused):
    """``TRADE_NOT_EXIST`` from a query: the one not-found signal, still a refusal."""


def sign_request(
    secret: str, app_id: str, method: str, target: str, body: bytes, timestamp: int, nonce: str
) -> str:
    """The ``Authorization`` header value for one request."""
    message = f"{method.upper()}\n{target}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"
    signature = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return (
        f'{AUTH_SCHEME} app_id="{app_id}",timestamp="{timestamp}",'
        f'nonce="{nonce}",signature="{signature}"'
    )


class SandboxChannel:
    slug: str = "sandbox"
    methods: frozenset[str] = frozenset({"page", "qr"})
    supports_partial_refund: bool = True

    def __init__(
        self,
        config: SandboxConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.app_id = config.app_id
        self.fee_rate = config.fee_rate
        self.refund_fee_policy: RefundFeePolicy = RefundFeePolicy(config.refund_fee_policy)
        self._secret = config.secret
        self._clock = clock or SystemClock()
        self._verifier = NotificationVerifier(
            load_public_key(config.gateway_public_key_pem), config.gateway_serial, self._clock
        )
        self._http = httpx.AsyncClient(
            base_url=config.base_url, transport=transport, timeout=config.timeout_seconds
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- payments ---------------------------------------------------------------------

    async def create_payment(self, request: PaymentRequest) -> CreatedPayment:
        if request.method not in self.methods:
            raise InvalidRequest(
                f"the sandbox channel has no method {request.method!r}; "
                f"use one of {', '.join(sorted(self.methods))}",
                code="payment_method_unsupported",
                param="method",
            )
        body = await self._call("POST", "/v1/payments", transformers.payment_request_body(request))
        return _read(transformers.created_payment, body, request.method)

    async def query_payment(self, payment_id: str) -> PaymentState:
        """The trade as the gateway has it; :class:`PaymentNotFound` if it has none."""
        try:
            body = await self._call("GET", f"/v1/payments/{_segment(payment_id)}")
        except GatewayRefused as exc:
            if exc.code == "TRADE_NOT_EXIST":
                raise TradeNotFound(exc.code, f"no trade {payment_id}", exc.status_code) from exc
            raise
        return _read(transformers.payment_state, body)

    async def close_payment(self, payment_id: str) -> CloseOutcome:
        try:
            body = await self._call("POST", f"/v1/payments/{_segment(payment_id)}/close")
        except GatewayRefused as exc:
            if exc.code == "TRADE_ALREADY_PAID":
                return CloseOutcome.ALREADY_PAID
            if exc.code == "TRADE_NOT_EXIST":
                return CloseOutcome.NOT_FOUND
            raise
        state = _read(transformers.payment_state, body)
        match state.status:
            case PaymentStatus.SUCCEEDED:
                return CloseOutcome.ALREADY_PAID
            case PaymentStatus.CLOSED | PaymentStatus.FAILED:
                # Either way the buyer can no longer pay it, which is what closing is for.
                return CloseOutcome.CLOSED
            case _:
                raise ChannelError(
                    f"sandbox gateway left {payment_id} {state.raw_status} after close",
                    code="channel_close_incomplete",
                )

    # -- refunds ----------------------------------------------------------------------

    async def refund(self, request: RefundRequest) -> RefundState:
        body = await self._call(
            "POST",
            f"/v1/payments/{_segment(request.payment_id)}/refunds",
            transformers.refund_request_body(request),
        )
        return _read(transformers.refund_state, body)

    async def query_refund(self, refund_id: str, payment_id: str) -> RefundState:
        """The refund as the gateway has it; :class:`RefundNotFound` if it has none."""
        try:
            body = await self._call(
                "GET", f"/v1/payments/{_segment(payment_id)}/refunds/{_segment(refund_id)}"
            )
        except GatewayRefused as exc:
            if exc.code == "REFUND_NOT_EXIST":
                raise RefundNotFound(f"the sandbox gateway has no refund {refund_id}") from exc
            raise
        state = _read(transformers.refund_state, body)
        if (state.refund_id, state.payment_id) != (refund_id, payment_id):
            raise ChannelTimeout(
                f"the sandbox gateway answered about another refund than {refund_id}"
            )
        return state

    # -- notifications ----------------------------------------------------------------

    def verify_notification(self, headers: Mapping[str, str], body: bytes) -> VerifiedNotification:
        return self._verifier.verify(headers, body)

    def ack(self, accepted: bool) -> Ack:
        if accepted:
            payload: dict[str, str] = {"code": "SUCCESS"}
            return Ack(200, json.dumps(payload).encode(), "application/json")
        # Any non-SUCCESS answer makes the gateway re-deliver, which is what we want for a
        # notification we could not accept (a transient failure may clear on retry).
        payload = {"code": "FAIL", "message": "notification rejected"}
        return Ack(400, json.dumps(payload).encode(), "application/json")

    # -- transport --------------------------------------------------------------------

    async def _call(self, method: str, path: str, body: bytes | None = None) -> bytes:
        content = body if body is not None else b""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        request = self._http.build_request(method, path, content=content, headers=headers)
        request.headers["Authorization"] = sign_request(
            self._secret,
            self.app_id,
            method,
            request.url.raw_path.decode("ascii"),
            content,
            int(self._clock.now().timestamp()),
            secrets.token_hex(16),
        )
        try:
            response = await self._http.send(request)
        except httpx.TimeoutException as exc:
            raise ChannelTimeout(f"sandbox gateway timed out on {method} {path}") from exc
        except httpx.RequestError as exc:
            raise ChannelTimeout(
                f"sandbox gateway unreachable on {method} {path}: {type(exc).__name__}"
            ) from exc
        if 400 <= response.status_code < 500:
            refusal = transformers.error_of(response.content)
            if refusal is None:
                raise GatewayRefused(
                    f"HTTP_{response.status_code}", response.text[:200], response.status_code
                )
            raise GatewayRefused(refusal.code, refusal.message, response.status_code)
        if not 200 <= response.status_code < 300:
            raise ChannelTimeout(
                f"sandbox gateway answered HTTP {response.status_code} on {method} {path}"
            )
        return response.content


def _read(parse: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Parse a 2xx body; an unreadable one means the outcome is unknown (ChannelTimeout)."""
    try:
        return parse(*args, **kwargs)
    except UnknownWireStatus:
        raise
    except ValueError as exc:  # pydantic.ValidationError, invalid JSON or a missing field
        detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise ChannelTimeout(
            f"unreadable sandbox gateway response: {detail}", code="channel_bad_response"
        ) from exc


def _segment(value: str) -> str:
    return quote(value, safe="")


def _conforms(channel: SandboxChannel) -> Channel:
    # Never called: makes mypy prove that SandboxChannel satisfies the Channel protocol.
    return channel
