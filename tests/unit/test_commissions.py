"""Promoter commissions and partner conversion, hand-computed: the worked example
(¥199.00, creator 70 %, promoters 20 % / 5 % borne by the platform), who bears them,
two levels from the recruiter, pro-rata clawback by largest remainder, FX."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tuition.domain.commissions import (
    CommissionBearer,
    CommissionRates,
    LineSplit,
    Promoter,
    Referral,
    claw_back,
    convert,
    partner_share,
    referral_of,
    remaining,
    split_line,
)
from tuition.domain.errors import ValidationFailed

RATES = CommissionRates(Decimal("0.2"), Decimal("0.05"))
PROMOTERS = {
    "pro_a": Promoter("pro_a", "ALICE", recruited_by=None),
    "pro_b": Promoter("pro_b", "BOB", recruited_by="pro_a"),
}


def test_level_two_is_whoever_recruited_level_one() -> None:
    assert referral_of("BOB", PROMOTERS) == Referral("pro_b", "pro_a")
    assert referral_of("ALICE", PROMOTERS) == Referral("pro_a", None)
    with pytest.raises(ValidationFailed) as unknown:
        referral_of("NOBODY", PROMOTERS)
    assert unknown.value.code == "referral_code_unknown"


def test_the_worked_example_borne_by_the_platform() -> None:
    split = split_line(
        19900,
        Decimal("0.7"),
        rates=RATES,
        bearer=CommissionBearer.PLATFORM,
        referral=Referral("pro_b", "pro_a"),
    )
    # 19,900 x 70 % = 13,930; x 20 % = 3,980; x 5 % = 995; the platform 5,970 - 4,975 = 995.
    assert split == LineSplit(creator=13930, level1=3980, level2=995, platform=995)
    assert split.total == 19900


def test_borne_by_the_creator_the_platform_keeps_its_share() -> None:
    split = split_line(
        19900,
        Decimal("0.7"),
        rates=RATES,
        bearer=CommissionBearer.CREATOR,
        referral=Referral("pro_b", "pro_a"),
    )
    assert split == LineSplit(creator=8955, level1=3980, level2=995, platform=5970)


def test_without_a_level_two_its_part_stays_with_the_bearer_and_no_code_pays_nobody() -> None:
    one = split_line(
        19900,
        Decimal("0.7"),
        rates=RATES,
        bearer=CommissionBearer.PLATFORM,
        referral=Referral("pro_a", None),
    )
    assert one == LineSplit(creator=13930, level1=3980, level2=0, platform=1990)
    none = split_line(
        19900, Decimal("0.7"), rates=RATES, bearer=CommissionBearer.PLATFORM, referral=None
    )
    assert none == LineSplit(creator=13930, level1=0, level2=0, platform=5970)


def test_a_bearer_that_cannot_cover_the_commissions_is_refused() -> None:
    with pytest.raises(ValidationFailed) as refused:
        split_line(
            19900,
            Decimal("0.9"),
            rates=RATES,
            bearer=CommissionBearer.PLATFORM,
            referral=Referral("pro_b", "pro_a"),
        )
    assert refused.value.code == "commission_exceeds_share"
    with pytest.raises(ValidationFailed, match="more than 1"):
        CommissionRates(Decimal("0.8"), Decimal("0.3"))


def test_refunds_take_back_pro_rata_by_largest_remainder_and_never_more_than_held() -> None:
    held = LineSplit(creator=13930, level1=3980, level2=995, platform=995)
    # Half the line, 9,950: 6,965 / 1,990 / 497.5 / 497.5; the half unit goes to level 2
    # (ties to the earlier part), so the four parts sum to 9,950.
    first = claw_back(9950, held)
    assert first == LineSplit(creator=6965, level1=1990, level2=498, platform=497)
    left = remaining(held, first)
    assert left == LineSplit(creator=6965, level1=1990, level2=497, platform=498)
    second = claw_back(9950, left)  # the rest: everything each still holds
    assert second == left
    assert remaining(left, second).total == 0
    with pytest.raises(ValidationFailed):
        claw_back(1, remaining(left, second))


def test_a_partners_share_is_settled_in_its_currency_at_the_recorded_rate() -> None:
    share = partner_share(19900, Decimal("0.3"))
    assert share == 5970
    # 59.70 CNY at 0.1389 USD per CNY = 8.29233 USD -> 8.29 (829 cents).
    assert convert(share, "CNY", "USD", Decimal("0.1389")) == 829
    # 59.70 CNY at 21.05 JPY per CNY = 1,256.685 JPY -> 1,257 (no minor unit).
    assert convert(share, "CNY", "JPY", Decimal("21.05")) == 1257
    with pytest.raises(ValidationFailed):
        convert(share, "CNY", "USD", Decimal(0))
