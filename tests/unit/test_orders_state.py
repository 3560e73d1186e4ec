from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from itertools import product as pairs

import pytest

from tuition.domain.catalog import MembershipPeriod, Product, ProductKind
from tuition.domain.errors import IllegalTransition, ValidationFailed
from tuition.domain.orders import (
    TRANSITIONS,
    EntitlementGrant,
    OrderLine,
    OrderStatus,
    can_transition,
    entitlements_for_paid_order,
    is_paid,
    is_terminal,
    transition,
)

S = OrderStatus
ALLOWED = {
    (S.PENDING_PAYMENT, S.PAID),
    (S.PENDING_PAYMENT, S.CANCELLED),
    (S.PENDING_PAYMENT, S.EXPIRED),
    (S.PAID, S.PARTIALLY_REFUNDED),
    (S.PAID, S.REFUNDED),
    (S.PARTIALLY_REFUNDED, S.PARTIALLY_REFUNDED),
    (S.PARTIALLY_REFUNDED, S.REFUNDED),
}
ILLEGAL = sorted(set(pairs(S, S)) - ALLOWED)
PAID_AT = datetime(2024, 1, 31, 9, tzinfo=UTC)


def test_the_transition_table_is_exactly_the_documented_one() -> None:
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == ALLOWED
    assert set(TRANSITIONS) == set(S)


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_every_allowed_transition_returns_the_target(current: S, target: S) -> None:
    assert transition(current, target) is target
    assert can_transition(current, target)


@pytest.mark.parametrize(("current", "target"), ILLEGAL)
def test_every_illegal_transition_raises_naming_both_states(current: S, target: S) -> None:
    with pytest.raises(IllegalTransition) as caught:
        transition(current, target)
    assert caught.value.code == "illegal_transition"
    assert caught.value.status == 409
    assert f"from {current} to {target}" in caught.value.message
    assert not can_transition(current, target)


def test_a_status_given_as_its_string_is_accepted() -> None:
    assert transition("pending_payment", "paid") is S.PAID  # type: ignore[arg-type]


def test_refunded_cancelled_and_expired_are_terminal() -> None:
    assert {status for status in S if is_terminal(status)} == {S.REFUNDED, S.CANCELLED, S.EXPIRED}


def test_paid_statuses_are_those_reached_through_payment() -> None:
    assert {status for status in S if is_paid(status)} == {
        S.PAID,
        S.PARTIALLY_REFUNDED,
        S.REFUNDED,
    }


# -- entitlements ------------------------------------------------------------------------


def make(product_id: str, kind: ProductKind, **extra: object) -> Product:
    return Product(
        id=product_id,
        creator_id="cre_1",
        kind=kind,
        title=product_id,
        revenue_share=Decimal("0.7"),
        prices={"CNY": 100},
        **extra,  # type: ignore[arg-type]
    )


def test_a_course_grants_non_expiring_access_once_whatever_the_quantity() -> None:
    grants = entitlements_for_paid_order([OrderLine(make("c1", ProductKind.COURSE), 3)], PAID_AT)
    assert grants == [EntitlementGrant("c1", None, 0)]


def test_a_bundle_grants_its_components_recording_the_bundle_as_source() -> None:
    bundle = make("b1", ProductKind.BUNDLE, components=("c1", "c2", "c3"))
    grants = entitlements_for_paid_order([OrderLine(bundle)], PAID_AT)
    assert [(g.product_id, g.source_product_id, g.expires_at) for g in grants] == [
        ("c1", "b1", None),
        ("c2", "b1", None),
        ("c3", "b1", None),
    ]


def test_a_membership_grants_access_until_the_end_of_its_periods() -> None:
    monthly = make("m1", ProductKind.MEMBERSHIP, period=MembershipPeriod.MONTH)
    grants = entitlements_for_paid_order([OrderLine(monthly, 2)], PAID_AT)
    # Jan 31 + 2 months = Mar 31
    assert grants == [EntitlementGrant("m1", datetime(2024, 3, 31, 9, tzinfo=UTC), 0)]

    one = entitlements_for_paid_order([OrderLine(monthly)], PAID_AT)
    assert one[0].expires_at == datetime(2024, 2, 29, 9, tzinfo=UTC)


def test_a_topup_grants_nothing() -> None:
    topup = make("t1", ProductKind.TOPUP, topup_credit=6000)
    assert entitlements_for_paid_order([OrderLine(topup)], PAID_AT) == []


def test_grants_remember_which_line_they_came_from() -> None:
    lines = [
        OrderLine(make("t1", ProductKind.TOPUP, topup_credit=1)),
        OrderLine(make("a1", ProductKind.ARTICLE)),
        OrderLine(make("q1", ProductKind.CONSULTATION)),
    ]
    grants = entitlements_for_paid_order(lines, PAID_AT)
    assert [(g.product_id, g.line_index) for g in grants] == [("a1", 1), ("q1", 2)]


def test_entitlements_need_an_aware_payment_time() -> None:
    with pytest.raises(ValidationFailed):
        entitlements_for_paid_order(
            [OrderLine(make("c1", ProductKind.COURSE))],
            datetime(2024, 1, 1),
        )
