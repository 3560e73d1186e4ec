"""The subscription state machine, the renewal clock, access scopes and member prices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tuition.domain.access_scope import (
    AccessScope,
    MemberPrice,
    membership_term,
    with_member_price,
)
from tuition.domain.catalog import MembershipPeriod, Product, ProductKind, Promotion
from tuition.domain.errors import IllegalTransition
from tuition.domain.subscriptions import (
    TRANSITIONS,
    RenewalPolicy,
    SubscriptionStatus,
    is_terminal,
    transition,
    validate_trial_days,
)

S = SubscriptionStatus
NOW = datetime(2026, 11, 1, 9, tzinfo=UTC)


def _product(pid: str, kind: ProductKind = ProductKind.COURSE, creator: str = "cre_a") -> Product:
    period = MembershipPeriod.MONTH if kind is ProductKind.MEMBERSHIP else None
    return Product(pid, creator, kind, pid, Decimal("0.7"), {"CNY": 10000}, period=period)


def test_every_status_of_the_issue_is_in_the_machine_and_the_ends_are_terminal() -> None:
    assert {s.value for s in S} == {"trialing", "active", "past_due", "canceled", "expired"}
    assert set(TRANSITIONS) == set(S)
    assert [s for s in S if is_terminal(s)] == [S.CANCELED, S.EXPIRED]


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.TRIALING, S.ACTIVE),
        (S.ACTIVE, S.ACTIVE),
        (S.ACTIVE, S.PAST_DUE),
        (S.PAST_DUE, S.ACTIVE),
        (S.PAST_DUE, S.EXPIRED),
        (S.ACTIVE, S.CANCELED),
    ],
)
def test_allowed_moves(current: S, target: S) -> None:
    assert transition(current, target) is target


@pytest.mark.parametrize(
    ("current", "target"),
    [(S.CANCELED, S.ACTIVE), (S.EXPIRED, S.ACTIVE), (S.PAST_DUE, S.TRIALING)],
)
def test_illegal_moves_raise_naming_both_states(current: S, target: S) -> None:
    with pytest.raises(IllegalTransition, match=f"from {current} to {target}"):
        transition(current, target)


def test_the_dunning_schedule_counts_from_the_first_failure_and_ends() -> None:
    policy = RenewalPolicy()
    failed = datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert [policy.next_retry(failed, n) for n in (1, 2, 3, 4)] == [
        failed + timedelta(days=1),
        failed + timedelta(days=3),
        failed + timedelta(days=7),
        None,
    ]
    assert policy.renewal_due_at(failed) == failed - timedelta(days=3)
    assert policy.access_until(failed) == failed + timedelta(days=7)


def test_trial_days_are_bounded() -> None:
    assert validate_trial_days(None) == 0
    assert validate_trial_days(14) == 14
    for bad in (-1, 366):
        with pytest.raises(Exception, match="trial_days"):
            validate_trial_days(bad)


def test_a_scope_is_a_union_of_its_parts_and_never_covers_money() -> None:
    course, article = _product("prod_c"), _product("prod_a", ProductKind.ARTICLE, "cre_b")
    topup = _product("prod_t", ProductKind.TOPUP)
    other = _product("prod_m2", ProductKind.MEMBERSHIP)
    assert AccessScope("prod_m", everything=True).covers(course)
    assert not AccessScope("prod_m", everything=True).covers(topup)
    assert not AccessScope("prod_m", everything=True).covers(other)
    by_creator = AccessScope("prod_m", creator_ids=frozenset({"cre_a"}))
    assert by_creator.covers(course)
    assert not by_creator.covers(article)
    by_kind = AccessScope("prod_m", kinds=frozenset({ProductKind.ARTICLE}))
    assert by_kind.covers(article)
    assert not by_kind.covers(course)
    listed = AccessScope("prod_m", product_ids=frozenset({"prod_c"}))
    assert listed.covers(course)
    assert not listed.covers(article)
    assert AccessScope("prod_m").covers(_product("prod_m", ProductKind.MEMBERSHIP))


def test_a_purchase_while_active_extends_from_the_current_end_with_clamping() -> None:
    monthly = _product("prod_m", ProductKind.MEMBERSHIP)
    end = datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert membership_term(datetime(2026, 11, 15, tzinfo=UTC), end, monthly) == (
        end,
        datetime(2027, 1, 1, 9, tzinfo=UTC),
    )
    jan31 = datetime(2027, 1, 31, 9, tzinfo=UTC)
    assert membership_term(datetime(2027, 1, 20, tzinfo=UTC), jan31, monthly)[1] == datetime(
        2027, 2, 28, 9, tzinfo=UTC
    )
    # Ended already: from the payment.
    assert membership_term(NOW, NOW - timedelta(days=1), monthly) == (
        NOW,
        datetime(2026, 12, 1, 9, tzinfo=UTC),
    )
    assert membership_term(NOW, None, monthly, 3)[1] == datetime(2027, 2, 1, 9, tzinfo=UTC)


def test_the_lowest_member_price_the_buyer_holds_becomes_the_promotion() -> None:
    course = _product("prod_c")
    rules = [
        MemberPrice("prod_c", "prod_m", percent_off=Decimal("0.2")),
        MemberPrice("prod_c", "prod_v", amounts={"CNY": 7000}),
    ]
    priced, rule = with_member_price(course, rules, {"prod_m"}, currency="CNY", now=NOW)
    assert rule is rules[0]
    assert priced.promotion is not None
    assert priced.promotion.amount_off == {"CNY": 2000}
    priced, rule = with_member_price(course, rules, {"prod_m", "prod_v"}, currency="CNY", now=NOW)
    assert rule is rules[1]
    assert priced.promotion is not None
    assert priced.promotion.amount_off == {"CNY": 3000}
    assert with_member_price(course, rules, set(), currency="CNY", now=NOW) == (course, None)
    assert with_member_price(course, rules[1:], {"prod_v"}, currency="USD", now=NOW) == (
        course,
        None,
    )


def test_a_lower_running_promotion_wins_over_a_member_price() -> None:
    sale = Promotion(NOW - timedelta(days=1), NOW + timedelta(days=1), percent_off=Decimal("0.5"))
    course = Product(
        "prod_c", "cre_a", ProductKind.COURSE, "c", Decimal("0.7"), {"CNY": 10000}, promotion=sale
    )
    rules = [MemberPrice("prod_c", "prod_m", percent_off=Decimal("0.2"))]
    assert with_member_price(course, rules, {"prod_m"}, currency="CNY", now=NOW) == (course, None)
