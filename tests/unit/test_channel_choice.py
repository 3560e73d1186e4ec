"""Channel ranking with the seed's numbers, devices and the success-rate definition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tuition.domain.channel_choice import (
    BreakerState,
    Candidate,
    Device,
    Strategy,
    device_of,
    method_for,
    rank,
    success_rate,
)

A = Candidate("a", succeeded=90, finished=100, fee_rate=Decimal("0.02"), method="page")
B = Candidate("b", succeeded=85, finished=100, fee_rate=Decimal("0.01"), method="page")


def test_the_seeds_numbers_rank_differently_under_each_strategy() -> None:
    assert A.value(Strategy.SUCCESS_PER_FEE) == Decimal(45)
    assert B.value(Strategy.SUCCESS_PER_FEE) == Decimal(85)
    assert [c.channel for c in rank([A, B], Strategy.SUCCESS_PER_FEE)] == ["b", "a"]
    assert A.value(Strategy.EXPECTED_NET) == Decimal("0.882")
    assert B.value(Strategy.EXPECTED_NET) == Decimal("0.8415")
    assert [c.channel for c in rank([A, B], Strategy.EXPECTED_NET)] == ["a", "b"]


def test_ties_keep_the_configured_order_and_unknown_channels_are_tried() -> None:
    same = Candidate("c", 90, 100, Decimal("0.02"), "page")
    assert [c.channel for c in rank([same, A], Strategy.EXPECTED_NET)] == ["c", "a"]
    fresh = Candidate("new", 0, 0, Decimal("0.02"), "page")
    assert fresh.rate == Decimal(1)
    assert rank([A, fresh], Strategy.EXPECTED_NET)[0].channel == "new"


def test_open_attempts_are_neither_success_nor_failure() -> None:
    # 3 succeeded, 1 failed, 6 still open: 3 of 4 finished, not 3 of 10
    assert success_rate(3, 4) == Decimal("0.75")
    assert success_rate(0, 0) is None


def test_the_device_picks_a_method_the_channel_offers() -> None:
    assert device_of(None) is Device.DESKTOP
    assert device_of("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148") is Device.MOBILE
    assert device_of("Mozilla/5.0 (Linux; Android 14) MicroMessenger/8.0") is Device.WECHAT
    alipay, wechat = frozenset({"page", "wap", "qr"}), frozenset({"native", "jsapi", "h5"})
    assert method_for(alipay, Device.MOBILE) == "wap"
    assert method_for(wechat, Device.MOBILE) == "h5"
    assert method_for(wechat, Device.DESKTOP) == "native"
    assert method_for(alipay, Device.WECHAT) is None  # Alipay does not open in WeChat
    assert method_for(alipay, Device.DESKTOP, "qr") == "qr"
    assert method_for(wechat, Device.DESKTOP, "page") is None


def test_a_breaker_is_open_during_its_cool_down_then_half_open() -> None:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    state = BreakerState("a", 5, now + timedelta(seconds=300), "channel_error")
    assert state.state(now) == "open"
    assert state.state(now + timedelta(seconds=300)) == "half_open"
    assert BreakerState("a", 0, None, None).state(now) == "closed"
