"""Where a budget's spend is heading: what it will have spent when its window ends, and when it
reaches its cap, at the rate it is burning now.

The burn rate is the recent daily spend when the caller has some — the mean of the last complete
days it gives (at most `RECENT_DAYS`), so a surge last week counts more than a quiet start of the
month — else the window's mean so far: spend ÷ time elapsed, the elapsed time counted as at least
`MIN_ELAPSED` so that the first call of a month is not extrapolated over thirty days. The
projection is the spend so far plus the rate times the time left, never less than the spend so
far. A day is 24 hours here: on a DST day the rate is off by at most one hour in 24.

Example: a $2,000 monthly budget (November, 30 days) on 2026-11-21T00:00, $1,000 spent, the last
7 days $80, $80, … → 80 $/day × 10 days left → $1,800 at the end: under the cap. At $120 a day →
$2,200: the cap is reached (2,000 − 1,000) ÷ 120 = 8⅓ days later, on 2026-11-29 at 08:00.
Without recent days: $1,000 in 20 days → 50 $/day → $1,500 at the end.

Amounts are in the rule's counter units (micro-USD for cost, tokens otherwise); the projection
rounds up, as every charge does.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Literal

from paymaster.domain.windows import Window

RECENT_DAYS = 7
MIN_ELAPSED = timedelta(hours=1)
DAY_S = 86_400

Basis = Literal["recent_days", "window_average"]


@dataclass(frozen=True, slots=True)
class Projection:
    spent: int
    at_end: int  # projected spend when the window ends, rounded up; never below `spent`
    per_day: int  # the burn rate used, per 24 hours, rounded up
    basis: Basis
    # When spend reaches the cap at this rate: `now` when it already has, None when not before
    # the window ends (or nothing is being spent).
    cap_reached_at: datetime | None

    def exceeds(self, cap: int) -> bool:
        return self.at_end > cap


def project(spent: int, cap: int, window: Window, now: datetime, recent_days: Sequence[int] = ()) -> Projection:
    """The projection of `spent` (at `now`, inside `window`) to the window's end.

    `recent_days`: the spend of each complete day before today, oldest first, as the caller
    knows it (the ledger's day rollups); only the last `RECENT_DAYS` are used.

    >>> from datetime import UTC
    >>> november = Window("2026-11", datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    >>> p = project(1_000, 2_000, november, datetime(2026, 11, 21, tzinfo=UTC), [120] * 7)
    >>> p.at_end, p.cap_reached_at.isoformat()
    (2200, '2026-11-29T08:00:00+00:00')
    """
    if spent < 0 or cap < 0:
        raise ValueError("spend and cap are never negative")
    recent = list(recent_days)[-RECENT_DAYS:]
    if any(day < 0 for day in recent):
        raise ValueError("a day's spend is never negative")
    basis: Basis
    if recent:
        basis, rate_per_s = "recent_days", Fraction(sum(recent), len(recent) * DAY_S)
    else:
        elapsed = max(now - window.start, MIN_ELAPSED).total_seconds()
        basis, rate_per_s = "window_average", Fraction(spent) / Fraction(elapsed)
    left_s = Fraction(window.seconds_left(now))
    at_end = spent + math.ceil(rate_per_s * left_s)
    return Projection(
        spent=spent,
        at_end=at_end,
        per_day=math.ceil(rate_per_s * DAY_S),
        basis=basis,
        cap_reached_at=_cap_reached_at(spent, cap, rate_per_s, left_s, now),
    )


def _cap_reached_at(spent: int, cap: int, rate_per_s: Fraction, left_s: Fraction, now: datetime) -> datetime | None:
    if spent >= cap:
        return now
    if rate_per_s <= 0:
        return None
    to_cap_s = Fraction(cap - spent) / rate_per_s
    if to_cap_s > left_s:
        return None
    return now + timedelta(seconds=float(to_cap_s))
