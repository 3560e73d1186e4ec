"""Signed asynchronous notifications to merchants, re-delivered until acknowledged.

What a notification looks like, how it is signed and what counts as its ACK depend on the
protocol the trade was opened through: a :class:`NotificationFormat` per protocol (the
sandbox one is here; Alipay's and WeChat Pay's live beside their gateways). Whatever the
format, a notification not acknowledged (a timeout and a connection failure included)
is retried with exponential backoff up to ``notify_max_attempts``. The body is fixed
when the state changes (so every retry and duplicate carries the same ``notify_id``);
header signatures are made afresh on every attempt. Deliveries run as background tasks;
:meth:`Notifier.drain` waits for them, and every attempt is appended to
:attr:`Notifier.deliveries` (the latest :data:`DELIVERY_LOG_SIZE`).

The sandbox format is accepted only by ``HTTP 200`` with the JSON body
``{"code": "SUCCESS"}``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from tuition.simulator.config import SimulatorConfig
from tuition.simulator.faults import FaultPlan
from tuition.simulator.records import wire_time
from tuition.simulator.signing import NotificationSigner
from tuition.simulator.state import GatewayEvent

# How many delivery attempts the simulator keeps for /_control/deliveries and tests.
DELIVERY_LOG_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    notify_id: str
    event: str
    url: str
    copy: int  # 0 for the original, 1.. for injected duplicates
    attempt: int  # 1-based within its copy; 0 for a dropped notification
    waited: float  # seconds slept just before this attempt (backoff or injected delay)
    accepted: bool
    status_code: int | None = None
    error: str | None = None
    dropped: bool = False
    tampered: bool = False
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class NotificationBody:
    signed: bytes
    # The same notification with its amount changed after signing (fault injection).
    tamper: Callable[[], bytes]


class NotificationFormat(Protocol):
    """One protocol's notifications: body, signature headers and what counts as an ACK."""

    def body(self, event: GatewayEvent, notify_id: str) -> NotificationBody | None:
        """The body to send, or None when this protocol does not notify ``event``."""
        ...

    def headers(self, body: bytes, timestamp: int) -> dict[str, str]: ...

    def acknowledged(self, response: httpx.Response) -> bool: ...


@dataclass(frozen=True, slots=True)
class _Notification:
    notify_id: str
    event: str
    url: str
    format: NotificationFormat
    signed_body: bytes
    sent_body: bytes  # differs from signed_body only when tampering was injected
    delay: float
    extra_copies: int
    concurrent: bool

    @property
    def tampered(self) -> bool:
        return self.sent_body != self.signed_body


def notification_body(
    event: GatewayEvent, notify_id: str, sent_at: str | None
) -> dict[str, object]:
    """The JSON body: payment fields, overlaid with the refund's for ``refund.*`` events."""
    payment = event.payment
    body: dict[str, object] = {
        "app_id": payment.app_id,
        "event": event.name,
        "out_trade_no": payment.out_trade_no,
        "trade_no": payment.trade_no,
        "status": str(payment.status),
        "amount": payment.amount,
        "currency": payment.currency,
        "paid_at": wire_time(payment.paid_at),
        "notify_id": notify_id,
        "sent_at": sent_at,
    }
    if event.refund is not None:
        refund = event.refund
        body.update(
            status=str(refund.status),
            amount=refund.amount,
            payment_amount=payment.amount,
            out_refund_no=refund.out_refund_no,
            refund_no=refund.refund_no,
            refunded_at=wire_time(refund.refunded_at),
        )
    return body


def _encode(body: dict[str, object]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _tamper(body: dict[str, object]) -> bytes:
    amount = body["amount"]
    assert isinstance(amount, int)
    return _encode({**body, "amount": amount + 1})


def _acknowledged(response: httpx.Response) -> bool:
    if response.status_code != 200:
        return False
    try:
        data = response.json()
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("code") == "SUCCESS"


class SandboxFormat:
    """The plain sandbox protocol: JSON body, ``Sandbox-*`` signature headers."""

    def __init__(self, signer: NotificationSigner, config: SimulatorConfig) -> None:
        self._signer = signer
        self._config = config

    def body(self, event: GatewayEvent, notify_id: str) -> NotificationBody | None:
        if event.name == "refund.abnormal":
            return None  # the sandbox protocol has no such state: it stays processing
        body = notification_body(event, notify_id, wire_time(self._config.clock.now()))
        return NotificationBody(_encode(body), lambda: _tamper(body))

    def headers(self, body: bytes, timestamp: int) -> dict[str, str]:
        return {**self._signer.headers(body, timestamp), "Content-Type": "application/json"}

    def acknowledged(self, response: httpx.Response) -> bool:
        return _acknowledged(response)


class Notifier:
    def __init__(
        self, config: SimulatorConfig, signer: NotificationSigner, faults: FaultPlan
    ) -> None:
        self._config = config
        self._faults = faults
        # By SimPayment.protocol; the simulator adds the other protocols' formats.
        self.formats: dict[str, NotificationFormat] = {"sandbox": SandboxFormat(signer, config)}
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self.deliveries: deque[DeliveryAttempt] = deque(maxlen=DELIVERY_LOG_SIZE)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` in the background, tracked by :meth:`drain`."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until no delivery (or anything else spawned) is pending, even new ones."""
        while self._tasks:
            results = await asyncio.gather(*self._tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def submit(self, event: GatewayEvent, url: str) -> None:
        """Snapshot ``event`` now, apply the notification faults, deliver in the background."""
        notify_id = f"N{secrets.token_hex(12).upper()}"
        fmt = self.formats[event.payment.protocol]
        body = fmt.body(event, notify_id)
        if body is None:
            return
        signed = body.signed
        if self._faults.take_drop():
            self.deliveries.append(
                DeliveryAttempt(
                    notify_id, event.name, url, 0, 0, 0.0, False, dropped=True, body=signed
                )
            )
            return
        notification = _Notification(
            notify_id=notify_id,
            event=event.name,
            url=url,
            format=fmt,
            signed_body=signed,
            sent_body=body.tamper() if self._faults.take_tamper() else signed,
            delay=self._faults.notification_delay,
            extra_copies=self._faults.duplicates,
            concurrent=self._faults.concurrent_duplicates,
        )
        self.spawn(self._deliver(notification))

    async def _deliver(self, notification: _Notification) -> None:
        if notification.delay > 0:
            await self._config.sleep(notification.delay)
        # The injected delay is recorded on the original's first attempt only.
        waits = [notification.delay] + [0.0] * notification.extra_copies
        if notification.concurrent:
            await asyncio.gather(
                *(self._deliver_copy(notification, c, w) for c, w in enumerate(waits))
            )
        else:
            for copy, waited in enumerate(waits):
                await self._deliver_copy(notification, copy, waited)

    async def _deliver_copy(self, notification: _Notification, copy: int, waited: float) -> None:
        for attempt in range(1, self._config.notify_max_attempts + 1):
            if attempt > 1:
                waited = self._config.backoff(attempt)
                await self._config.sleep(waited)
            if await self._attempt(notification, copy, attempt, waited):
                return

    async def _attempt(
        self, notification: _Notification, copy: int, attempt: int, waited: float
    ) -> bool:
        timestamp = int(self._config.clock.now().timestamp())
        headers = notification.format.headers(notification.signed_body, timestamp)
        status_code: int | None = None
        error: str | None = None
        accepted = False
        try:
            response = await self._http().post(
                notification.url, content=notification.sent_body, headers=headers
            )
        except Exception as exc:  # timeouts, refused connections, a crashing receiver: retry
            error = f"{type(exc).__name__}: {exc}"
        else:
            status_code = response.status_code
            accepted = notification.format.acknowledged(response)
            if not accepted:
                error = response.text[:200]
        self.deliveries.append(
            DeliveryAttempt(
                notify_id=notification.notify_id,
                event=notification.event,
                url=notification.url,
                copy=copy,
                attempt=attempt,
                waited=waited,
                accepted=accepted,
                status_code=status_code,
                error=error,
                tampered=notification.tampered,
                body=notification.sent_body,
            )
        )
        return accepted

    def _http(self) -> httpx.AsyncClient:
        # Created lazily so it binds to the running event loop, not the constructing one.
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._config.notify_transport,
                timeout=self._config.notify_timeout_seconds,
            )
        return self._client
