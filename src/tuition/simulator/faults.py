"""Fault injection: make the simulated gateway fail the way real ones do.

API faults are queued per operation and consumed one per call:

- ``error``: the gateway answers ``503 {"code": "SYSTEM_ERROR"}``.
- ``timeout``: the gateway holds the response for ``timeout_hang_seconds`` (so a real
  client over a real network times out) and then answers ``504`` with the header
  ``Sandbox-Fault: timeout``. :class:`SimulatorTransport` turns that header into an
  ``httpx.ReadTimeout``, so in-process tests see a genuine client-side timeout without
  waiting; through a plain ``ASGITransport`` the 504 still reads as "outcome unknown".

With ``applied=True`` the gateway performs the operation before failing, as when a
response is lost after the gateway committed: the case recovery polling exists for.

Refund outcomes are queued too and taken one per new refund (:class:`RefundOutcome`):
``fail`` (refused or closed), ``hold`` (processing until the test settles it), ``delay``
(processing for some seconds, then success) and ``abnormal`` (WeChat Pay's ABNORMAL: the
money is out but stuck until settled). A lost answer is a ``timeout`` fault with
``applied=True`` on ``refund``.

Notification faults: a delay before the first attempt, extra copies of each notification
(sequential or concurrent), dropping the next N notifications, and tampering with the
next N (the amount is changed after signing).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import httpx
from starlette.responses import JSONResponse, Response

from tuition.simulator.config import SimulatorConfig

FAULT_HEADER = "Sandbox-Fault"


class Operation(StrEnum):
    CREATE = "create"
    QUERY = "query"
    CLOSE = "close"
    REFUND = "refund"
    REFUND_QUERY = "refund_query"
    TRANSFER = "transfer"  # a payout's transfer to a payee
    TRANSFER_QUERY = "transfer_query"


class FaultKind(StrEnum):
    ERROR = "error"
    TIMEOUT = "timeout"


class RefundOutcome(StrEnum):
    FAIL = "fail"
    HOLD = "hold"
    DELAY = "delay"
    ABNORMAL = "abnormal"


@dataclass(frozen=True, slots=True)
class RefundPlan:
    outcome: RefundOutcome
    seconds: float = 0.0  # how long a DELAY refund stays processing


@dataclass(frozen=True, slots=True)
class ApiFault:
    kind: FaultKind
    applied: bool = False


class FaultPlan:
    notification_delay: float
    duplicates: int  # extra copies of every notification
    concurrent_duplicates: bool
    drop_next: int
    tamper_next: int
    failing_refunds: int  # the next N refunds settle as REFUND_FAILED

    def __init__(self) -> None:
        self._api: dict[Operation, deque[ApiFault]] = {op: deque() for op in Operation}
        self._refunds: deque[RefundPlan] = deque()
        self.reset()

    def reset(self) -> None:
        for queue in self._api.values():
            queue.clear()
        self._refunds.clear()
        self.notification_delay = 0.0
        self.duplicates = 0
        self.concurrent_duplicates = False
        self.drop_next = 0
        self.tamper_next = 0
        self.failing_refunds = 0

    def fail_next(
        self,
        operation: Operation | str,
        count: int = 1,
        *,
        kind: FaultKind | str = FaultKind.ERROR,
        applied: bool = False,
    ) -> None:
        if count < 0:
            raise ValueError("count must be >= 0")
        fault = ApiFault(FaultKind(kind), applied)
        self._api[Operation(operation)].extend([fault] * count)

    def take_api_fault(self, operation: Operation) -> ApiFault | None:
        queue = self._api[operation]
        return queue.popleft() if queue else None

    def take_drop(self) -> bool:
        if self.drop_next > 0:
            self.drop_next -= 1
            return True
        return False

    def take_tamper(self) -> bool:
        if self.tamper_next > 0:
            self.tamper_next -= 1
            return True
        return False

    def take_refund_failure(self) -> bool:
        if self.failing_refunds > 0:
            self.failing_refunds -= 1
            return True
        return False

    def plan_refunds(
        self, outcome: RefundOutcome | str, count: int = 1, *, seconds: float = 0.0
    ) -> None:
        if count < 0:
            raise ValueError("count must be >= 0")
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._refunds.extend([RefundPlan(RefundOutcome(outcome), seconds)] * count)

    def take_refund_plan(self) -> RefundPlan | None:
        """The outcome planned for the next new refund (a plain failure counts too)."""
        if self._refunds:
            return self._refunds.popleft()
        if self.take_refund_failure():
            return RefundPlan(RefundOutcome.FAIL)
        return None

    def describe(self) -> dict[str, object]:
        return {
            "api": {str(op): [f.kind.value for f in q] for op, q in self._api.items() if q},
            "notification_delay": self.notification_delay,
            "duplicates": self.duplicates,
            "concurrent_duplicates": self.concurrent_duplicates,
            "drop_next": self.drop_next,
            "tamper_next": self.tamper_next,
            "failing_refunds": self.failing_refunds,
            "refunds": [{"outcome": p.outcome.value, "seconds": p.seconds} for p in self._refunds],
        }


async def with_faults(
    faults: FaultPlan,
    config: SimulatorConfig,
    operation: Operation,
    answer: Callable[[], Response],
) -> Response:
    """``answer()`` unless a fault is queued for ``operation``; every protocol's API uses it.

    ``answer`` renders refusals itself (in its protocol's format); an ``applied`` fault
    runs it and throws the answer away, as a gateway that committed but lost the reply.
    """
    fault = faults.take_api_fault(operation)
    if fault is None:
        return answer()
    if fault.applied:
        answer()
    if fault.kind is FaultKind.TIMEOUT:
        if config.timeout_hang_seconds > 0:
            await config.sleep(config.timeout_hang_seconds)
        return JSONResponse(
            {"code": "GATEWAY_TIMEOUT", "message": "simulated timeout"},
            status_code=504,
            headers={FAULT_HEADER: FaultKind.TIMEOUT.value},
        )
    return JSONResponse({"code": "SYSTEM_ERROR", "message": "simulated failure"}, 503)


class SimulatorTransport(httpx.AsyncBaseTransport):
    """An in-process transport to the simulator that turns timeout faults into timeouts."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if response.headers.get(FAULT_HEADER) == FaultKind.TIMEOUT:
            await response.aclose()
            raise httpx.ReadTimeout("simulated gateway timeout", request=request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
