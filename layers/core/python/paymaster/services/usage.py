"""`GET /v1/usage`: the caller's team — its rules from the counters, its spend from the ledger.

The rules (limit, used, reserved, remaining, reset) are what admission enforces, read from the
counters as they are now. The spend is what the ledger function has added up from settled calls
(docs/LEDGER.md), seconds behind them: by month, and by app, model or user within one. Only the
caller's own team is ever read; the team comes from IAM, never from the query.

Reads per answer: the rules' one BatchGetItem on the counters, then on the ledger
- nothing asked: 2 GetItem (this month's and last month's TOTAL);
- `?month=M`: 1 GetItem;
- `?by=app|model`: 1 Query of the month's partition for that dimension (the total is its sum);
- `?by=user`: 1 Query, then 1 GetItem of the TOTAL (the calls that named no user are the rest).
"""

from dataclasses import dataclass
from datetime import datetime

from paymaster.domain.errors import LedgerUnavailableError, StoreUnavailableError
from paymaster.domain.identity import Caller
from paymaster.domain.ledger import Rollup
from paymaster.domain.spend import MonthSpend, SpendQuery, breakdown, utc_month
from paymaster.ports import Clock, SpendLedger
from paymaster.services.admission import AdmissionService, RuleUsage


@dataclass(frozen=True, slots=True)
class TeamUsage:
    """What `GET /v1/usage` answers: the rules, and the spend of `months` (newest first) as of `as_of`."""

    rules: list[RuleUsage]
    months: tuple[MonthSpend, ...]
    as_of: datetime


class UsageService:
    def __init__(self, admission: AdmissionService, ledger: SpendLedger, clock: Clock) -> None:
        self._admission = admission
        self._ledger = ledger
        self._clock = clock

    def usage(self, caller: Caller, query: SpendQuery, user: str | None = None) -> TeamUsage:
        """The caller team's rules (`user` picks the per-user buckets) and spend as `query` asks.

        Raises StoreUnavailableError when the counters cannot be read, LedgerUnavailableError
        when the ledger cannot: either way the whole answer fails, never a part of it silently.
        """
        now = self._clock()
        rules = self._admission.usage(caller, user)
        this_month = utc_month(now)
        try:
            months = tuple(self._month(caller.team, month, month == this_month, query) for month in query.months(now))
        except StoreUnavailableError as error:
            raise LedgerUnavailableError(
                f"The ledger cannot be read now ({error.message}), so the team's spend cannot be told; "
                "try again shortly."
            ) from error
        return TeamUsage(rules, months, now)

    def _month(self, team: str, month: str, to_date: bool, query: SpendQuery) -> MonthSpend:
        if query.by is None:
            return MonthSpend(month, to_date, self._ledger.rollup(Rollup(team, month)))
        rows = self._ledger.breakdown(team, month, query.by)
        # Read after the rows, so that it holds every call they hold: the rest named no user.
        team_total = self._ledger.rollup(Rollup(team, month)) if query.by == "user" else None
        totals, shares = breakdown(query.by, rows, team_total)
        return MonthSpend(month, to_date, totals, query.by, shares)
