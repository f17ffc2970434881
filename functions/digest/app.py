"""The daily digest function: EventBridge Scheduler invokes it once a day per team, at the
team's `alerts.digest_at` in its `alerts.time_zone` (`Digest.send`, docs/SCHEDULES.md).

The event is the schedule's input (`events/scheduler/digest.json`): the team, and the
`scheduled_time` whose previous local day the digest covers. A run that fails raises:
Lambda retries it twice, then it lands on the dead-letter queue; the day's marker keeps a retry
from sending a second digest. Handler: `app.handler`.
"""

from datetime import datetime
from typing import Any

from paymaster.composition import digest


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    notice = digest().send(event["team"], datetime.fromisoformat(event["scheduled_time"]))
    return {"team": event["team"], "sent": notice is not None, "subject": notice.subject if notice else None}
