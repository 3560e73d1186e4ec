"""Business days: calendar days of the platform's time zone (``TUITION_TIME_ZONE``), as
the UTC instants where each one starts, so daily figures cut at local midnight."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo


@dataclass(frozen=True, slots=True)
class BusinessDays:
    """Consecutive days of ``zone``; ``starts[i]`` is the UTC instant day ``i`` begins and
    ``starts[-1]`` the instant after the last day ends (one more than ``days``)."""

    zone: tzinfo
    days: tuple[date, ...]
    starts: tuple[datetime, ...]

    @property
    def since(self) -> datetime:
        return self.starts[0]

    @property
    def until(self) -> datetime:
        return self.starts[-1]

    def day_of(self, moment: datetime) -> date:
        """The business day an aware instant falls on."""
        return moment.astimezone(self.zone).date()


def local_midnight(day: date, zone: tzinfo) -> datetime:
    """The UTC instant ``day`` begins in ``zone``."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def last_days(now: datetime, count: int, zone: tzinfo) -> BusinessDays:
    """The last ``count`` days of ``zone``, the one ``now`` falls on included."""
    if count < 1:
        raise ValueError("at least one day")
    today = now.astimezone(zone).date()
    days = tuple(today - timedelta(days=n) for n in range(count - 1, -1, -1))
    starts = tuple(local_midnight(d, zone) for d in (*days, today + timedelta(days=1)))
    return BusinessDays(zone, days, starts)
