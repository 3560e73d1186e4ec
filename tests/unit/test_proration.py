"""Proration to the second, with exact integers, hand-computed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tuition.domain.errors import ValidationFailed
from tuition.domain.proration import prorate

START = datetime(2026, 11, 1, 9, tzinfo=UTC)
END = datetime(2026, 12, 1, 9, tzinfo=UTC)  # 30 days = 2,592,000 s


def test_an_upgrade_credits_the_unused_time_and_charges_the_new_price_for_it() -> None:
    p = prorate(
        period_start=START,
        period_end=END,
        at=START + timedelta(days=10, seconds=7),
        paid_for_period=3000,
        new_period_price=6999,
    )
    assert (p.period_seconds, p.unused_seconds) == (2_592_000, 1_727_993)
    assert p.credit == 2000  # 3000 x 1727993 / 2592000 = 1999.9919
    assert p.charge == 4666  # 6999 x 1727993 / 2592000 = 4665.9811
    assert (p.amount_due, p.carried_credit) == (2666, 0)


def test_a_downgrade_carries_the_difference_and_charges_nothing_now() -> None:
    p = prorate(
        period_start=START,
        period_end=END,
        at=START + timedelta(days=20),
        paid_for_period=6999,
        new_period_price=3000,
    )
    assert (p.credit, p.charge) == (2333, 1000)  # a third of each
    assert (p.amount_due, p.carried_credit) == (0, 1333)


def test_a_first_period_price_is_what_gets_credited() -> None:
    p = prorate(
        period_start=START,
        period_end=END,
        at=START + timedelta(days=15),
        paid_for_period=990,
        new_period_price=6999,
    )
    assert p.credit == 495
    assert p.charge == 3500  # 3499.5 rounds half up
    assert p.amount_due == 3005


def test_a_change_in_the_first_second_credits_everything() -> None:
    p = prorate(
        period_start=START, period_end=END, at=START, paid_for_period=3000, new_period_price=6999
    )
    assert (p.credit, p.charge, p.amount_due) == (3000, 6999, 3999)


def test_a_fraction_of_a_second_counts_as_used() -> None:
    p = prorate(
        period_start=START,
        period_end=END,
        at=END - timedelta(seconds=1, microseconds=500_000),
        paid_for_period=2_592_000,
        new_period_price=0,
    )
    assert p.unused_seconds == 1
    assert p.credit == 1


@pytest.mark.parametrize(
    ("at", "code"),
    [(END, "outside_current_period"), (START - timedelta(seconds=1), "outside_current_period")],
)
def test_a_change_outside_the_period_is_refused(at: datetime, code: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        prorate(period_start=START, period_end=END, at=at, paid_for_period=1, new_period_price=1)
    assert raised.value.code == code


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="timezone-aware"):
        prorate(
            period_start=START,
            period_end=END,
            at=datetime(2026, 11, 2),
            paid_for_period=1,
            new_period_price=1,
        )
