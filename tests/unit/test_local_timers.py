"""The local runner's timers fire each schedule at the instants Scheduler would, on the
schedules' clock (real, or `--clock-speed` times faster), with its schedule's input — on a
controlled clock: nothing sleeps."""

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from paymaster.domain.policy import Policy
from paymaster.domain.schedules import SWEEPER, Schedule, schedules
from paymaster_local.timers import ScheduleClock, ScheduledJob, clock_from_environ, scheduled_jobs
from tests.policies import demo_raw

LA = "America/Los_Angeles"
CLOSE = Schedule("MonthCloseSearch", "month-close", "cron(5 0 1 * ? *)", LA, "search")
DIGEST = Schedule("DigestSearch", "digest", "cron(0 9 * * ? *)", LA, "search")


class ControlledTime(threading.Event):
    """`wait` moves the clock on instead of sleeping; the timer stops after `runs` invocations."""

    def __init__(self, now: datetime, runs: int) -> None:
        super().__init__()
        self.now = now
        self.runs = runs
        self.invoked: list[tuple[datetime, dict[str, Any]]] = []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        assert timeout >= 0
        self.now += timedelta(seconds=timeout)
        return self.is_set()

    def handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.invoked.append((self.now, event))
        if len(self.invoked) == self.runs:
            self.set()
        return {}

    def scheduled_times(self) -> list[str]:
        return [event["scheduled_time"] for _, event in self.invoked]

    def real_times(self) -> list[str]:
        return [real.strftime("%Y-%m-%dT%H:%M:%S.%fZ") for real, _ in self.invoked]


def run(schedule: Schedule, clock: ScheduleClock, runs: int, handler: Any = None) -> ControlledTime:
    time = ControlledTime(clock.start, runs)
    ScheduledJob(schedule, handler or time.handler, clock, real_now=lambda: time.now).run(time)
    return time


def test_the_schedules_clock_runs_speed_times_faster_from_its_start() -> None:
    clock = ScheduleClock(datetime(2026, 11, 30, 12, tzinfo=UTC), 1440)

    assert clock.at(datetime(2026, 11, 30, 12, 1, tzinfo=UTC)) == datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert clock.real(datetime(2026, 12, 1, 8, 5, tzinfo=UTC)) == datetime(2026, 11, 30, 12, 0, 50, 208333, tzinfo=UTC)
    with pytest.raises(ValueError, match="positive"):
        ScheduleClock(clock.start, 0)


def test_the_clock_the_stack_describes_is_the_one_the_runner_reads() -> None:
    clock = ScheduleClock(datetime(2026, 11, 30, 12, tzinfo=UTC), 60)

    assert clock_from_environ(clock.environ()) == clock
    assert clock_from_environ({}).speed == 1


def test_a_team_s_month_close_fires_at_its_midnight_across_the_month_boundary_in_its_zone() -> None:
    time = run(CLOSE, ScheduleClock(datetime(2026, 11, 30, 12, tzinfo=UTC)), runs=2)

    assert time.scheduled_times() == ["2026-12-01T08:05:00Z", "2027-01-01T08:05:00Z"]
    assert time.real_times() == ["2026-12-01T08:05:00.000000Z", "2027-01-01T08:05:00.000000Z"]
    assert {event["team"] for _, event in time.invoked} == {"search"}


def test_at_clock_speed_1440_the_month_close_comes_within_a_minute_with_the_fast_clock_s_time() -> None:
    # From 12:00Z on 30 November the close (2026-12-01T08:05Z) is 20 h 5 min ahead: 50.2 s at a day a minute.
    time = run(CLOSE, ScheduleClock(datetime(2026, 11, 30, 12, tzinfo=UTC), 1440), runs=2)

    assert time.scheduled_times() == ["2026-12-01T08:05:00Z", "2027-01-01T08:05:00Z"]
    assert time.real_times() == ["2026-11-30T12:00:50.208333Z", "2026-11-30T12:31:50.208333Z"]


def test_a_digest_keeps_its_local_hour_when_its_zone_leaves_daylight_saving_time() -> None:
    time = run(DIGEST, ScheduleClock(datetime(2026, 10, 31, 20, tzinfo=UTC), 3600), runs=3)

    assert time.scheduled_times() == ["2026-11-01T17:00:00Z", "2026-11-02T17:00:00Z", "2026-11-03T17:00:00Z"]


def test_the_sweeper_fires_at_the_start_then_every_minute() -> None:
    start = datetime(2026, 12, 3, 20, 14, 30, tzinfo=UTC)

    time = run(SWEEPER, ScheduleClock(start), runs=3)

    assert time.scheduled_times() == ["2026-12-03T20:14:30Z", "2026-12-03T20:15:30Z", "2026-12-03T20:16:30Z"]
    assert len({event["execution_id"] for _, event in time.invoked}) == 3
    assert "team" not in time.invoked[0][1]


def test_a_run_that_fails_is_logged_and_the_next_instant_runs_as_planned() -> None:
    time = ControlledTime(datetime(2026, 12, 3, 20, tzinfo=UTC), runs=3)

    def flaky(event: dict[str, Any], context: Any) -> dict[str, Any]:
        time.handler(event, context)
        if len(time.invoked) == 1:
            raise RuntimeError("the store is down")
        return {}

    ScheduledJob(SWEEPER, flaky, ScheduleClock(time.now), real_now=lambda: time.now).run(time)

    assert time.scheduled_times() == ["2026-12-03T20:00:00Z", "2026-12-03T20:01:00Z", "2026-12-03T20:02:00Z"]


def test_a_runner_that_fell_behind_fires_each_instant_it_missed_late_and_in_order() -> None:
    time = ControlledTime(datetime(2026, 11, 30, 12, tzinfo=UTC), runs=3)

    def slow(event: dict[str, Any], context: Any) -> dict[str, Any]:
        time.handler(event, context)
        time.now += timedelta(days=3)  # the first digest took three days
        return {}

    ScheduledJob(DIGEST, slow, ScheduleClock(time.now), real_now=lambda: time.now).run(time)

    assert time.scheduled_times() == ["2026-11-30T17:00:00Z", "2026-12-01T17:00:00Z", "2026-12-02T17:00:00Z"]


def test_the_runner_has_a_job_per_schedule_the_sweeper_on_the_real_clock_and_one_handler_per_function() -> None:
    loaded: list[str] = []

    def handlers(function: str) -> Any:
        loaded.append(function)
        return lambda event, context: {}

    start = datetime(2026, 11, 30, 12, tzinfo=UTC)
    jobs = scheduled_jobs(schedules(Policy.model_validate(demo_raw())), handlers, start=start, speed=1440)

    assert [job.schedule.name for job in jobs] == [
        "SweeperEveryMinute",
        "ForecastDaily",
        "DigestSearch",
        "MonthCloseSearch",
        "DigestSupport",
        "MonthCloseSupport",
    ]
    assert loaded == ["sweeper", "forecast", "digest", "month_close"]
    assert jobs[0].first_fire() == start
    assert jobs[1].first_fire() == datetime(2026, 12, 1, 6, tzinfo=UTC)
    speeds = {job.schedule.job: job.clock.speed for job in jobs}
    assert speeds == {"sweeper": 1.0, "forecast": 1440, "digest": 1440, "month-close": 1440}
