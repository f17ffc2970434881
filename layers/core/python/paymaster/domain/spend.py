"""A team's spend as `GET /v1/usage` reports it: months of the ledger's rollups, whole or broken
down by app, model or user.

Months are UTC months, as the ledger's (`domain/ledger.py`): the spend of `2026-12` is what the
calls admitted from 2026-12-01T00:00Z to 2027-01-01T00:00Z were charged, whatever the time zone
of the budgets that counted them.

Asked for nothing, the answer is this month to date and last month: on 2026-12-03 that is
`2026-12` (to date) and `2026-11`. Asked `?month=2026-11`, that month; `?by=model` (with or
without a month; this month by default) adds its breakdown, one row per model.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, get_args

from paymaster.domain.errors import InvalidRequestError
from paymaster.domain.ledger import Dimension, Totals

DIMENSIONS: Final[tuple[Dimension, ...]] = get_args(Dimension)
_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


@dataclass(frozen=True, slots=True)
class SpendQuery:
    """What the caller asked: a month (None: this one and the last) and a dimension (None: totals)."""

    month: str | None = None
    by: Dimension | None = None

    def months(self, now: datetime) -> tuple[str, ...]:
        """The months to answer, newest first: on 2026-01-15 nothing asked → (`2026-01`, `2025-12`);
        `?by=app` → (`2026-01`,); `?month=2025-06` → (`2025-06`,)."""
        this = utc_month(now)
        if self.month is None and self.by is None:
            return this, month_before(this)
        return (self.month or this,)


@dataclass(frozen=True, slots=True)
class Share:
    """One row of a breakdown: the app, model or user named by `value` — None for the calls
    that named no user — and what its calls add up to."""

    value: str | None
    totals: Totals


@dataclass(frozen=True, slots=True)
class MonthSpend:
    """A team's month: `to_date` while it is the current month (still counting)."""

    month: str
    to_date: bool
    totals: Totals
    by: Dimension | None = None
    breakdown: tuple[Share, ...] = ()


def is_month(text: str) -> bool:
    """`2026-11` is a month; `2026-13`, `2026-1` and `Nov 2026` are not."""
    return _MONTH.fullmatch(text) is not None


def spend_query(month: str | None, by: str | None) -> SpendQuery:
    """The query string's `month` and `by`, checked: a bad one is the caller's error, naming it.

    Example: (`2026-11`, `model`) → SpendQuery(`2026-11`, `model`); (`2026-13`, None) → 400 on
    `month`; (None, `team`) → 400 on `by` (a team sees only its own spend, so there is nothing
    to break down by team).
    """
    if month is not None and not is_month(month):
        raise InvalidRequestError(
            f"Invalid `month` {month!r}: give a UTC month as YYYY-MM, e.g. 2026-11.", param="month"
        )
    if by is not None and by not in DIMENSIONS:
        raise InvalidRequestError(
            f"Invalid `by` {by!r}: spend breaks down by {', '.join(DIMENSIONS)}.",
            param="by",
        )
    dimension = next((dimension for dimension in DIMENSIONS if dimension == by), None)
    return SpendQuery(month, dimension)


def utc_month(now: datetime) -> str:
    """2026-11-30T23:30-08:00 → `2026-12`: the ledger's month is UTC's."""
    return now.astimezone(UTC).strftime("%Y-%m")


def month_before(month: str) -> str:
    """`2026-12` → `2026-11`; `2026-01` → `2025-12`."""
    year, number = (int(part) for part in month.split("-"))
    year, index = divmod(year * 12 + number - 2, 12)
    return f"{year:04d}-{index + 1:02d}"


def breakdown(by: Dimension, rows: Mapping[str, Totals], team_total: Totals | None) -> tuple[Totals, tuple[Share, ...]]:
    """The month's total and its rows, costliest first (then most calls, then by name), summing
    to the total.

    Every call has an app and a model, so by app or model the rows are the whole month and the
    total is their sum (`team_total` is not needed: None). Not every call names a user: by user,
    the calls that named none are one more row, `None`, the team's total minus the users' — so
    the total must have been read after the rows, to hold every call they hold. Example: total
    (3 calls, 42 µUSD), users u-1 (1, 30) → rows u-1 (1, 30) and None (2, 12).
    """
    shares = sorted(
        (Share(value, totals) for value, totals in rows.items()),
        key=lambda share: (-share.totals.cost, -share.totals.calls, share.value or ""),
    )
    listed = sum((share.totals for share in shares), Totals())
    if by != "user":
        return listed, tuple(shares)
    if team_total is None:
        raise ValueError("a breakdown by user needs the team's total, read after the rows")
    unnamed = team_total - listed
    if unnamed.calls:
        shares.append(Share(None, unnamed))
    return team_total, tuple(shares)
