"""`GET /v1/usage` on the wire: the caller's team, its rules and its spend.

    {"object": "usage", "team": "search", "app": "ranker", "env": "prod",
     "rules": [{"rule": "search-monthly", "unit": "cost_per_month", "limit": "100", "used": "0.000042", …}],
     "spend": {"object": "usage.spend", "source": "ledger", "time_zone": "UTC",
               "as_of": "2026-12-03T10:15:42Z",
               "months": [{"month": "2026-12", "to_date": true, "calls": 3,
                           "cost_micro_usd": 42, "cost_usd": "0.000042",
                           "tokens": {"input": 63, "output": 12, "cache_read": 0, "cache_write": 0}},
                          {"month": "2026-11", "to_date": false, "calls": 0, …}]}}

With `?by=model` (or app, user) a month also carries `"by": "model"` and `"breakdown"`: one row
per model, `{"model": "gpt-4o-mini", "calls": 2, "cost_micro_usd": 30, …}`, costliest first,
summing to the month. By user, the calls that named no user are the row `{"user": null, …}`.
Money is exact: integer micro-USD, and the same as a decimal string of USD.
"""

from dataclasses import asdict
from datetime import UTC
from typing import Any

from paymaster.domain.identity import Caller
from paymaster.domain.ledger import Totals
from paymaster.domain.money import format_usd
from paymaster.domain.spend import MonthSpend
from paymaster.services.usage import TeamUsage


def usage_body(caller: Caller, usage: TeamUsage) -> dict[str, Any]:
    return {
        "object": "usage",
        "team": caller.team,
        "app": caller.app,
        "env": caller.env,
        "rules": [asdict(rule) for rule in usage.rules],
        "spend": {
            "object": "usage.spend",
            "source": "ledger",
            "time_zone": "UTC",
            "as_of": usage.as_of.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "months": [month_body(month) for month in usage.months],
        },
    }


def month_body(month: MonthSpend) -> dict[str, Any]:
    body: dict[str, Any] = {"month": month.month, "to_date": month.to_date, **totals_body(month.totals)}
    if month.by is not None:
        body["by"] = month.by
        body["breakdown"] = [{month.by: share.value, **totals_body(share.totals)} for share in month.breakdown]
    return body


def totals_body(totals: Totals) -> dict[str, Any]:
    """(3 calls, 42 µUSD, 63 in, 12 out) → calls 3, cost_micro_usd 42, cost_usd "0.000042", tokens;
    `denials` the requests a rule refused (never in calls or cost): an app refused all month is a
    row of 0 calls that says why."""
    return {
        "calls": totals.calls,
        "denials": totals.denials,
        "cost_micro_usd": totals.cost,
        "cost_usd": format_usd(totals.cost),
        "tokens": {
            "input": totals.input_tokens,
            "output": totals.output_tokens,
            "cache_read": totals.cache_read_tokens,
            "cache_write": totals.cache_write_tokens,
        },
    }
