"""The forecast function: EventBridge Scheduler invokes it once a day (`Forecast.run`,
docs/SCHEDULES.md) to warn each budget's teams whose spend is projected past its cap.

The event is the schedule's input (`events/scheduler/forecast.json`); its `scheduled_time` is
the `now` the projection is made at, so that a retried invocation projects the same day. A run
that fails (the counters or the ledger unavailable, a topic refusing a notice) raises:
Lambda retries it twice, then it lands on the dead-letter queue; the day's markers keep a retry
from warning twice.
Handler: `app.handler`.
"""

from datetime import datetime
from typing import Any

from paymaster.composition import forecast


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    warned = forecast().run(datetime.fromisoformat(event["scheduled_time"]))
    return {"warned": [f"{warning.team}/{warning.rule}/{warning.bucket}" for warning in warned]}
