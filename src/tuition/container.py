"""The composed services a process runs on, shared by the API, the pages, the worker
and the CLI (built in app.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from tuition.channels.registry import ChannelRegistry
from tuition.clock import Clock
from tuition.config import Settings
from tuition.domain.channel_choice import Breaker, Strategy
from tuition.domain.earnings import HoldRule
from tuition.domain.modes import MODES, Mode
from tuition.services.api_keys import hash_key
from tuition.store.access import ApiKeyRecord, watch_key_changes
from tuition.store.uow import UnitOfWork

if TYPE_CHECKING:
    from tuition.services.channel_choice import ChoicePolicy
    from tuition.services.partners import RateSource
    from tuition.services.payments import PaymentDeps
    from tuition.services.payouts import PayoutDeps
    from tuition.services.refunds import RefundDeps

# How long an authenticated API key is trusted without reading it again. A key revoked
# by another process (``tuition keys revoke``, another API worker) is refused by every
# process within this many seconds; one revoked through this process, at once.
API_KEY_CACHE_SECONDS = 5.0
_API_KEY_CACHE_SIZE = 1024


class ApiKeyCache:
    """Recently authenticated keys, by hash, so a request needs no read of ``api_keys``.

    Only successful authentications are kept (an unknown or revoked key is read every
    time), for ``ttl`` seconds of monotonic time. Revoking a key through the watched
    engine empties the cache (store/access.py ``watch_key_changes``: no listener on every
    statement).
    """

    def __init__(
        self,
        ttl: float = API_KEY_CACHE_SECONDS,
        *,
        size: int = _API_KEY_CACHE_SIZE,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._size = size
        self._now = now
        self._entries: dict[str, tuple[float, ApiKeyRecord]] = {}

    def get(self, secret: str) -> ApiKeyRecord | None:
        key = hash_key(secret)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._now():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, secret: str, record: ApiKeyRecord) -> None:
        if self._ttl <= 0:
            return
        if len(self._entries) >= self._size:
            self._entries.pop(next(iter(self._entries)))  # the oldest entry
        self._entries[hash_key(secret)] = (self._now() + self._ttl, record)

    def clear(self) -> None:
        self._entries.clear()

    def watch(self, engine: AsyncEngine) -> None:
        """Forget every key when a key is revoked through ``engine``."""
        watch_key_changes(engine, self.clear)


@dataclass(slots=True)
class Container:
    """One mode's services: its store (``engine``), its channels and its settings."""

    settings: Settings
    engine: AsyncEngine
    clock: Clock
    registry: ChannelRegistry
    api_keys: ApiKeyCache = field(default_factory=ApiKeyCache)
    mode: Mode = "live"

    def __post_init__(self) -> None:
        self.api_keys.watch(self.engine)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.engine)

    def payment_deps(self) -> PaymentDeps:
        from tuition.services.payments import PaymentDeps

        settings = self.settings
        return PaymentDeps(
            registry=self.registry,
            clock=self.clock,
            base_url=settings.base_url,
            mode=self.mode,
            recover_after=timedelta(seconds=settings.recover_after_seconds),
            coins=settings.coin_unit(),
            hold=HoldRule.of(
                settings.default_refund_policy().window_days, settings.payout_hold_days
            ),
            risk=settings.risk_thresholds(),
            breaker=Breaker(
                settings.channel_breaker_failures, settings.channel_breaker_cooldown_seconds
            ),
            fx_rates=self.rate_source(),
        )

    def payout_deps(self) -> PayoutDeps:
        from tuition.services.payouts import PayoutDeps

        return PayoutDeps(
            clock=self.clock,
            minimum=self.settings.payout_minimum,
            registry=self.registry,
            base_url=self.settings.base_url,
            mode=self.mode,
        )

    def choice_policy(self) -> ChoicePolicy:
        from tuition.services.channel_choice import ChoicePolicy

        return ChoicePolicy(
            strategy=Strategy(self.settings.channel_strategy),
            window=timedelta(hours=self.settings.channel_success_window_hours),
        )

    def rate_source(self) -> RateSource:
        """Where partner settlements take their exchange rates: a pair fixed by
        TUITION_FX_RATES (a contract's agreed rate), else the rates recorded through
        ``PUT /v1/fx_rates`` in force at the sale's time (docs/fx.md)."""
        from tuition.services.partners import FirstOf, FixedRates, StoredRates

        rates = {
            (pair[:3], pair[4:]): rate for pair, rate in sorted(self.settings.fx_rates.items())
        }
        return FirstOf((FixedRates(rates, source="setting:TUITION_FX_RATES"), StoredRates()))

    def refund_deps(self) -> RefundDeps:
        from tuition.services.refunds import RefundDeps

        return RefundDeps(
            payments=self.payment_deps(),
            default_policy=self.settings.default_refund_policy(),
        )


@dataclass(frozen=True, slots=True)
class Modes:
    """The live and the test container of a process.

    They share nothing but the clock: each has its own store, channels and key cache.
    An application built on one store for both (``create_app(test_engine=engine)``, as
    most tests do) has the same container twice; :meth:`distinct` lists it once.
    """

    live: Container
    test: Container

    def __getitem__(self, mode: Mode) -> Container:
        return self.live if mode == "live" else self.test

    def distinct(self) -> list[Container]:
        return [self.live] if self.test is self.live else [self.live, self.test]

    def __iter__(self) -> Iterator[tuple[Mode, Container]]:
        return iter((mode, self[mode]) for mode in MODES)
