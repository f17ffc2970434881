"""What EventBridge Scheduler does, done locally: each schedule the CDK app creates
(`paymaster.domain.schedules.schedules`, the same list) fires its function's handler at the
instants Scheduler would (`next_fire`), with the input Scheduler would send
(`events/scheduler/*.json`).

The report schedules (forecast, digests, month closes) run on the schedules' clock
(`ScheduleClock`): the real clock, or `--clock-speed N` times faster from the instant the stack
started. Their handlers take their `now` from the input's `scheduled_time`, so that clock is the
one they work at: at `--clock-speed 1440` a local day passes in a real minute, a digest arrives
every minute and the month closes within a month's worth of minutes.

The sweeper always runs on the real clock, every real minute from the start: the holds it charges
expire on the gateway's clock (each hold's expiry is written by the gateway, 20 real minutes on),
and `AdmissionService.sweep` compares them with that clock. Sweeping on a faster clock would only
sweep more often, or (given the faster `now`) charge calls still in flight.

A run that fails is logged, and the next instant runs as planned (no retries locally; in AWS
Lambda retries a failed report run twice, then the dead-letter queue follows). A runner that falls
behind fires the instants it missed, late and in order, each with its own `scheduled_time`, as
Scheduler delivers a late invocation.
"""

import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger

from paymaster import names
from paymaster.domain.schedules import Schedule, next_fire
from paymaster_local.functions import Handler, LambdaContext

logger = Logger(service="paymaster-local-runner")

SCHEDULED_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# Local only: the schedules' clock, as the local stack gives it to the runner.
ENV_CLOCK_START = "PAYMASTER_LOCAL_CLOCK_START"  # ISO 8601 with its offset; default: when the runner starts
ENV_CLOCK_SPEED = "PAYMASTER_LOCAL_CLOCK_SPEED"  # default 1


@dataclass(frozen=True, slots=True)
class ScheduleClock:
    """The schedules' clock: `speed` times the real clock from `start` (both read it `start`).

    Example: start 2026-11-30T12:00Z, speed 1440 → at real 12:01Z it says 2026-12-01T12:00Z; the
    instant 2026-12-01T08:05Z comes at real 12:00:50.2Z."""

    start: datetime
    speed: float = 1.0

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError(f"a clock speed is positive, not {self.speed}")

    def at(self, real: datetime) -> datetime:
        """What the schedules' clock says at the real instant `real`."""
        return self.start + (real - self.start) * self.speed

    def real(self, scheduled: datetime) -> datetime:
        """The real instant at which the schedules' clock says `scheduled`."""
        return self.start + (scheduled - self.start) / self.speed

    def environ(self) -> dict[str, str]:
        return {ENV_CLOCK_START: self.start.isoformat(), ENV_CLOCK_SPEED: repr(self.speed)}


def clock_from_environ(environ: Mapping[str, str]) -> ScheduleClock:
    """The clock `ScheduleClock.environ` describes; the real one from now when nothing does."""
    start = environ.get(ENV_CLOCK_START)
    return ScheduleClock(
        datetime.fromisoformat(start) if start else datetime.now(UTC), float(environ.get(ENV_CLOCK_SPEED) or 1)
    )


def schedule_event(schedule: Schedule, scheduled_time: datetime) -> dict[str, str]:
    """The input `schedule` sends its function at `scheduled_time`, with Scheduler's context
    attributes filled in as Scheduler fills them (`events/scheduler/*.json`)."""
    return schedule.input(
        f"arn:aws:scheduler:{names.LOCAL_REGION}:000000000000:schedule/default/{schedule.name}",
        scheduled_time.astimezone(UTC).strftime(SCHEDULED_TIME_FORMAT),
        str(uuid.uuid4()),
        "1",
    )


def invoke(schedule: Schedule, handler: Handler, scheduled_time: datetime) -> dict[str, Any]:
    """One invocation of `schedule`'s handler for `scheduled_time`; its answer, or what it raised."""
    event = schedule_event(schedule, scheduled_time)
    return handler(event, LambdaContext(schedule.function, event["execution_id"]))


class ScheduledJob:
    """One schedule → its handler, at each instant Scheduler would invoke it, on `clock`."""

    def __init__(
        self,
        schedule: Schedule,
        handler: Handler,
        clock: ScheduleClock,
        *,
        real_now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.schedule = schedule
        self._handler = handler
        self.clock = clock
        self._real_now = real_now

    def first_fire(self) -> datetime:
        """The first instant at or after the clock's start: a rate's start, a cron's next time."""
        return next_fire(self.schedule, self.clock.start - timedelta(microseconds=1), start=self.clock.start)

    def run_once(self, scheduled_time: datetime) -> dict[str, Any] | None:
        """Invokes the handler; its answer, or None when it raised (logged, as Lambda would)."""
        try:
            answer = invoke(self.schedule, self._handler, scheduled_time)
        except Exception:
            logger.exception(
                "the scheduled invocation failed; the next one runs as planned", schedule=self.schedule.name
            )
            return None
        logger.info("scheduled invocation", schedule=self.schedule.name, scheduled_time=str(scheduled_time))
        return answer

    def run(self, stopped: threading.Event) -> None:
        fire = self.first_fire()
        while True:
            delay = (self.clock.real(fire) - self._real_now()).total_seconds()
            if stopped.wait(max(delay, 0.0)):
                return
            self.run_once(fire)
            fire = next_fire(self.schedule, fire, start=self.clock.start)


def scheduled_jobs(
    schedules: list[Schedule], handlers: Callable[[str], Handler], *, start: datetime, speed: float
) -> list[ScheduledJob]:
    """A job per schedule: the sweeper on the real clock, the others at `speed`; `handlers` gives
    each function's handler (one per function, shared by its schedules, as one Lambda function is)."""
    loaded: dict[str, Handler] = {}
    jobs = []
    for schedule in schedules:
        if schedule.function not in loaded:
            loaded[schedule.function] = handlers(schedule.function)
        clock = ScheduleClock(start, 1.0 if schedule.job == "sweeper" else speed)
        jobs.append(ScheduledJob(schedule, loaded[schedule.function], clock))
    return jobs
