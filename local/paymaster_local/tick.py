"""`paymaster local tick <schedule> [--team T] [--at ISO-time]`: one schedule's handler, now.

Runs, against the local stack running under the state directory (`RunningStack`), the handler
of one schedule the CDK app defines, with the input that schedule sends (`timers.schedule_event`)
for `--at`, or for what the schedules' clock says now (the stack's `--clock-speed` included), and
prints the handler's answer as JSON on stdout (its logs go to stderr). The handler runs in this
process with the functions' environment the stack wrote, as the runner would run it.

    paymaster local tick month-close --team search --at 2026-12-01T00:45-08:00
    {"team": "search", "month": "2026-11", "written": true, "published": true, "earlier_published": []}

A month close asked for before its month's last calls can be in the ledger (`--at` before 00:45
on the 1st) is refused: `cli.run` prints the MonthNotOverError in one line and exits 2.

The sweeper charges what has expired by the real clock whatever `--at` says (its `now` is the
gateway's clock, `timers.py`).
"""

import json
import os
import sys
from contextlib import redirect_stdout
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from paymaster.adapters.policy_file import load_policy
from paymaster.domain.schedules import Job, Schedule, schedules
from paymaster_local.functions import load_handler
from paymaster_local.stack import RunningStack
from paymaster_local.timers import clock_from_environ, invoke

TEAM_JOBS: tuple[Job, ...] = ("digest", "month-close")


class TickError(Exception):
    """The schedule asked for is not one the policy defines."""


def find_schedule(found: list[Schedule], job: Job, team: str | None) -> Schedule:
    """The schedule of `job` (for `team`, the digest's and month close's)."""
    if job in TEAM_JOBS and team is None:
        raise TickError(f"the {job} runs per team: name one with --team")
    if job not in TEAM_JOBS and team is not None:
        raise TickError(f"the {job} runs for every team: it takes no --team")
    for schedule in found:
        if schedule.job == job and schedule.team == team:
            return schedule
    teams = sorted({schedule.team for schedule in found if schedule.job == job and schedule.team})
    raise TickError(f"no {job} schedule for team {team!r}; the policy has one for: {', '.join(teams) or 'no team'}")


def parse_at(text: str) -> datetime:
    """`2026-12-01T00:45-08:00` or `…Z`; a time without its offset is refused (which zone?)."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise TickError(f"--at {text!r} is not an ISO 8601 time, e.g. 2026-12-01T00:45-08:00") from None
    if at.tzinfo is None:
        raise TickError(f"--at {text!r} has no UTC offset: add one (Z, -08:00, …)")
    return at.astimezone(UTC)


def tick(state_dir: Path, job: Job, team: str | None, at: datetime | None, out: IO[str]) -> int:
    running = RunningStack.read(state_dir)
    schedule = find_schedule(schedules(load_policy(running.policy_file)), job, team)
    scheduled_time = at or clock_from_environ(running.environment).at(datetime.now(UTC)).replace(microsecond=0)
    os.environ.update(running.environment)
    # The handler's loggers are made as it is imported, on stdout as in Lambda: here on stderr,
    # so that stdout is the answer alone.
    with redirect_stdout(sys.stderr):
        answer = invoke(schedule, load_handler(schedule.function), scheduled_time)
    print(json.dumps({"schedule": schedule.name, "scheduled_time": scheduled_time.isoformat(), **answer}), file=out)
    return 0
