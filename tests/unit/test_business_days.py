"""Business days and console times in the platform's time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from tuition.domain.calendar import last_days, local_midnight
from tuition.web.admin_filters import day_range
from tuition.web.i18n import Formatter, utc_offset, zone_name

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")


def test_a_time_is_shown_in_the_zone_with_its_offset() -> None:
    moment = datetime(2026, 11, 1, 17, 30, tzinfo=UTC)
    fmt = Formatter("en")
    assert fmt.when(moment, zone=SHANGHAI) == "2026-11-02 01:30:00 UTC+8"
    assert fmt.when(moment, "date", zone=SHANGHAI) == "2026-11-02"
    assert fmt.when(moment) == "2026-11-01 17:30:00 UTC"
    assert fmt.when(moment, zone=ZoneInfo("Asia/Kolkata")) == "2026-11-01 23:00:00 UTC+5:30"
    assert fmt.when(moment, zone=ZoneInfo("America/St_Johns")).endswith("UTC-3:30")
    assert fmt.when(None, zone=SHANGHAI) == "—"
    assert utc_offset(timedelta(0)) == "UTC"
    assert zone_name(SHANGHAI, moment) == "Asia/Shanghai (UTC+8)"


def test_business_days_begin_at_local_midnight() -> None:
    days = last_days(datetime(2026, 11, 1, 17, 30, tzinfo=UTC), 3, SHANGHAI)
    assert days.days == (date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2))
    assert days.since == datetime(2026, 10, 30, 16, 0, tzinfo=UTC)
    assert days.until == datetime(2026, 11, 2, 16, 0, tzinfo=UTC)
    assert days.day_of(datetime(2026, 11, 1, 16, 0, tzinfo=UTC)) == date(2026, 11, 2)


def test_a_day_across_a_clock_change_is_23_or_25_hours_long() -> None:
    # New York leaves daylight saving time at 02:00 on 2026-11-01.
    days = last_days(datetime(2026, 11, 2, 12, 0, tzinfo=UTC), 3, NEW_YORK)
    lengths = [b - a for a, b in zip(days.starts, days.starts[1:], strict=False)]
    assert lengths == [timedelta(hours=24), timedelta(hours=25), timedelta(hours=24)]
    assert local_midnight(date(2026, 3, 8), NEW_YORK) == datetime(2026, 3, 8, 5, tzinfo=UTC)


def test_date_filters_cut_at_midnight_in_the_zone() -> None:
    start, end = day_range("2026-11-01", "2026-11-01", SHANGHAI)
    assert start == datetime(2026, 10, 31, 16, tzinfo=UTC)
    assert end == datetime(2026, 11, 1, 16, tzinfo=UTC)
    assert day_range("nonsense", "", SHANGHAI) == (None, None)
