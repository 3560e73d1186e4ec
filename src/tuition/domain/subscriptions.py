"""Subscriptions: the status machine, trials, first-period prices and the renewal clock.

:func:`transition` is the only way a subscription's status changes; the store applies
its answer with a compare-and-set on the previous status.

::

    trialing ──paid──▶ active ──renewal paid──▶ active
        │                 │  ╲
        │ charge failed   │   ╲ cancel now / at period end
        ▼                 ▼    ▼
      past_due ──paid──▶ active    canceled
        │
        │ grace over
        ▼
      expired

``canceled`` and ``expired`` are terminal. A subscription cancelled *at period end*
stays ``active`` with ``cancel_at_period_end`` set until its period ends; ``resume``
clears the flag while the period runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from fractions import Fraction

from tuition.domain.errors import IllegalTransition, ValidationFailed

MAX_TRIAL_DAYS = 365


class SubscriptionStatus(StrEnum):
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELED = "canceled"
    EXPIRED = "expired"


S = SubscriptionStatus
TRANSITIONS: Mapping[SubscriptionStatus, frozenset[SubscriptionStatus]] = {
    S.TRIALING: frozenset({S.ACTIVE, S.PAST_DUE, S.CANCELED, S.EXPIRED}),
    # active -> active is a renewal: still a recorded move so racing renewals serialise.
    S.ACTIVE: frozenset({S.ACTIVE, S.PAST_DUE, S.CANCELED, S.EXPIRED}),
    S.PAST_DUE: frozenset({S.ACTIVE, S.CANCELED, S.EXPIRED}),
    S.CANCELED: frozenset(),
    S.EXPIRED: frozenset(),
}

# Statuses in which the subscriber keeps access (past_due: during the grace period).
ACCESS_STATUSES = frozenset({S.TRIALING, S.ACTIVE, S.PAST_DUE})


def transition(current: SubscriptionStatus, target: SubscriptionStatus) -> SubscriptionStatus:
    """Return ``target`` if a subscription may move there from ``current``, else raise."""
    current, target = SubscriptionStatus(current), SubscriptionStatus(target)
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(
            f"a subscription cannot move from {current} to {target}",
            code="illegal_transition",
            param="status",
        )
    return target


def is_terminal(status: SubscriptionStatus) -> bool:
    return not TRANSITIONS[SubscriptionStatus(status)]


def validate_trial_days(days: int | None) -> int:
    if days is None:
        return 0
    if type(days) is not int or not 0 <= days <= MAX_TRIAL_DAYS:
        raise ValidationFailed(
            f"trial_days must be an integer in [0, {MAX_TRIAL_DAYS}]",
            code="trial_days_invalid",
            param="trial_days",
        )
    return days


@dataclass(frozen=True, slots=True)
class RenewalPolicy:
    """When renewals are prepared and how failed charges are retried (settings)."""

    lead: timedelta = timedelta(days=3)
    """Renewal orders are created this long before the period ends."""
    retry_after: Sequence[timedelta] = (timedelta(days=1), timedelta(days=3), timedelta(days=7))
    """Retries of a failed charge, counted from the first failure."""
    grace: timedelta = timedelta(days=7)
    """How long a ``past_due`` subscriber keeps access after the period ended."""

    def renewal_due_at(self, period_end: datetime) -> datetime:
        return period_end - self.lead

    def next_retry(self, first_failed_at: datetime, failures: int) -> datetime | None:
        """When to try again after ``failures`` failed charges; None when none is left."""
        if failures < 1 or failures > len(self.retry_after):
            return None
        return first_failed_at + self.retry_after[failures - 1]

    def access_until(self, period_end: datetime) -> datetime:
        return period_end + self.grace


@dataclass(frozen=True, slots=True)
class SubscriptionFact:
    """What the metrics need of one subscription."""

    status: SubscriptionStatus
    currency: str
    period_price: int
    period_months: int
    created_at: datetime
    ended_at: datetime | None


def monthly_recurring_revenue(facts: Sequence[SubscriptionFact]) -> dict[str, int]:
    """MRR per currency: each paying subscription's price per month (a year's price / 12),
    summed exactly and rounded half up once per currency. Trials pay nothing yet."""
    totals: dict[str, Fraction] = {}
    for fact in facts:
        if fact.status in (S.ACTIVE, S.PAST_DUE):
            share = Fraction(fact.period_price, fact.period_months)
            totals[fact.currency] = totals.get(fact.currency, Fraction(0)) + share
    return {code: _round_half_up(value) for code, value in sorted(totals.items())}


def churn_rate(
    facts: Sequence[SubscriptionFact], *, start: datetime, end: datetime
) -> Fraction | None:
    """Subscriptions that ended (canceled or expired) in ``[start, end]`` over those live
    at ``start``; None when none was live."""
    live = [
        f for f in facts if f.created_at < start and (f.ended_at is None or f.ended_at >= start)
    ]
    if not live:
        return None
    ended = [f for f in live if f.ended_at is not None and f.ended_at <= end]
    return Fraction(len(ended), len(live))


def _round_half_up(value: Fraction) -> int:
    whole, rest = divmod(value.numerator, value.denominator)
    return whole + (1 if 2 * rest >= value.denominator else 0)
