"""The schedules paymaster runs, from the policy, and when Scheduler fires each one next:
rates from their start, crons at their wall-clock time in their zone, across DST and month ends."""

from datetime import UTC, datetime, time, timedelta

import pytest

from paymaster.domain.limits import RESERVATION_LIFETIME
from paymaster.domain.policy import Policy
from paymaster.domain.schedules import (
    MONTH_CLOSE_AT,
    MONTH_CLOSE_MARGIN,
    STREAM_MARGIN,
    SWEEP_EVERY,
    SWEEP_PERIOD,
    SWEEPER,
    Cron,
    Rate,
    Schedule,
    ScheduleExpressionError,
    next_fire,
    parse_expression,
    schedules,
)
from tests.policies import demo_raw

START = datetime(2026, 11, 20, 10, 0, 30, tzinfo=UTC)
LA = "America/Los_Angeles"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def daily(hour: int, minute: int, zone: str) -> Schedule:
    return Schedule("Daily", "digest", f"cron({minute} {hour} * * ? *)", zone, "search")


def fires(schedule: Schedule, after: datetime, count: int, start: datetime = START) -> list[str]:
    found = []
    for _ in range(count):
        after = next_fire(schedule, after, start=start)
        found.append(after.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return found


def test_the_demo_policy_gives_the_sweeper_the_forecast_and_each_team_s_digest_and_month_close() -> None:
    policy = Policy.model_validate(demo_raw())

    assert [(s.name, s.job, s.expression, s.time_zone, s.team) for s in schedules(policy)] == [
        ("SweeperEveryMinute", "sweeper", "rate(1 minute)", "UTC", None),
        ("ForecastDaily", "forecast", "cron(0 6 * * ? *)", "UTC", None),
        ("DigestSearch", "digest", "cron(0 9 * * ? *)", LA, "search"),
        ("MonthCloseSearch", "month-close", "cron(45 0 1 * ? *)", LA, "search"),
        ("DigestSupport", "digest", "cron(0 9 * * ? *)", "Europe/Berlin", "support"),
        ("MonthCloseSupport", "month-close", "cron(45 0 1 * ? *)", "Europe/Berlin", "support"),
    ]


def test_a_team_whose_digest_at_is_null_gets_no_digest_but_still_a_month_close() -> None:
    raw = demo_raw()
    raw["teams"]["search"]["alerts"]["digest_at"] = None

    found = {(s.job, s.team) for s in schedules(Policy.model_validate(raw))}

    assert ("digest", "search") not in found
    assert ("month-close", "search") in found


def test_a_team_s_input_names_it_and_the_sweeper_s_does_not() -> None:
    month_close = Schedule("MonthCloseSearch", "month-close", "cron(5 0 1 * ? *)", LA, "search")

    assert month_close.input("arn", "t", "id", "1") == {
        "schedule": "arn",
        "scheduled_time": "t",
        "execution_id": "id",
        "attempt": "1",
        "team": "search",
    }
    assert "team" not in SWEEPER.input("arn", "t", "id", "1")
    assert month_close.function == "month_close"


@pytest.mark.parametrize(
    ("expression", "parsed"),
    [
        ("rate(1 minute)", Rate(timedelta(minutes=1))),
        ("rate(5 minutes)", Rate(timedelta(minutes=5))),
        ("rate(2 hours)", Rate(timedelta(hours=2))),
        ("rate(1 day)", Rate(timedelta(days=1))),
        ("cron(0 6 * * ? *)", Cron(0, 6, None)),
        ("cron(5 0 1 * ? *)", Cron(5, 0, 1)),
    ],
)
def test_the_expression_forms_paymaster_uses_parse(expression: str, parsed: Rate | Cron) -> None:
    assert parse_expression(expression) == parsed


@pytest.mark.parametrize(
    "expression",
    [
        "rate(1 minutes)",
        "rate(2 minute)",
        "rate(0 minutes)",
        "rate(1 week)",
        "cron(0 6 * * MON *)",
        "cron(0/5 * * * ? *)",
        "cron(60 6 * * ? *)",
        "cron(0 24 * * ? *)",
        "cron(0 0 32 * ? *)",
        "at(2026-12-01T00:00:00)",
    ],
)
def test_an_expression_outside_those_forms_is_refused(expression: str) -> None:
    with pytest.raises(ScheduleExpressionError):
        parse_expression(expression)


def test_a_rate_fires_at_its_start_then_every_period_counted_from_the_start() -> None:
    assert fires(SWEEPER, START - timedelta(hours=1), 3) == [
        "2026-11-20T10:00:30Z",
        "2026-11-20T10:01:30Z",
        "2026-11-20T10:02:30Z",
    ]
    assert fires(SWEEPER, at("2026-11-20T10:02:00+00:00"), 1) == ["2026-11-20T10:02:30Z"]
    assert fires(SWEEPER, at("2026-11-20T10:02:30+00:00"), 1) == ["2026-11-20T10:03:30Z"]


def test_a_daily_cron_in_utc_fires_at_that_time_each_day_strictly_after() -> None:
    forecast = Schedule("ForecastDaily", "forecast", "cron(0 6 * * ? *)")

    assert fires(forecast, at("2026-11-20T05:59:59+00:00"), 2) == ["2026-11-20T06:00:00Z", "2026-11-21T06:00:00Z"]
    assert fires(forecast, at("2026-11-20T06:00:00+00:00"), 1) == ["2026-11-21T06:00:00Z"]


def test_a_daily_cron_keeps_its_local_time_when_the_zone_leaves_daylight_saving_time() -> None:
    # 09:00 in Los Angeles: 16:00Z in PDT, 17:00Z in PST (from 1 November 2026).
    assert fires(daily(9, 0, LA), at("2026-10-30T12:00:00+00:00"), 4) == [
        "2026-10-30T16:00:00Z",
        "2026-10-31T16:00:00Z",
        "2026-11-01T17:00:00Z",
        "2026-11-02T17:00:00Z",
    ]


def test_a_time_daylight_saving_time_skips_is_not_fired_that_day() -> None:
    # 02:30 does not exist in Los Angeles on 8 March 2026 (02:00 PST → 03:00 PDT).
    assert fires(daily(2, 30, LA), at("2026-03-07T00:00:00+00:00"), 2) == [
        "2026-03-07T10:30:00Z",
        "2026-03-09T09:30:00Z",
    ]


def test_a_time_daylight_saving_time_repeats_is_fired_once() -> None:
    # 01:30 happens twice in Los Angeles on 1 November 2026: 08:30Z (PDT) and 09:30Z (PST).
    assert fires(daily(1, 30, LA), at("2026-10-31T12:00:00+00:00"), 2) == [
        "2026-11-01T08:30:00Z",
        "2026-11-02T09:30:00Z",
    ]


def test_the_month_close_fires_at_five_past_midnight_on_the_1st_in_the_team_s_zone() -> None:
    close = Schedule("MonthCloseSearch", "month-close", "cron(5 0 1 * ? *)", LA, "search")

    assert fires(close, at("2026-11-15T00:00:00+00:00"), 3) == [
        "2026-12-01T08:05:00Z",  # PST
        "2027-01-01T08:05:00Z",
        "2027-02-01T08:05:00Z",
    ]
    # 30 November 23:59 in Los Angeles is already 1 December in UTC: the close is still ahead.
    assert fires(close, at("2026-12-01T07:59:00+00:00"), 1) == ["2026-12-01T08:05:00Z"]
    assert fires(close, at("2026-12-01T08:05:00+00:00"), 1) == ["2027-01-01T08:05:00Z"]


def test_the_month_close_east_of_utc_fires_on_the_last_day_of_the_month_in_utc() -> None:
    close = Schedule("MonthCloseSupport", "month-close", "cron(5 0 1 * ? *)", "Europe/Berlin", "support")

    assert fires(close, at("2027-02-20T00:00:00+00:00"), 2) == [
        "2027-02-28T23:05:00Z",  # 00:05 CET on 1 March
        "2027-03-31T22:05:00Z",  # 00:05 CEST on 1 April: Berlin moved on 28 March
    ]


def test_the_month_close_waits_for_a_hold_a_sweep_and_the_stream_after_midnight() -> None:
    assert parse_expression(SWEEP_EVERY) == Rate(SWEEP_PERIOD)
    assert MONTH_CLOSE_MARGIN == RESERVATION_LIFETIME + SWEEP_PERIOD + STREAM_MARGIN == timedelta(minutes=45)
    assert time(0, 45) == MONTH_CLOSE_AT
