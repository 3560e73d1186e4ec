"""The simulator refuses a replayed nonce and forgets nonces that can no longer replay."""

from __future__ import annotations

from tuition.simulator.signing import NonceBook


def test_a_nonce_is_refused_the_second_time_within_the_window() -> None:
    book = NonceBook(max_skew_seconds=300)
    assert book.remember(("app", "n1"), 1_000)
    assert not book.remember(("app", "n1"), 1_000 + 599)
    assert book.remember(("other app", "n1"), 1_000)  # nonces are per merchant


def test_nonces_older_than_twice_the_skew_are_forgotten_as_time_moves_on() -> None:
    book = NonceBook(max_skew_seconds=300)
    for second in range(10_000):
        assert book.remember(("app", f"n{second}"), second)
    # Only the last 600 seconds' nonces are kept, however long the book has run.
    assert len(book) == 601
    assert not book.remember(("app", "n9999"), 10_000)
    assert book.remember(("app", "n0"), 10_000)  # long gone: its timestamp would fail
