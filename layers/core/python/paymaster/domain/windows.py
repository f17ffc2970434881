"""Calendar windows. A counter is keyed by its window, so a new window is a new counter and
nothing ever resets a live one.

Minute and hour windows are aligned to UTC (a rate limit has no calendar); day, week (ISO,
Monday first) and month windows follow the rule's time zone, DST included: the day of a
spring-forward change in America/New_York is 23 hours long.

    >>> from datetime import datetime, UTC
    >>> from zoneinfo import ZoneInfo
    >>> window("month", ZoneInfo("Asia/Tokyo"), datetime(2026, 11, 30, 15, 30, tzinfo=UTC)).id
    '2026-12'
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Period = Literal["minute", "hour", "day", "week", "month"]


@dataclass(frozen=True, slots=True)
class Window:
    id: str  # stable and sortable within a period, e.g. "2026-11", "2026-W48", "2026-11-29T18:25Z"
    start: datetime
    end: datetime  # exclusive: the reset time

    def seconds_left(self, now: datetime) -> float:
        """Real seconds (not wall-clock): the end of a 23-hour DST day is 22 h after 01:00."""
        return max(0.0, self.end.timestamp() - now.timestamp())


def window(period: Period, zone: ZoneInfo, now: datetime) -> Window:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if period in ("minute", "hour"):
        utc = now.astimezone(UTC)
        if period == "minute":
            start = utc.replace(second=0, microsecond=0)
            return Window(start.strftime("%Y-%m-%dT%H:%MZ"), start, start + timedelta(minutes=1))
        start = utc.replace(minute=0, second=0, microsecond=0)
        return Window(start.strftime("%Y-%m-%dT%HZ"), start, start + timedelta(hours=1))

    today = now.astimezone(zone).date()
    if period == "day":
        return Window(today.isoformat(), _midnight(today, zone), _midnight(today + timedelta(days=1), zone))
    if period == "week":
        monday = today - timedelta(days=today.weekday())
        year, week, _ = monday.isocalendar()
        return Window(f"{year}-W{week:02d}", _midnight(monday, zone), _midnight(monday + timedelta(days=7), zone))
    first = today.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return Window(first.strftime("%Y-%m"), _midnight(first, zone), _midnight(following, zone))


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)
