"""Choosing a channel: success rate, fee and device, under one of two strategies. Pure.

The success rate of a channel is ``succeeded ÷ finished`` over its own attempts in a
rolling window, where *finished* means succeeded, failed or closed: an attempt still
``created`` or ``pending`` is open, neither a success nor a failure. The dashboard uses
the same definition (:func:`success_rate`).

Strategies (``TUITION_CHANNEL_STRATEGY``):

- ``success_per_fee``: the largest ``success rate ÷ fee rate`` (the seed's rule);
- ``expected_net``: the largest ``success rate x (1 - fee rate)``, what a payment is
  expected to bring in per unit.

They disagree: A at 0.90 and 2 %, B at 0.85 and 1 %: ``success_per_fee`` gives A 45 and
B 85 and picks B; ``expected_net`` gives A 0.882 and B 0.8415 and picks A. Dividing by
the fee rewards a cheap channel far beyond what it saves; the expected net weighs the
fee at its real size, which is why it is the default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class Strategy(StrEnum):
    SUCCESS_PER_FEE = "success_per_fee"
    EXPECTED_NET = "expected_net"


class Device(StrEnum):
    DESKTOP = "desktop"
    MOBILE = "mobile"
    WECHAT = "wechat"  # inside WeChat's own browser


# Methods in the order they suit each device; a channel offering none does not suit it.
_METHODS = {
    Device.DESKTOP: ("page", "qr", "native"),
    Device.MOBILE: ("wap", "h5", "page"),
    Device.WECHAT: ("jsapi",),
}

_MOBILE_MARKS = ("Mobile", "Android", "iPhone", "iPad")

FINISHED_STATUSES = ("succeeded", "failed", "closed")
"""The payment statuses a success rate counts; ``created`` and ``pending`` are open."""

UNKNOWN_RATE = Decimal(1)
"""The success rate of a channel with no finished attempt in the window: it is tried."""


def success_rate(succeeded: int, finished: int) -> Decimal | None:
    """``succeeded ÷ finished``; None with nothing finished. Open attempts count in neither."""
    if finished == 0:
        return None
    return Decimal(succeeded) / Decimal(finished)


def device_of(user_agent: str | None) -> Device:
    if not user_agent:
        return Device.DESKTOP
    if "MicroMessenger" in user_agent:
        return Device.WECHAT
    if any(mark in user_agent for mark in _MOBILE_MARKS):
        return Device.MOBILE
    return Device.DESKTOP


def method_for(methods: frozenset[str], device: Device, wanted: str | None = None) -> str | None:
    """The method to use on ``device`` (``wanted`` if given and offered), else None."""
    if wanted is not None:
        return wanted if wanted in methods else None
    return next((m for m in _METHODS[device] if m in methods), None)


@dataclass(frozen=True, slots=True)
class Candidate:
    channel: str
    succeeded: int
    finished: int
    fee_rate: Decimal
    method: str

    @property
    def rate(self) -> Decimal:
        found = success_rate(self.succeeded, self.finished)
        return UNKNOWN_RATE if found is None else found

    def value(self, strategy: Strategy) -> Decimal:
        if strategy is Strategy.EXPECTED_NET:
            return self.rate * (1 - self.fee_rate)
        if self.fee_rate == 0:
            return Decimal("Infinity")  # free: nothing divides better
        return self.rate / self.fee_rate


def rank(candidates: Sequence[Candidate], strategy: Strategy) -> list[Candidate]:
    """Best first; ties keep the given (configured) order."""
    order = {c.channel: n for n, c in enumerate(candidates)}
    return sorted(candidates, key=lambda c: (-c.value(strategy), order[c.channel]))


@dataclass(frozen=True, slots=True)
class Breaker:
    """When to skip a channel: after ``failures`` failed or timed-out calls in a row, for
    ``cooldown`` seconds; then it is tried again."""

    failures: int = 5
    cooldown_seconds: float = 300


@dataclass(frozen=True, slots=True)
class BreakerState:
    channel: str
    failures: int
    opened_until: datetime | None
    last_failure: str | None

    def is_open(self, now: datetime) -> bool:
        return self.opened_until is not None and now < self.opened_until

    def state(self, now: datetime) -> str:
        if self.is_open(now):
            return "open"
        return "half_open" if self.opened_until is not None else "closed"
