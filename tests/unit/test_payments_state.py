from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from tuition.domain.errors import IllegalTransition, ValidationFailed
from tuition.domain.payments import (
    PAYMENT_TRANSITIONS,
    REFUND_TRANSITIONS,
    PaymentStatus,
    RefundStatus,
    channel_fee,
    exceeds_risk_threshold,
    net_to_platform,
    payment_transition,
    refund_transition,
    risk_score,
    success_rate,
    surcharged_amount,
)

P = PaymentStatus
R = RefundStatus

LEGAL_PAYMENT_MOVES = {
    (P.CREATED, P.PENDING),
    (P.CREATED, P.SUCCEEDED),
    (P.CREATED, P.FAILED),
    (P.CREATED, P.CLOSED),
    (P.PENDING, P.SUCCEEDED),
    (P.PENDING, P.FAILED),
    (P.PENDING, P.CLOSED),
    (P.CLOSED, P.SUCCEEDED),  # money the gateway took for an attempt we had closed
}
LEGAL_REFUND_MOVES = {(R.PENDING, R.SUCCEEDED), (R.PENDING, R.FAILED)}


def test_the_payment_table_allows_exactly_the_documented_moves() -> None:
    table = {(src, dst) for src, targets in PAYMENT_TRANSITIONS.items() for dst in targets}
    assert table == LEGAL_PAYMENT_MOVES
    assert set(PAYMENT_TRANSITIONS) == set(PaymentStatus)


def test_the_refund_table_allows_exactly_the_documented_moves() -> None:
    table = {(src, dst) for src, targets in REFUND_TRANSITIONS.items() for dst in targets}
    assert table == LEGAL_REFUND_MOVES
    assert set(REFUND_TRANSITIONS) == set(RefundStatus)


@pytest.mark.parametrize(("current", "target"), sorted(LEGAL_PAYMENT_MOVES))
def test_a_legal_payment_move_returns_the_target(current: P, target: P) -> None:
    assert payment_transition(current, target) is target


@pytest.mark.parametrize(
    ("current", "target"),
    [pair for pair in itertools.product(P, P) if pair not in LEGAL_PAYMENT_MOVES],
)
def test_every_illegal_payment_move_raises_naming_both_states(current: P, target: P) -> None:
    with pytest.raises(IllegalTransition) as raised:
        payment_transition(current, target)
    assert f"'{current}'" in raised.value.message
    assert f"'{target}'" in raised.value.message
    assert raised.value.status == 409


@pytest.mark.parametrize(("current", "target"), sorted(LEGAL_REFUND_MOVES))
def test_a_legal_refund_move_returns_the_target(current: R, target: R) -> None:
    assert refund_transition(current, target) is target


@pytest.mark.parametrize(
    ("current", "target"),
    [pair for pair in itertools.product(R, R) if pair not in LEGAL_REFUND_MOVES],
)
def test_every_illegal_refund_move_raises_naming_both_states(current: R, target: R) -> None:
    with pytest.raises(IllegalTransition) as raised:
        refund_transition(current, target)
    assert f"'{current}'" in raised.value.message
    assert f"'{target}'" in raised.value.message


def test_statuses_are_their_wire_strings() -> None:
    assert [str(s) for s in P] == ["created", "pending", "succeeded", "failed", "closed"]
    assert [str(s) for s in R] == ["pending", "succeeded", "failed"]


def test_channel_fee_is_amount_times_rate_rounded_half_up() -> None:
    assert channel_fee(10000, Decimal("0.006")) == 60
    assert channel_fee(250, Decimal("0.006")) == 2  # 1.5 rounds up
    assert channel_fee(249, Decimal("0.006")) == 1  # 1.494 rounds down
    assert channel_fee(0, Decimal("0.006")) == 0
    assert channel_fee(10000, Decimal(0)) == 0


@pytest.mark.parametrize("rate", [Decimal("-0.001"), Decimal(1), Decimal("NaN")])
def test_channel_fee_refuses_a_rate_outside_zero_to_one(rate: Decimal) -> None:
    with pytest.raises(ValidationFailed):
        channel_fee(10000, rate)


def test_channel_fee_refuses_a_negative_or_boolean_amount() -> None:
    with pytest.raises(ValidationFailed):
        channel_fee(-1, Decimal("0.006"))
    with pytest.raises(ValidationFailed):
        channel_fee(True, Decimal("0.006"))


def test_surcharged_amount_adds_exactly_the_channel_fee() -> None:
    assert surcharged_amount(10000, Decimal("0.006")) == 10060
    assert surcharged_amount(250, Decimal("0.006")) == 252


def test_success_rate_is_succeeded_over_attempted_and_zero_when_nothing_was_tried() -> None:
    assert success_rate(3, 4) == Decimal("0.75")
    assert success_rate(0, 0) == Decimal(0)
    assert len(success_rate(1, 3).as_tuple().digits) == 60  # not the ambient 28
    with pytest.raises(ValidationFailed):
        success_rate(5, 4)


def test_risk_score_is_exact_and_the_threshold_is_exceeded_only_strictly() -> None:
    assert risk_score(10000, Decimal("0.0003")) == Decimal("3")
    assert exceeds_risk_threshold(10000, Decimal("0.0003"), Decimal("2.9999"))
    assert not exceeds_risk_threshold(10000, Decimal("0.0003"), Decimal(3))


def test_net_to_platform_subtracts_fee_creator_share_and_tax() -> None:
    assert net_to_platform(10000, 60, 7000, 0) == 2940
    assert net_to_platform(10600, 64, 7000, 600) == 2936
    assert net_to_platform(100, 1, 100, 0) == -1  # a loss is reported, not hidden
