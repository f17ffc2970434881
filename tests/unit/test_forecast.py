import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paymaster.domain.forecast import MIN_ELAPSED, project
from paymaster.domain.windows import Window, window

NOVEMBER = Window("2026-11", datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
NOV_21 = datetime(2026, 11, 21, tzinfo=UTC)  # 20 days gone, 10 left


def test_last_weeks_rate_applied_to_the_days_left() -> None:
    projection = project(1_000, 2_000, NOVEMBER, NOV_21, [80] * 7)

    assert (projection.at_end, projection.per_day, projection.basis) == (1_800, 80, "recent_days")
    assert not projection.exceeds(2_000)
    assert projection.cap_reached_at is None


def test_a_faster_week_names_the_moment_the_cap_is_reached() -> None:
    projection = project(1_000, 2_000, NOVEMBER, NOV_21, [120] * 7)

    assert projection.at_end == 2_200
    assert projection.exceeds(2_000)
    assert projection.cap_reached_at == datetime(2026, 11, 29, 8, tzinfo=UTC)


def test_only_the_last_seven_days_count() -> None:
    projection = project(1_000, 2_000, NOVEMBER, NOV_21, [1_000_000] * 3 + [80] * 7)

    assert projection.per_day == 80


def test_without_recent_days_the_windows_mean_so_far_is_the_rate() -> None:
    projection = project(1_900_000, 2_000_000, NOVEMBER, NOV_21)

    # 1.9 M in 20 days = 95,000 a day, × 10 days left
    assert (projection.per_day, projection.at_end, projection.basis) == (95_000, 2_850_000, "window_average")
    assert projection.cap_reached_at == NOV_21 + timedelta(days=20) / 19


def test_the_first_call_of_a_month_is_not_extrapolated_from_a_second() -> None:
    just_after = NOVEMBER.start + timedelta(seconds=1)

    projection = project(10, 2_000_000, NOVEMBER, just_after)

    # counted over MIN_ELAPSED (an hour), not one second: 10 × 24 a day, not 10 × 86,400
    hours_left = (NOVEMBER.end - just_after).total_seconds() / 3600
    assert projection.per_day == 10 * 24 == 10 * timedelta(days=1) // MIN_ELAPSED
    assert projection.at_end == 10 + math.ceil(10 * hours_left)


def test_a_budget_already_at_its_cap_reached_it_now() -> None:
    projection = project(2_000, 2_000, NOVEMBER, NOV_21, [0] * 7)

    assert (projection.at_end, projection.cap_reached_at) == (2_000, NOV_21)


def test_nothing_spent_lately_projects_the_spend_so_far() -> None:
    projection = project(500, 2_000, NOVEMBER, NOV_21, [0, 0])

    assert (projection.at_end, projection.cap_reached_at) == (500, None)


def test_a_month_in_a_time_zone_ends_at_its_own_midnight() -> None:
    zone = ZoneInfo("America/Los_Angeles")
    now = datetime(2026, 11, 30, 12, tzinfo=zone)  # 12 hours left of November there

    projection = project(0, 100, window("month", zone, now), now, [48])

    assert projection.at_end == 24


def test_negative_figures_are_refused() -> None:
    with pytest.raises(ValueError, match="never negative"):
        project(-1, 2_000, NOVEMBER, NOV_21)
    with pytest.raises(ValueError, match="never negative"):
        project(1, 2_000, NOVEMBER, NOV_21, [3, -1])


@given(
    spent=st.integers(0, 10**12),
    cap=st.integers(0, 10**12),
    days=st.lists(st.integers(0, 10**10), max_size=10),
    offset_s=st.integers(0, 30 * 86_400 - 1),
)
def test_the_projection_never_falls_below_the_spend_and_the_cap_date_is_inside_the_window(
    spent: int, cap: int, days: list[int], offset_s: int
) -> None:
    now = NOVEMBER.start + timedelta(seconds=offset_s)

    projection = project(spent, cap, NOVEMBER, now, days)

    assert projection.at_end >= spent
    if projection.cap_reached_at is not None:
        assert now <= projection.cap_reached_at <= NOVEMBER.end
        assert projection.at_end >= cap or spent >= cap
    elif spent < cap:
        assert projection.at_end <= cap + 1  # rounding up by at most one unit
