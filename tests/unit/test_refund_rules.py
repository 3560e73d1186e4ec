"""The refund rules and splits, pure: hand-computed cases and properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tuition.domain.catalog import ProductKind
from tuition.domain.errors import ValidationFailed
from tuition.domain.refund_entries import pro_rata_fee
from tuition.domain.refunds import (
    ConsumptionMode,
    LineFacts,
    LineRequest,
    RefundPolicy,
    RefundRefused,
    lessons_progress,
    line_allowance,
    parse_policy,
    parse_progress,
    plan_refund,
    split_line,
)

PAID = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def _line(index: int = 0, total: int = 9900, **extra: object) -> LineFacts:
    values: dict[str, object] = {
        "index": index,
        "kind": ProductKind.COURSE,
        "total": total,
        "tax": 0,
        "creator_id": "cre_1",
        "creator_share": total * 7 // 10,
        "reserved": 0,
        "policy": RefundPolicy(),
        **extra,
    }
    return LineFacts(**values)  # type: ignore[arg-type]


def test_the_window_is_counted_from_payment_and_its_last_second_still_refunds() -> None:
    line = _line()
    last = PAID + timedelta(days=7)
    assert line_allowance(line, paid_at=PAID, now=last, override=False).refundable == 9900
    closed = line_allowance(line, paid_at=PAID, now=last + timedelta(seconds=1), override=False)
    assert (closed.refundable, closed.refused_by) == (0, "refund_window_closed")
    lifted = line_allowance(line, paid_at=PAID, now=last + timedelta(days=99), override=True)
    assert lifted.refundable == 9900


def test_prorate_refunds_the_unconsumed_share_rounded_once_half_up() -> None:
    policy = RefundPolicy(consumption=ConsumptionMode.PRORATE)
    # 9999 x (1 - 0.35) = 6499.35 -> 6499; 9999 x 0.5 = 4999.5 -> 5000.
    for progress, expected in (("0.35", 6499), ("0.5", 5000), ("1", 0), ("0", 9999)):
        line = _line(total=9999, policy=policy, progress=Decimal(progress))
        assert line_allowance(line, paid_at=PAID, now=PAID, override=False).refundable == expected


def test_a_consumption_limit_refuses_above_it_and_allows_at_it() -> None:
    policy = RefundPolicy(consumption=ConsumptionMode.LIMIT, max_progress=Decimal("0.3"))
    at = _line(policy=policy, progress=Decimal("0.3"))
    above = _line(policy=policy, progress=Decimal("0.300001"))
    assert line_allowance(at, paid_at=PAID, now=PAID, override=False).refundable == 9900
    refused = line_allowance(above, paid_at=PAID, now=PAID, override=False)
    assert refused.refused_by == "consumption_limit_exceeded"
    with pytest.raises(RefundRefused) as caught:
        plan_refund([above], [refused], amount=None, requested=None)
    assert caught.value.code == "consumption_limit_exceeded"


def test_a_membership_refunds_the_time_left_to_the_second() -> None:
    end = PAID + timedelta(days=30)
    line = _line(
        total=3000,
        kind=ProductKind.MEMBERSHIP,
        access_start=PAID,
        access_end=end,
        policy=RefundPolicy(window_days=None),
    )
    now = PAID + timedelta(days=6, seconds=1)
    # 2073599 of 2592000 seconds left: 3000 x 0.79999961... = 2399.9988 -> 2400.
    assert line_allowance(line, paid_at=PAID, now=now, override=False).cap == 2400
    assert line_allowance(line, paid_at=PAID, now=end, override=False).refundable == 0


def test_an_amount_is_spread_by_what_each_line_may_give_back() -> None:
    lines = [_line(0, 9900), _line(1, 10000, reserved=5000)]
    allowances = [line_allowance(f, paid_at=PAID, now=PAID, override=False) for f in lines]
    plan = plan_refund(lines, allowances, amount=1000, requested=None)
    # 9900 : 5000 -> 664.4 and 335.6 -> 664, 336.
    assert plan == {0: (664, 9900), 1: (336, 10000)}
    with pytest.raises(RefundRefused) as caught:
        plan_refund(lines, allowances, amount=14901, requested=None)
    assert caught.value.code == "refund_exceeds_refundable"
    with pytest.raises(RefundRefused):
        plan_refund(lines, allowances, amount=None, requested=[LineRequest(1, 5001)])


def test_policies_are_checked_and_read_over_the_default() -> None:
    default = RefundPolicy(window_days=14)
    assert parse_policy({"consumption": "prorate"}, base=default).window_days == 14
    assert parse_policy({"window_days": None}, base=default).window_days is None
    for bad, param in (
        ({"window_days": -1}, "refund_policy.window_days"),
        ({"consumption": "limit"}, "refund_policy.max_progress"),
        ({"consumption": "prorate", "max_progress": "0.2"}, "refund_policy.max_progress"),
        ({"whatever": 1}, "refund_policy.whatever"),
    ):
        with pytest.raises(ValidationFailed) as caught:
            parse_policy(bad)
        assert caught.value.param == param
    with pytest.raises(ValidationFailed):
        parse_progress("1.01")
    with pytest.raises(ValidationFailed):
        parse_progress("NaN")
    assert lessons_progress(1, 3) == Decimal("0.333333333333")


@given(
    total=st.integers(1, 10**9),
    share=st.decimals(0, 1, places=4),
    tax_rate=st.decimals(0, Decimal("0.2"), places=3),
    cuts=st.lists(st.integers(1, 10**9), min_size=1, max_size=8),
)
def test_any_sequence_of_refunds_never_takes_a_party_below_zero_and_ends_exact(
    total: int, share: Decimal, tax_rate: Decimal, cuts: list[int]
) -> None:
    tax = int(total * tax_rate)
    creator = int((total - tax) * share)
    line = _line(total=total, tax=tax, creator_share=creator)
    taken = [0, 0, 0]
    refunded = 0
    for cut in [*cuts, total]:  # the last one takes whatever is left
        amount = min(cut, total - refunded)
        if amount == 0:
            break
        part = split_line(
            line,
            amount,
            cap=total,
            reserved_after=refunded + amount,
            taken=(taken[0], taken[1], taken[2], 0),
        )
        taken = [
            taken[0] + part.creator_amount,
            taken[1] + part.tax_amount,
            taken[2] + part.platform_amount,
        ]
        refunded += amount
        assert min(part.creator_amount, part.tax_amount, part.platform_amount) >= 0
        assert taken[0] <= creator
        assert taken[1] <= tax
        assert taken[2] <= total - creator - tax
    assert taken == [creator, tax, total - creator - tax]


@given(
    amount=st.integers(1, 10**9),
    rate=st.decimals(0, Decimal("0.05"), places=4),
    cuts=st.lists(st.integers(1, 10**9), min_size=1, max_size=8),
)
def test_pro_rata_fees_add_up_to_the_whole_fee_at_a_full_refund(
    amount: int, rate: Decimal, cuts: list[int]
) -> None:
    fee = int(amount * rate)
    returned = refunded = 0
    for cut in [*cuts, amount]:
        step = min(cut, amount - refunded)
        if step == 0:
            break
        part = pro_rata_fee(fee, amount, refunded, step)
        assert part >= 0
        returned += part
        refunded += step
    assert returned == fee


def test_a_top_up_refunds_whole_while_unspent_and_never_once_spent() -> None:
    unspent = _line(
        kind=ProductKind.TOPUP, total=1000, creator_share=0, wallet_credit=1000, topup_unspent=True
    )
    spent = _line(kind=ProductKind.TOPUP, total=1000, creator_share=0, wallet_credit=1000)
    allowed = line_allowance(unspent, paid_at=PAID, now=PAID, override=False)
    assert allowed.refundable == 1000
    refused = line_allowance(spent, paid_at=PAID, now=PAID, override=True)
    assert refused.refused_by == "topup_spent"
    with pytest.raises(RefundRefused) as caught:
        plan_refund([unspent], [allowed], amount=None, requested=[LineRequest(0, 400)])
    assert caught.value.code == "topup_refund_whole_only"
    part = split_line(unspent, 1000, cap=1000, reserved_after=1000, taken=(0, 0, 0, 0))
    assert (part.wallet_amount, part.platform_amount, part.creator_amount) == (1000, 0, 0)
