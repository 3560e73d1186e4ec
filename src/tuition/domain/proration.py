"""Proration: what changing a subscription's plan mid-period costs, to the second.

The unused part of the current period is the fraction ``unused_seconds /
period_seconds``. What was paid for the period is credited for that fraction, the new
plan's price is charged for it, and the difference is due now (an upgrade) or carried
as credit to the next renewal (a downgrade). Both parts are rounded half up to minor
units once, from the exact fraction, so the result is an exact integer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from tuition.domain.catalog import require_aware
from tuition.domain.errors import ValidationFailed
from tuition.domain.money import Rounding, round_minor


@dataclass(frozen=True, slots=True)
class Proration:
    """The numbers behind a plan change, shown before it is confirmed."""

    period_seconds: int
    unused_seconds: int
    credit: int
    """What the unused time of the current plan is worth (minor units)."""
    charge: int
    """What the new plan costs for the same unused time."""

    @property
    def amount_due(self) -> int:
        """To pay now; zero for a downgrade."""
        return max(self.charge - self.credit, 0)

    @property
    def carried_credit(self) -> int:
        """Left over for a downgrade, taken off the next renewal; zero for an upgrade."""
        return max(self.credit - self.charge, 0)


def _share(amount: int, unused: int, total: int) -> int:
    return round_minor(Decimal(amount) * Decimal(unused) / Decimal(total), Rounding.HALF_UP)


def prorate(
    *,
    period_start: datetime,
    period_end: datetime,
    at: datetime,
    paid_for_period: int,
    new_period_price: int,
) -> Proration:
    """Prorate a change at ``at`` inside ``[period_start, period_end)``.

    ``paid_for_period`` is what the buyer paid for the current period (a first-period
    price counts as paid); ``new_period_price`` is the new plan's price for a period.
    """
    for name, moment in (("period_start", period_start), ("period_end", period_end), ("at", at)):
        require_aware(moment, param=name)
    if period_end <= period_start:
        raise ValidationFailed("the period must end after it starts", param="period_end")
    if not period_start <= at < period_end:
        raise ValidationFailed(
            "a plan can change only inside its current period",
            code="outside_current_period",
            param="at",
        )
    if paid_for_period < 0 or new_period_price < 0:
        raise ValidationFailed("amounts must not be negative", param="amount")
    total = int((period_end - period_start).total_seconds())
    # Whole seconds: a change at 10:00:00.7 counts the second it started in as used.
    unused = int((period_end - at).total_seconds())
    return Proration(
        period_seconds=total,
        unused_seconds=unused,
        credit=_share(paid_for_period, unused, total),
        charge=_share(new_period_price, unused, total),
    )
