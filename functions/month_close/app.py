"""The month-close function: EventBridge Scheduler invokes it, one schedule per team, at 00:45 on
the 1st in the team's time zone (`MonthClose.close`, docs/SCHEDULES.md), once the month's last
calls can be in the ledger; a close asked for earlier (a `month` named by hand that is not over
by that margin) raises MonthNotOverError and writes nothing.

The event is the schedule's input (`events/scheduler/month-close.json`): the team, and the
`scheduled_time` the month to close is found from — the month before the one that time is in,
in the team's zone — so that a retried or late invocation closes the same month. `month`, when
given (a close run by hand), names it instead. A run that fails (the ledger or the bus
unavailable) raises: Lambda retries it twice, then it lands on the dead-letter queue; running it
again is safe, and the next month's close publishes a report whose event never went out.
Handler: `app.handler`.
"""

from datetime import datetime
from typing import Any

from paymaster.composition import month_close


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    closed = month_close().close(
        event["team"], datetime.fromisoformat(event["scheduled_time"]), month=event.get("month")
    )
    return {
        "team": closed.team,
        "month": closed.month,
        "written": closed.written,
        "published": closed.published,
        "earlier_published": list(closed.earlier_published),
    }
