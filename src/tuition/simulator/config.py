"""How a simulator instance is set up: merchants, keys, time, and notification delivery."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx

from tuition.clock import Clock, SystemClock
from tuition.domain.payments import channel_fee

SleepFn = Callable[[float], Awaitable[None]]

DEFAULT_APP_ID = "sandbox_app"
DEFAULT_SECRET = "sandbox_secret"


def _default_merchants() -> dict[str, str]:
    return {DEFAULT_APP_ID: DEFAULT_SECRET}


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything a :class:`~tuition.simulator.app.Simulator` needs; all fields have defaults.

    ``merchants`` maps app id to the shared HMAC secret. The RSA key comes from
    ``private_key_pem`` or ``private_key_pem_path``, else a fresh 2048-bit key is made.
    ``sleep`` is used for every wait the simulator makes (notification backoff and delay,
    refund settlement, simulated hangs), so tests can inject a fake one.
    """

    merchants: Mapping[str, str] = field(default_factory=_default_merchants, repr=False)
    # Used to build the buyer page links (pay_url, qr payload) handed to merchants.
    public_base_url: str = "http://sandbox.simulator"
    private_key_pem: bytes | None = field(default=None, repr=False)
    private_key_pem_path: Path | None = None
    # Sent as Sandbox-Serial; derived from the public key when not given.
    serial: str | None = None
    clock: Clock = field(default_factory=SystemClock)
    sleep: SleepFn = asyncio.sleep
    notify_transport: httpx.AsyncBaseTransport | None = None
    notify_timeout_seconds: float = 5.0
    # Re-delivery waits base, 2*base, 4*base, ... capped, until max_attempts in total.
    notify_backoff_base: float = 0.5
    notify_backoff_cap: float = 30.0
    notify_max_attempts: int = 8
    auth_max_skew_seconds: int = 300
    # Refunds answer REFUND_PROCESSING and settle in the background after this many seconds;
    # with auto_settle_refunds off they wait for Simulator.settle_refunds().
    refund_settle_seconds: float = 0.0
    auto_settle_refunds: bool = True
    # How long a "timeout" fault holds the response before answering 504; set it above the
    # client's timeout when the simulator is served over a real network.
    timeout_hang_seconds: float = 0.0
    control_enabled: bool = True
    # When set, a succeeded refund reports the service fee given back (refund x rate,
    # half-up): Alipay's refund_charge_info_list / refund_charge_amount, WeChat Pay's
    # amount.refund_fee. Unset, the answers leave it out, as most real contracts do.
    refund_fee_rate: Decimal | None = None

    def __post_init__(self) -> None:
        if not self.merchants:
            raise ValueError("the simulator needs at least one merchant (app id -> secret)")
        if self.notify_max_attempts < 1:
            raise ValueError("notify_max_attempts must be at least 1")
        if self.notify_backoff_base < 0 or self.notify_backoff_cap < self.notify_backoff_base:
            raise ValueError("need 0 <= notify_backoff_base <= notify_backoff_cap")
        if self.private_key_pem is not None and self.private_key_pem_path is not None:
            raise ValueError("give private_key_pem or private_key_pem_path, not both")
        if self.refund_fee_rate is not None and not Decimal(0) <= self.refund_fee_rate < 1:
            raise ValueError("refund_fee_rate must be in [0, 1)")

    def fee_returned(self, refund_amount: int) -> int | None:
        """The fee a refund of ``refund_amount`` gives back, or None if not reported."""
        if self.refund_fee_rate is None:
            return None
        return channel_fee(refund_amount, self.refund_fee_rate)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before delivery ``attempt`` (1-based); 0 before the first."""
        if attempt <= 1:
            return 0.0
        return float(min(self.notify_backoff_base * 2 ** (attempt - 2), self.notify_backoff_cap))
