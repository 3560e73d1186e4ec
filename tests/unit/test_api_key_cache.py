from __future__ import annotations

from datetime import UTC, datetime

from tuition.container import ApiKeyCache
from tuition.store.access import ApiKeyRecord


class Ticker:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _record(n: int) -> ApiKeyRecord:
    return ApiKeyRecord(
        f"key_{n}", "k", "test", "sk_test_x", datetime(2026, 1, 1, tzinfo=UTC), None
    )


def test_a_cached_key_is_trusted_only_for_its_ttl() -> None:
    now = Ticker()
    cache = ApiKeyCache(5.0, now=now)
    cache.put("sk_test_a", _record(1))
    assert cache.get("sk_test_a") == _record(1)
    now.t += 4.9
    assert cache.get("sk_test_a") == _record(1)
    now.t += 0.2
    assert cache.get("sk_test_a") is None


def test_the_cache_is_bounded_and_drops_the_oldest_key() -> None:
    cache = ApiKeyCache(60.0, size=2, now=Ticker())
    for n in range(3):
        cache.put(f"sk_test_{n}", _record(n))
    assert cache.get("sk_test_0") is None
    assert cache.get("sk_test_2") == _record(2)


def test_a_zero_ttl_disables_the_cache() -> None:
    cache = ApiKeyCache(0.0, now=Ticker())
    cache.put("sk_test_a", _record(1))
    assert cache.get("sk_test_a") is None
