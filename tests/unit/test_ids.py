from __future__ import annotations

import os
import re
import secrets
import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from tuition.domain import ids
from tuition.domain.ids import ALPHABET, Prefix, id_timestamp, is_valid_id, new_id


@pytest.fixture
def fresh_generator(monkeypatch: pytest.MonkeyPatch) -> ids._Generator:
    generator = ids._Generator()
    monkeypatch.setattr(ids, "_generator", generator)
    return generator


def _freeze_clock(monkeypatch: pytest.MonkeyPatch, *readings: int) -> None:
    values = iter(readings)
    monkeypatch.setattr(ids, "_now_ms", lambda: next(values))


def test_ids_have_the_prefix_and_26_crockford_characters() -> None:
    value = new_id(Prefix.ORDER)
    assert re.fullmatch(r"ord_[0-9A-HJKMNP-TV-Z]{26}", value)
    assert is_valid_id(value, "ord")


def test_ids_are_url_safe() -> None:
    for prefix in Prefix:
        value = new_id(prefix)
        assert quote(value, safe="") == value


def test_ids_are_sorted_in_creation_order_over_10000_generations() -> None:
    generated = [new_id(Prefix.PAYMENT) for _ in range(10_000)]
    assert sorted(generated) == generated
    assert len(set(generated)) == len(generated)


def test_ids_from_many_threads_are_unique() -> None:
    results: list[list[str]] = [[] for _ in range(8)]

    def mint(bucket: list[str]) -> None:
        bucket.extend(new_id(Prefix.EVENT) for _ in range(2_000))

    threads = [threading.Thread(target=mint, args=(bucket,)) for bucket in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [value for bucket in results for value in bucket]
    assert len(set(everything)) == len(everything)
    for bucket in results:
        assert sorted(bucket) == bucket


def test_ids_in_the_same_millisecond_increment_the_random_part(
    monkeypatch: pytest.MonkeyPatch, fresh_generator: ids._Generator
) -> None:
    _freeze_clock(monkeypatch, 1_700_000_000_000, 1_700_000_000_000, 1_700_000_000_000)
    first, second, third = (new_id("job") for _ in range(3))
    assert first < second < third
    assert ids._decode(second[4:]) == ids._decode(first[4:]) + 1
    assert ids._decode(third[4:]) == ids._decode(first[4:]) + 2


def test_ids_stay_ordered_when_the_clock_steps_back(
    monkeypatch: pytest.MonkeyPatch, fresh_generator: ids._Generator
) -> None:
    _freeze_clock(monkeypatch, 1_700_000_000_500, 1_700_000_000_100, 1_700_000_000_600)
    first, second, third = (new_id("job") for _ in range(3))
    assert first < second < third
    assert id_timestamp(second) == id_timestamp(first)


def test_exhausting_the_random_part_borrows_the_next_millisecond(
    monkeypatch: pytest.MonkeyPatch, fresh_generator: ids._Generator
) -> None:
    now = 1_700_000_000_000
    _freeze_clock(monkeypatch, now, now)
    monkeypatch.setattr(secrets, "randbits", lambda bits: (1 << bits) - 1)
    first, second = new_id("job"), new_id("job")
    assert first < second
    assert id_timestamp(second) - id_timestamp(first) == timedelta(milliseconds=1)


def test_forked_children_restart_the_sequence(fresh_generator: ids._Generator) -> None:
    fresh_generator.next_value()
    fresh_generator.reset()
    assert fresh_generator._last_ms == -1
    assert fresh_generator._last_random == 0


def test_id_timestamp_returns_the_creation_millisecond(
    monkeypatch: pytest.MonkeyPatch, fresh_generator: ids._Generator
) -> None:
    _freeze_clock(monkeypatch, 1_700_000_000_123)
    assert id_timestamp(new_id("ntf")) == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)


def test_id_timestamp_of_a_fresh_id_is_now() -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    stamp = id_timestamp(new_id(Prefix.REFUND))
    assert before <= stamp <= datetime.now(UTC) + timedelta(milliseconds=1)


@pytest.mark.parametrize(
    "value", ["", "ord", "ord_", "ord_" + "0" * 25, "ORD_" + "0" * 26, "ord_" + "I" * 26, 42]
)
def test_id_timestamp_rejects_malformed_ids(value: object) -> None:
    with pytest.raises(ValueError, match="not a tuition id"):
        id_timestamp(value)  # type: ignore[arg-type]


def test_is_valid_id_accepts_only_canonical_ids_with_the_given_prefix() -> None:
    good = new_id(Prefix.COUPON)
    body = good.removeprefix("cpn_")
    assert is_valid_id(good, Prefix.COUPON)
    assert is_valid_id(good, "cpn")
    assert not is_valid_id(good, "ord")
    assert not is_valid_id("cpn_" + body.lower(), "cpn")  # not the canonical spelling
    assert not is_valid_id("cpn_" + body[:-1], "cpn")
    assert not is_valid_id("cpn_" + body + "0", "cpn")
    assert not is_valid_id("cpn_8" + body[1:], "cpn")  # more than 128 bits
    assert not is_valid_id("cpn_" + body[:-1] + "U", "cpn")  # U is not Crockford
    assert not is_valid_id("cpn-" + body, "cpn")
    assert not is_valid_id("cpn_" + body + "\n", "cpn")
    assert not is_valid_id("cpn_../" + body[3:], "cpn")
    assert not is_valid_id(None, "cpn")


@pytest.mark.parametrize("prefix", ["", "Ord", "ord_", "o-d", "toolongprefix", "ørd"])
def test_new_id_rejects_malformed_prefixes(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        new_id(prefix)


def test_prefixes_are_distinct_and_well_formed() -> None:
    values = [prefix.value for prefix in Prefix]
    assert len(set(values)) == len(values)
    assert all(re.fullmatch(r"[a-z]{1,8}", value) for value in values)
    assert Prefix.REFUND.value == "re"
    assert Prefix.WEBHOOK_ENDPOINT.value == "whe"


def test_crockford_alphabet_sorts_like_its_values() -> None:
    assert "".join(sorted(ALPHABET)) == ALPHABET
    assert len(set(ALPHABET)) == 32


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_repeat_the_parents_next_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With a frozen clock, a child that kept the parent's state would mint exactly the
    # parent's next id; the at-fork reset makes it draw fresh randomness instead.
    frozen = ids._now_ms() + 3_600_000
    monkeypatch.setattr(ids, "_now_ms", lambda: frozen)
    try:
        new_id("job")
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(read_end)
            os.write(write_end, new_id("job").encode())
            os._exit(0)
        os.close(write_end)
        parent_id = new_id("job")
        with os.fdopen(read_end) as pipe:
            child_id = pipe.read()
        os.waitpid(pid, 0)
    finally:
        ids._generator.reset()  # forget the future timestamp
    assert is_valid_id(child_id, "job")
    assert child_id != parent_id
