"""Calendar windows: minute/hour aligned to UTC, day/week/month in the rule's zone, DST-true.

Durations are measured between UTC instants: Python subtracts two datetimes that share a tzinfo
by wall clock, which would hide a 23-hour day.
"""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paymaster.domain.windows import Period, Window, window

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
TOKYO = ZoneInfo("Asia/Tokyo")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
KOLKATA = ZoneInfo("Asia/Kolkata")
UTC_ZONE = ZoneInfo("UTC")

PERIODS: list[Period] = ["minute", "hour", "day", "week", "month"]
# Whole-hour, half-hour and 30-minute-DST zones, both hemispheres, and Havana, whose DST changes
# happen at midnight (so a day can start at 01:00 local time).
ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Asia/Tokyo",
    "America/Los_Angeles",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "America/Havana",
    "Pacific/Chatham",
]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def hours(w: Window) -> float:
    return (w.end.astimezone(UTC) - w.start.astimezone(UTC)).total_seconds() / 3600


# Minute and hour: UTC-aligned whatever the zone.


def test_minute_window_is_the_utc_minute_containing_now() -> None:
    w = window("minute", UTC_ZONE, utc(2026, 11, 29, 18, 25, 59, 999_999))

    assert w == Window("2026-11-29T18:25Z", utc(2026, 11, 29, 18, 25), utc(2026, 11, 29, 18, 26))


def test_hour_window_is_the_utc_hour_containing_now() -> None:
    w = window("hour", UTC_ZONE, utc(2026, 11, 29, 18, 0))

    assert w == Window("2026-11-29T18Z", utc(2026, 11, 29, 18), utc(2026, 11, 29, 19))


def test_hour_window_stays_utc_aligned_in_a_half_hour_zone() -> None:
    # 23:55 in Kolkata is 18:25 UTC: the hour started at 18:00 UTC = 23:30 local, not 23:00.
    now = datetime(2026, 11, 29, 23, 55, tzinfo=KOLKATA)

    w = window("hour", KOLKATA, now)

    assert (w.id, w.start, w.end) == ("2026-11-29T18Z", utc(2026, 11, 29, 18), utc(2026, 11, 29, 19))


def test_minute_window_of_a_non_utc_now_is_named_in_utc() -> None:
    now = datetime(2026, 11, 29, 23, 55, 30, tzinfo=KOLKATA)

    assert window("minute", KOLKATA, now).id == "2026-11-29T18:25Z"


# Day: midnight to midnight in the rule's zone.


def test_day_window_follows_the_rule_zone_not_utc() -> None:
    # 02:00 UTC on the 29th is 18:00 on the 28th in Los Angeles (PST, UTC-8).
    w = window("day", LOS_ANGELES, utc(2026, 11, 29, 2))

    assert (w.id, w.start, w.end) == ("2026-11-28", utc(2026, 11, 28, 8), utc(2026, 11, 29, 8))


def test_day_window_in_utc_is_24_hours() -> None:
    w = window("day", UTC_ZONE, utc(2026, 11, 29, 18, 25))

    assert (w.id, w.start, w.end) == ("2026-11-29", utc(2026, 11, 29), utc(2026, 11, 30))


def test_day_of_spring_forward_is_23_hours_in_new_york() -> None:
    # 2026-03-08: 02:00 EST → 03:00 EDT. The day runs 05:00 UTC → 04:00 UTC next day.
    w = window("day", NEW_YORK, utc(2026, 3, 8, 12))

    assert (w.id, w.start, w.end, hours(w)) == ("2026-03-08", utc(2026, 3, 8, 5), utc(2026, 3, 9, 4), 23)


def test_day_of_fall_back_is_25_hours_in_new_york() -> None:
    # 2026-11-01: 02:00 EDT → 01:00 EST. The day runs 04:00 UTC → 05:00 UTC next day.
    w = window("day", NEW_YORK, utc(2026, 11, 1, 12))

    assert (w.id, w.start, w.end, hours(w)) == ("2026-11-01", utc(2026, 11, 1, 4), utc(2026, 11, 2, 5), 25)


def test_day_of_spring_forward_is_23_hours_in_berlin() -> None:
    # 2026-03-29: 02:00 CET → 03:00 CEST. Midnight CET is 23:00 UTC the day before.
    w = window("day", BERLIN, utc(2026, 3, 29, 12))

    assert (w.id, w.start, w.end, hours(w)) == ("2026-03-29", utc(2026, 3, 28, 23), utc(2026, 3, 29, 22), 23)


def test_day_of_fall_back_is_25_hours_in_berlin() -> None:
    # 2026-10-25: 03:00 CEST → 02:00 CET.
    w = window("day", BERLIN, utc(2026, 10, 25, 12))

    assert (w.id, w.start, w.end, hours(w)) == ("2026-10-25", utc(2026, 10, 24, 22), utc(2026, 10, 25, 23), 25)


def test_repeated_hour_of_fall_back_belongs_to_that_day_on_both_passes() -> None:
    # 01:30 happens twice in New York on 2026-11-01: at 05:30 UTC (EDT) and 06:30 UTC (EST).
    first, second = utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)

    assert window("day", NEW_YORK, first) == window("day", NEW_YORK, second)
    assert window("day", NEW_YORK, first).id == "2026-11-01"


def test_seconds_left_counts_real_seconds_on_a_23_hour_day() -> None:
    # 06:00 UTC on 2026-03-08 is 01:00 EST; the day ends at 04:00 UTC on the 9th: 22 h later.
    now = utc(2026, 3, 8, 6)

    assert window("day", NEW_YORK, now).seconds_left(now) == 22 * 3600


def test_seconds_left_is_zero_after_the_window_ends() -> None:
    w = window("minute", UTC_ZONE, utc(2026, 11, 29, 18, 25))

    assert w.seconds_left(utc(2026, 11, 29, 18, 27)) == 0.0


def test_seconds_left_counts_real_seconds_when_now_is_given_in_the_rule_zone() -> None:
    now = utc(2026, 3, 8, 6).astimezone(NEW_YORK)  # 01:00 EST, before the clocks jump

    assert window("day", NEW_YORK, now).seconds_left(now) == 22 * 3600


# Week: ISO weeks, Monday first, named by ISO year.


def test_week_window_runs_monday_to_monday_in_the_rule_zone() -> None:
    w = window("week", BERLIN, utc(2026, 11, 29, 18, 25))  # a Sunday

    assert (w.id, w.start, w.end) == ("2026-W48", utc(2026, 11, 22, 23), utc(2026, 11, 29, 23))


def test_week_containing_spring_forward_is_167_hours_in_new_york() -> None:
    w = window("week", NEW_YORK, utc(2026, 3, 5, 12))

    assert (w.id, hours(w)) == ("2026-W10", 167)


@pytest.mark.parametrize(
    ("day", "week_id"),
    [
        (date(2025, 12, 28), "2025-W52"),  # Sunday
        (date(2025, 12, 29), "2026-W01"),  # Monday: ISO 2026 starts in December 2025
        (date(2026, 12, 31), "2026-W53"),  # 2026 has 53 ISO weeks (it starts on a Thursday)
        (date(2027, 1, 1), "2026-W53"),
        (date(2027, 1, 3), "2026-W53"),  # Sunday
        (date(2027, 1, 4), "2027-W01"),  # Monday
    ],
)
def test_week_id_is_the_iso_year_and_week_across_a_year_boundary(day: date, week_id: str) -> None:
    iso = day.isocalendar()
    assert f"{iso.year}-W{iso.week:02d}" == week_id

    w = window("week", UTC_ZONE, datetime(day.year, day.month, day.day, 12, tzinfo=UTC))

    assert w.id == week_id


def test_week_53_of_2026_spans_the_new_year() -> None:
    w = window("week", UTC_ZONE, utc(2026, 12, 31, 12))

    assert (w.start, w.end) == (utc(2026, 12, 28), utc(2027, 1, 4))


# Month: in the rule's zone, around UTC month ends.


def test_month_in_tokyo_starts_before_the_utc_month_ends() -> None:
    # Tokyo is UTC+9: December begins at 15:00 UTC on 30 November.
    w = window("month", TOKYO, utc(2026, 11, 30, 15, 30))

    assert (w.id, w.start, w.end) == ("2026-12", utc(2026, 11, 30, 15), utc(2026, 12, 31, 15))


def test_last_second_of_november_in_tokyo_is_still_november() -> None:
    w = window("month", TOKYO, utc(2026, 11, 30, 14, 59, 59))

    assert (w.id, w.end) == ("2026-11", utc(2026, 11, 30, 15))


def test_month_in_los_angeles_continues_after_the_utc_month_ends() -> None:
    # 05:00 UTC on 1 December is 21:00 PST on 30 November; December starts at 08:00 UTC.
    w = window("month", LOS_ANGELES, utc(2026, 12, 1, 5))

    assert (w.id, w.end) == ("2026-11", utc(2026, 12, 1, 8))
    assert window("month", LOS_ANGELES, utc(2026, 12, 1, 8)).id == "2026-12"


def test_november_in_los_angeles_has_an_extra_hour() -> None:
    # Starts 00:00 PDT (07:00 UTC), ends 00:00 PST (08:00 UTC): 30 days + 1 hour.
    w = window("month", LOS_ANGELES, utc(2026, 11, 15))

    assert (w.start, w.end, hours(w)) == (utc(2026, 11, 1, 7), utc(2026, 12, 1, 8), 30 * 24 + 1)


def test_december_month_ends_at_the_next_new_year() -> None:
    w = window("month", UTC_ZONE, utc(2026, 12, 31, 23, 59))

    assert (w.id, w.start, w.end) == ("2026-12", utc(2026, 12, 1), utc(2027, 1, 1))


def test_february_of_a_leap_year_has_29_days() -> None:
    w = window("month", UTC_ZONE, utc(2028, 2, 29, 12))

    assert (w.id, hours(w)) == ("2028-02", 29 * 24)


@pytest.mark.parametrize("period", PERIODS)
def test_naive_now_is_refused(period: Period) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        window(period, UTC_ZONE, datetime(2026, 11, 29, 18, 25))


# Properties.

instants = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2199, 12, 1), timezones=st.just(UTC))
zones = st.sampled_from(ZONES).map(ZoneInfo)
periods = st.sampled_from(PERIODS)


def as_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


@given(instant=instants, zone=zones, period=periods, shown_in=zones)
def test_now_falls_inside_its_window(instant: datetime, zone: ZoneInfo, period: Period, shown_in: ZoneInfo) -> None:
    now = instant.astimezone(shown_in)  # the same instant, written in any zone

    w = window(period, zone, now)

    assert as_utc(w.start) <= as_utc(now) < as_utc(w.end)
    assert w.start <= now < w.end
    assert w == window(period, zone, instant)


@given(instant=instants, zone=zones, period=periods)
def test_the_window_at_end_is_the_next_window(instant: datetime, zone: ZoneInfo, period: Period) -> None:
    w = window(period, zone, instant)

    following = window(period, zone, w.end)

    assert as_utc(following.start) == as_utc(w.end)
    assert following.id != w.id
    assert following.id > w.id


@given(first=instants, second=instants, zone=zones, period=periods)
def test_window_ids_sort_in_time_order(first: datetime, second: datetime, zone: ZoneInfo, period: Period) -> None:
    early, late = sorted((first, second))

    early_window, late_window = window(period, zone, early), window(period, zone, late)

    assert early_window.id <= late_window.id
    assert (early_window.id == late_window.id) == (early_window == late_window)
