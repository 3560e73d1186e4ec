"""Promoter commissions (分销) and partner-platform settlement: the pure rules.

**Promoters.** An order may carry a promoter's referral code. The code's promoter is
level 1; whoever recruited the level-1 promoter is level 2 (none when nobody did). Each
line's amount (net of tax) is split by largest remainder into
``[creator, level 1, level 2, platform]``; the commissions come out of the share of
whoever bears them, a per-product setting:

- ``platform``: creator ``rate``, level 1 ``r1``, level 2 ``r2``, platform the rest;
- ``creator``: creator ``rate - r1 - r2``, the platform keeps ``1 - rate``.

A bearer whose share cannot cover the commissions is refused (``commission_exceeds_share``).
Without a level-2 promoter its part stays with the bearer. The worked example: ¥199.00,
creator 70 %, promoters 20 % / 5 % borne by the platform: 13,930 / 3,980 / 995 / 995.

A refund takes back from each party what it still holds of the line, pro rata by largest
remainder (:func:`claw_back`), so any sequence of refunds never takes more than a party
was given and the parts of each refund sum to it exactly.

**Partner platforms.** A partner's share of a sale (a rate per agreement) is settled in
the partner's currency at a recorded exchange rate: :func:`convert` turns minor units of
one currency into another's at ``rate`` (quote per base), rounding half up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from tuition.domain.errors import ValidationFailed
from tuition.domain.ledger import AccountKind, AccountRef, JournalEntry, Posting, build_entry
from tuition.domain.money import allocate, allocate_by_ratios, get_currency

_ZERO, _ONE = Decimal(0), Decimal(1)


class CommissionBearer(StrEnum):
    PLATFORM = "platform"  # the platform's share pays the promoters
    CREATOR = "creator"  # the creator's share pays them


@dataclass(frozen=True, slots=True)
class CommissionRates:
    level1: Decimal
    level2: Decimal = _ZERO

    def __post_init__(self) -> None:
        for name in ("level1", "level2"):
            value = getattr(self, name)
            if (
                not isinstance(value, Decimal)
                or not value.is_finite()
                or not _ZERO <= value <= _ONE
            ):
                raise ValidationFailed(f"commission rate {name} must be within [0, 1]", param=name)
        if self.level1 + self.level2 > _ONE:
            raise ValidationFailed("commission rates sum to more than 1", param="level2")


@dataclass(frozen=True, slots=True)
class Promoter:
    id: str
    code: str
    recruited_by: str | None  # the promoter who recruited this one: its level 2


@dataclass(frozen=True, slots=True)
class Referral:
    level1: str
    level2: str | None


@dataclass(frozen=True, slots=True)
class LineSplit:
    """One line's amount (net of tax) as each party holds it; the parts sum to it."""

    creator: int
    level1: int
    level2: int
    platform: int

    @property
    def total(self) -> int:
        return self.creator + self.level1 + self.level2 + self.platform

    def parts(self) -> list[int]:
        return [self.creator, self.level1, self.level2, self.platform]


def referral_of(code: str, promoters: Mapping[str, Promoter]) -> Referral:
    """The chain behind a referral code (``promoters`` by id); ValidationFailed
    (``referral_code_unknown``) for a code no promoter has."""
    matches = [p for p in promoters.values() if p.code == code]  # codes are UNIQUE
    if not matches:
        raise ValidationFailed(
            f"no promoter has the referral code {code!r}",
            code="referral_code_unknown",
            param="referral_code",
        )
    level1 = matches[0]
    recruiter = level1.recruited_by
    if recruiter is not None and (recruiter == level1.id or recruiter not in promoters):
        recruiter = None  # nobody above, or a loop: no level 2
    return Referral(level1.id, recruiter)


def split_line(
    amount: int,
    creator_rate: Decimal,
    *,
    rates: CommissionRates | None,
    bearer: CommissionBearer,
    referral: Referral | None,
) -> LineSplit:
    """Split a line's ``amount`` between creator, promoters and platform (see above)."""
    if type(amount) is not int or amount < 0:
        raise ValidationFailed("a line amount must be a non-negative int", param="amount")
    if not isinstance(creator_rate, Decimal) or not _ZERO <= creator_rate <= _ONE:
        raise ValidationFailed("the creator rate must be within [0, 1]", param="revenue_share")
    r1 = rates.level1 if rates is not None and referral is not None else _ZERO
    r2 = rates.level2 if rates is not None and referral and referral.level2 else _ZERO
    if bearer is CommissionBearer.PLATFORM:
        creator, platform = creator_rate, _ONE - creator_rate - r1 - r2
        short = platform < 0
    else:
        creator, platform = creator_rate - r1 - r2, _ONE - creator_rate
        short = creator < 0
    if short:
        raise ValidationFailed(
            f"the {bearer} share cannot bear commissions of {r1} + {r2}",
            code="commission_exceeds_share",
            param="commission_bearer",
        )
    c, l1, l2, p = allocate_by_ratios(amount, [creator, r1, r2, platform])
    return LineSplit(creator=c, level1=l1, level2=l2, platform=p)


def claw_back(refund: int, held: LineSplit) -> LineSplit:
    """What a refund of ``refund`` takes back from each party of a line, in proportion to
    what each still holds (largest remainder); never more than a party holds."""
    if type(refund) is not int or not 0 <= refund <= held.total:
        raise ValidationFailed(
            f"a refund of {refund} is more than the line holds ({held.total})", param="amount"
        )
    c, l1, l2, p = allocate(refund, held.parts())
    return LineSplit(creator=c, level1=l1, level2=l2, platform=p)


def remaining(held: LineSplit, taken: LineSplit) -> LineSplit:
    return LineSplit(
        creator=held.creator - taken.creator,
        level1=held.level1 - taken.level1,
        level2=held.level2 - taken.level2,
        platform=held.platform - taken.platform,
    )


def partner_share(amount: int, rate: Decimal) -> int:
    """A partner's share of ``amount`` at its agreement's ``rate`` (largest remainder)."""
    if not isinstance(rate, Decimal) or not _ZERO <= rate <= _ONE:
        raise ValidationFailed("a partner share must be within [0, 1]", param="share")
    return allocate_by_ratios(amount, [rate, _ONE - rate])[0]


def convert(amount: int, base: str, quote: str, rate: Decimal) -> int:
    """``amount`` minor units of ``base`` in minor units of ``quote`` at ``rate`` (units
    of quote per unit of base), rounded half up: 100.00 CNY at 0.1389 is 13.89 USD."""
    if not isinstance(rate, Decimal) or not rate.is_finite() or rate <= 0:
        raise ValidationFailed("an exchange rate must be a positive number", param="rate")
    if type(amount) is not int:
        raise ValidationFailed("an amount must be an int of minor units", param="amount")
    scale = Decimal(10) ** (get_currency(quote).exponent - get_currency(base).exponent)
    return int((Decimal(amount) * rate * scale).quantize(_ONE, rounding=ROUND_HALF_UP))


def settled_take(take: int, left_from: int, left_to: int) -> int:
    """What a refund taking ``take`` of the ``left_from`` a partner still holds of an
    earning in the sale's currency takes of the ``left_to`` it holds in its own currency:
    pro rata, rounded half up, and everything that is left when the refund takes all, so
    the takes of any sequence of refunds sum exactly to what was settled."""
    if type(take) is not int or not 0 <= take <= left_from:
        raise ValidationFailed(f"a take of {take} is outside 0..{left_from}", param="amount")
    if take == left_from:
        return left_to
    share = (Decimal(take) * Decimal(left_to) / Decimal(left_from)).quantize(
        _ONE, rounding=ROUND_HALF_UP
    )
    return min(int(share), left_to)


def payable_conversion_entry(
    source: str,
    payee_id: str,
    *,
    from_currency: str,
    from_amount: int,
    to_currency: str,
    to_amount: int,
    occurred_at: datetime,
) -> JournalEntry:
    """Move what a payee is owed (``creator_payable``, a liability) from one currency into
    another through the ``fx_conversion`` account of each currency: ``from_amount`` less
    owed in ``from_currency``, ``to_amount`` more in ``to_currency`` (the amounts at a
    recorded rate). Each currency balances on its own; the FX accounts carry the position.
    A refund taking back a converted share moves the other way (swap the sides)."""
    if from_currency == to_currency:
        raise ValidationFailed("a conversion needs two currencies", param="currency")
    if (
        type(from_amount) is not int
        or type(to_amount) is not int
        or from_amount < 0
        or to_amount < 0
        or not from_amount + to_amount
    ):
        raise ValidationFailed("a conversion moves a positive amount", param="amount")
    postings = []
    if from_amount:  # a side that rounds to nothing has no postings
        postings += [
            Posting(AccountRef(AccountKind.CREATOR_PAYABLE, from_currency, payee_id), from_amount),
            Posting(AccountRef(AccountKind.FX_CONVERSION, from_currency), -from_amount),
        ]
    if to_amount:
        postings += [
            Posting(AccountRef(AccountKind.FX_CONVERSION, to_currency), to_amount),
            Posting(AccountRef(AccountKind.CREATOR_PAYABLE, to_currency, payee_id), -to_amount),
        ]
    return build_entry(
        source,
        f"{payee_id}'s share converted from {from_currency} to {to_currency}",
        postings,
        occurred_at,
    )
