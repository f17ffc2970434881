"""Every schedule paymaster runs, defined once: the CDK app creates them as EventBridge Scheduler
schedules (`infra/paymaster_infra/sweeper.py`, `schedules.py`) and the local runner fires them on
its timers (`paymaster_local.timers`), from the same list, so the two cannot disagree.

    sweeper      rate(1 minute)                       (no zone)  every minute from its creation
    forecast     cron(0 6 * * ? *)                    UTC        06:00 UTC daily
    digest       cron(<m> <h> * * ? *) per team       its zone   at `alerts.digest_at` (none if null)
    month close  cron(45 0 1 * ? *) per team          its zone   00:45 on the 1st

`next_fire` is when Scheduler invokes a schedule next, for the expression forms above: a rate
fires at its start and every period after; a cron fires at its wall-clock time in its zone — on
the day daylight saving time skips that time, not at all; on the day it repeats it, once (the
first one).
"""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, TypeVar
from zoneinfo import ZoneInfo

from paymaster.domain.limits import RESERVATION_LIFETIME
from paymaster.domain.policy import Policy

Job = Literal["sweeper", "forecast", "digest", "month-close"]
JOBS: tuple[Job, ...] = ("sweeper", "forecast", "digest", "month-close")

SWEEP_EVERY = "rate(1 minute)"
SWEEP_PERIOD = timedelta(minutes=1)  # SWEEP_EVERY's
FORECAST_AT = time(6, 0)  # UTC: before the working day in Europe, the night before in the Americas

# How long after a month ends its last calls may still reach the ledger, and so when it closes:
#   a call admitted at 23:59:59 holds until RESERVATION_LIFETIME (20 min) later — it settles by
#   then, or crashed and is charged when the hold expires —, the sweeper charges it within its
#   next SWEEP_PERIOD (1 min), and the ledger function follows the counters' stream by seconds,
#   by minutes when a batch is retried (STREAM_MARGIN, 24 min: room for those retries).
# 20 + 1 + 24 = 45 min: the month close runs at 00:45 on the 1st, in the team's zone.
STREAM_MARGIN = timedelta(minutes=24)
MONTH_CLOSE_MARGIN = RESERVATION_LIFETIME + SWEEP_PERIOD + STREAM_MARGIN
MONTH_CLOSE_AT = (datetime.min + MONTH_CLOSE_MARGIN).time()

T = TypeVar("T")


def daily_cron(at: time) -> str:
    """`cron(30 8 * * ? *)` for 08:30."""
    return f"cron({at.minute} {at.hour} * * ? *)"


def monthly_cron(at: time) -> str:
    """`cron(45 0 1 * ? *)` for 00:45 on the 1st."""
    return f"cron({at.minute} {at.hour} 1 * ? *)"


@dataclass(frozen=True, slots=True)
class Schedule:
    """One schedule: its name (the CDK construct's, e.g. `DigestSearch`), the job it runs (the
    function `functions/<job with _>`), its expression, the zone the expression is read in, and
    the team its input names (the digest's and month close's)."""

    name: str
    job: Job
    expression: str
    time_zone: str = "UTC"
    team: str | None = None

    @property
    def function(self) -> str:
        """`month_close` for the month close: its folder under `functions/`."""
        return self.job.replace("-", "_")

    def input(self, schedule: T, scheduled_time: T, execution_id: T, attempt: T) -> dict[str, T | str]:
        """What the schedule sends its function (`events/scheduler/*.json`): Scheduler's context
        attributes (in the CDK app its placeholders, locally their values), plus the team."""
        detail: dict[str, T | str] = {
            "schedule": schedule,
            "scheduled_time": scheduled_time,
            "execution_id": execution_id,
            "attempt": attempt,
        }
        if self.team is not None:
            detail["team"] = self.team
        return detail


# The one schedule the policy does not shape (the sweeper's construct names it `EveryMinute`).
SWEEPER = Schedule("SweeperEveryMinute", "sweeper", SWEEP_EVERY)


def schedules(policy: Policy) -> list[Schedule]:
    """The sweeper, the forecast, then each team's digest (unless `digest_at` is null) and month
    close. Example: team `search` (America/Los_Angeles, digest 09:00) → `DigestSearch`
    `cron(0 9 * * ? *)` and `MonthCloseSearch` `cron(45 0 1 * ? *)`, both in America/Los_Angeles."""
    found = [SWEEPER, Schedule("ForecastDaily", "forecast", daily_cron(FORECAST_AT))]
    for team_name, team in policy.teams.items():
        label = "".join(part.capitalize() for part in team_name.replace("_", "-").replace(".", "-").split("-"))
        if team.alerts.digest_at is not None:
            found.append(
                Schedule(
                    f"Digest{label}", "digest", daily_cron(team.alerts.digest_at), team.alerts.time_zone, team_name
                )
            )
        found.append(
            Schedule(
                f"MonthClose{label}", "month-close", monthly_cron(MONTH_CLOSE_AT), team.alerts.time_zone, team_name
            )
        )
    return found


class ScheduleExpressionError(ValueError):
    """An expression outside the forms paymaster uses (`rate(N minute[s]|hour[s]|day[s])`,
    `cron(M H * * ? *)`, `cron(M H D * ? *)`)."""


@dataclass(frozen=True, slots=True)
class Rate:
    every: timedelta


@dataclass(frozen=True, slots=True)
class Cron:
    minute: int
    hour: int
    day: int | None  # of the month; None: every day


_RATE = re.compile(r"^rate\((?P<value>[1-9]\d*) (?P<unit>minutes?|hours?|days?)\)$")
_CRON = re.compile(r"^cron\((?P<minute>\d{1,2}) (?P<hour>\d{1,2}) (?P<day>\*|\d{1,2}) \* \? \*\)$")


def parse_expression(expression: str) -> Rate | Cron:
    """`rate(5 minutes)` → Rate(5 min); `cron(5 0 1 * ? *)` → Cron(5, 0, day 1)."""
    if rate := _RATE.match(expression):
        value, unit = int(rate["value"]), rate["unit"].rstrip("s")
        if (value == 1) != (rate["unit"] == unit):
            raise ScheduleExpressionError(f"{expression!r}: Scheduler wants `1 {unit}` and `N {unit}s`")
        return Rate(timedelta(**{f"{unit}s": value}))
    if cron := _CRON.match(expression):
        minute, hour = int(cron["minute"]), int(cron["hour"])
        day = None if cron["day"] == "*" else int(cron["day"])
        if minute > 59 or hour > 23 or (day is not None and not 1 <= day <= 31):
            raise ScheduleExpressionError(f"{expression!r}: minute 0-59, hour 0-23, day of the month 1-31")
        return Cron(minute, hour, day)
    raise ScheduleExpressionError(
        f"{expression!r}: only rate(N unit), cron(M H * * ? *) and cron(M H D * ? *) are used by paymaster"
    )


def next_fire(schedule: Schedule, after: datetime, *, start: datetime) -> datetime:
    """The first instant strictly after `after` that Scheduler invokes `schedule` at (UTC); a
    rate schedule counts its periods from `start` (its creation), which is its own first fire.

    Examples: `rate(1 minute)` started 10:00:30Z, after 10:02:00Z → 10:02:30Z; after 09:00Z →
    10:00:30Z. `cron(5 0 1 * ? *)` in America/Los_Angeles after 2026-11-15 → 2026-12-01T08:05Z
    (PST). `cron(30 2 * * ? *)` in America/Los_Angeles after 2026-03-07T11:00Z → 2026-03-09T09:30Z:
    02:30 on 8 March does not exist there. `cron(30 1 * * ? *)` after 2026-11-01T08:00Z (01:00
    PDT) → 08:30Z (01:30 PDT), then 2026-11-02T09:30Z: 01:30 PST on the 1st is not a second run.
    """
    parsed = parse_expression(schedule.expression)
    if isinstance(parsed, Rate):
        if after < start:
            return start.astimezone(UTC)
        periods = (after - start) // parsed.every + 1
        return (start + periods * parsed.every).astimezone(UTC)
    zone = ZoneInfo(schedule.time_zone)
    day = after.astimezone(zone).date()
    for _ in range(2 * 366):
        if parsed.day is None or day.day == parsed.day:
            fire = _wall_clock(day, time(parsed.hour, parsed.minute), zone)
            if fire is not None and fire > after:
                return fire
        day += timedelta(days=1)
    raise ScheduleExpressionError(f"{schedule.expression!r} never fires")  # a day 31 in no month would not


def _wall_clock(day: date, at: time, zone: ZoneInfo) -> datetime | None:
    """`at` on `day` in `zone` as a UTC instant; None when DST skips it. An hour that happens
    twice is its first occurrence (fold 0)."""
    local = datetime.combine(day, at, tzinfo=zone)
    instant = local.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        return None
    return instant
