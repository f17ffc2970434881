"""The sweeper function: EventBridge Scheduler invokes it every minute to charge the holds a
crashed gateway left behind (`AdmissionService.sweep`, docs/COUNTERS.md "The sweeper").

The event is the schedule's input (`events/scheduler/sweeper.json`): which schedule, for which
minute, which attempt — logged, nothing else read from it. A sweep charges at most
`SWEEP_LIMIT` holds; the function sweeps again while a sweep charged that many (a backlog) and
more than `STOP_BEFORE_TIMEOUT_MS` of its time is left, and leaves the rest to the next minute.
Example: 250 expired holds → sweeps of 100, 100, 50 in one invocation; returns {"charged": 250}.

A sweep the counter store cannot take raises: the invocation fails, lands in the schedule's
dead-letter queue, and the next minute's sweep finds the same holds (settling is idempotent).
Handler: `app.handler`.
"""

from typing import Any

from aws_lambda_powertools import Logger

from paymaster.composition import sweeper

logger = Logger(service="paymaster")

SWEEP_LIMIT = 100
# A sweep of SWEEP_LIMIT holds is 16 index queries and up to 100 settlements: about 2 s when
# DynamoDB answers, so one is never started with less than this left.
STOP_BEFORE_TIMEOUT_MS = 15_000


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    charged = 0
    sweeps = 0
    while True:
        swept = sweeper().sweep(SWEEP_LIMIT)
        charged += swept
        sweeps += 1
        if swept < SWEEP_LIMIT or context.get_remaining_time_in_millis() < STOP_BEFORE_TIMEOUT_MS:
            break
    logger.info(
        "sweep done",
        extra={
            "charged": charged,
            "sweeps": sweeps,
            "backlog_left": swept == SWEEP_LIMIT,
            "scheduled_time": event.get("scheduled_time"),
            "attempt": event.get("attempt"),
        },
    )
    return {"charged": charged}
