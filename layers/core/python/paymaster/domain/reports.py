"""What the scheduled jobs add up, pure: a team's month and day in its own time zone, the ledger
entries that fall in them, and the budget buckets the policy can name.

A team's month is its `alerts.time_zone`'s, while the ledger's partitions are UTC months
(`domain/ledger.py`). A team month therefore spans one or two UTC partitions, and is read as a
sort-key range of each:

    America/Los_Angeles, November 2026 = [2026-11-01T07:00Z, 2026-12-01T08:00Z)
      → CALLS#<team>#2026-11 from 2026-11-01T07:00Z, CALLS#<team>#2026-12 up to 2026-12-01T08:00Z
    a call at 2026-11-30T23:30-08:00 = 2026-12-01T07:30Z is in the second range: November's.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import product
from typing import TypeVar
from zoneinfo import ZoneInfo

from paymaster.domain.events import BudgetFinal, MonthClosed, MonthRow, MonthTotals, RuleDenials, month_close_id
from paymaster.domain.ledger import LedgerEntry, Totals, totals
from paymaster.domain.limits import RequestFacts, bucket
from paymaster.domain.policy import Policy, Rule
from paymaster.domain.schedules import MONTH_CLOSE_MARGIN
from paymaster.domain.windows import Window, window

K = TypeVar("K", bound=str | None)


def team_month(month: str, zone: ZoneInfo) -> Window:
    """The month `2026-11` in `zone`: [its first midnight, the next month's), in UTC.

    Example: (`2026-11`, America/Los_Angeles) → 2026-11-01T07:00Z to 2026-12-01T08:00Z (DST ends
    on 1 Nov at 09:00Z, after midnight, so the month starts at UTC−7 and ends at UTC−8).
    """
    year, number = (int(part) for part in month.split("-"))
    found = window("month", zone, datetime(year, number, 15, 12, tzinfo=zone))
    return Window(found.id, found.start.astimezone(UTC), found.end.astimezone(UTC))


def month_to_close(zone: ZoneInfo, now: datetime) -> str:
    """The month before the one `now` is in, in `zone`: at 2026-12-01T08:45Z in Los Angeles
    (00:45 on 1 December) → `2026-11`; at 2026-12-01T07:30Z (still 30 November there) → `2026-10`."""
    first = window("month", zone, now).start
    return window("month", zone, first - timedelta(microseconds=1)).id


def closable_at(month: str, zone: ZoneInfo) -> datetime:
    """The first instant `month` may be closed in `zone`: its end plus MONTH_CLOSE_MARGIN, once
    its last calls can have reached the ledger. `2026-11` in Los Angeles → 2026-12-01T08:45Z
    (00:45 on 1 December there); Europe/Berlin → 2026-11-30T23:45Z."""
    return team_month(month, zone).end + MONTH_CLOSE_MARGIN


def team_day(zone: ZoneInfo, day: date) -> Window:
    """`day` in `zone`, in UTC: 2026-11-30 in Los Angeles → 2026-11-30T08:00Z to 2026-12-01T08:00Z."""
    found = window("day", zone, datetime(day.year, day.month, day.day, 12, tzinfo=zone))
    return Window(found.id, found.start.astimezone(UTC), found.end.astimezone(UTC))


def utc_months(span: Window) -> tuple[str, ...]:
    """The ledger's UTC months `span` overlaps, oldest first: the November above → (`2026-11`, `2026-12`)."""
    months: list[str] = []
    moment = span.start.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    while moment < span.end:
        months.append(moment.strftime("%Y-%m"))
        moment = (moment + timedelta(days=32)).replace(day=1)
    return tuple(months)


@dataclass(frozen=True, slots=True)
class Tally:
    """What a span's entries add up to: the team's total, by app, model and user (None: calls that
    named no user), and denials by rule. A denial counts in the total, its app and its rule, as in
    the ledger's rollups (`domain.ledger.rollups`)."""

    total: Totals = field(default_factory=Totals)
    by_app: dict[str, Totals] = field(default_factory=dict)
    by_model: dict[str, Totals] = field(default_factory=dict)
    by_user: dict[str | None, Totals] = field(default_factory=dict)
    denials_by_rule: dict[str, int] = field(default_factory=dict)


def tally(entries: Iterable[LedgerEntry]) -> Tally:
    """Adds up entries. Example: ranker/u-1 settled $0.00003, ranker (no user) released $0, ranker
    denied by `search-monthly` → total 2 calls, $0.00003, 1 denial; app ranker the same; model rows
    only for the two calls; user rows u-1 (1, $0.00003) and None (1, $0); denials {search-monthly: 1}."""
    result = Tally()
    total = Totals()
    for entry in entries:
        adds = totals(entry)
        total += adds
        result.by_app[entry.app] = result.by_app.get(entry.app, Totals()) + adds
        if entry.denial is not None:
            rule = entry.denial.rule
            result.denials_by_rule[rule] = result.denials_by_rule.get(rule, 0) + 1
            continue
        result.by_model[entry.model] = result.by_model.get(entry.model, Totals()) + adds
        result.by_user[entry.user] = result.by_user.get(entry.user, Totals()) + adds
    return Tally(total, result.by_app, result.by_model, result.by_user, result.denials_by_rule)


def top(rows: Mapping[K, Totals], count: int | None = None) -> list[tuple[K, Totals]]:
    """Rows costliest first, then most calls, then by name; the first `count` (all: None)."""
    ordered = sorted(rows.items(), key=lambda row: (-row[1].cost, -row[1].calls, row[0] or ""))
    return ordered if count is None else ordered[:count]


@dataclass(frozen=True, slots=True)
class BudgetBucket:
    """A budget rule's bucket the policy can name, and the teams whose calls count in it (who is
    told about it): `per: [team]` → one bucket per team; no `per` → one shared bucket `*`, whose
    teams are every team the rule can match."""

    rule: Rule
    bucket: str
    teams: tuple[str, ...]


def budget_buckets(policy: Policy, team: str | None = None) -> list[BudgetBucket]:
    """Every bucket of every budget rule that the policy can enumerate — from the teams, apps,
    envs and models it names — optionally only those `team`'s calls count in.

    A rule split `per: [user]` (or any `per` naming `user`) is left out: users are the caller's
    claim, unknown to the policy, and listing their buckets would take a Scan of the counters.
    `when.user` and `when.metadata` are not checked (the policy cannot list those values): such a
    rule's buckets are listed for every team it can otherwise match.

    Example (policy/demo.yaml): `search-monthly` (per team, when team search) → one bucket
    `team=search` for search; `dev-daily` (per team, app; when env dev) → `team=search/app=playground`
    for search; `per-user-daily-tokens` is left out (and is no budget anyway).
    """
    found: dict[tuple[str, str], tuple[Rule, set[str]]] = {}
    for rule in policy.rules:
        if not rule.is_budget or "user" in rule.per:
            continue
        for facts in _facts(policy):
            if team is not None and facts.team != team:
                continue
            if not _matches_known(rule, facts):
                continue
            key = (rule.name, bucket(rule, facts))
            found.setdefault(key, (rule, set()))[1].add(facts.team)
    return [BudgetBucket(rule, name, tuple(sorted(teams))) for (_, name), (rule, teams) in found.items()]


def _facts(policy: Policy) -> Iterable[RequestFacts]:
    for team_name, team in policy.teams.items():
        for (app_name, app), model in product(team.apps.items(), policy.models_for(team_name)):
            yield RequestFacts(team=team_name, app=app_name, env=app.env, model=model)


def _matches_known(rule: Rule, facts: RequestFacts) -> bool:
    for dimension in ("team", "app", "model", "env"):
        allowed: Sequence[str] | None = getattr(rule.when, dimension)
        if allowed is not None and facts.value(dimension) not in allowed:
            return False
    return True


def month_closed(
    team: str,
    zone_name: str,
    span: Window,
    *,
    counted: Tally,
    budgets: Sequence[BudgetFinal],
    now: datetime,
) -> MonthClosed:
    """The MonthClosed of `team`'s month `span` (`team_month`), from its entries' tally."""

    def rows(found: Mapping[K, Totals]) -> tuple[MonthRow, ...]:
        return tuple(MonthRow(name=name, totals=MonthTotals.of(added)) for name, added in top(found))

    return MonthClosed(
        request_id=month_close_id(team, span.id),
        time=now,
        team=team,
        month=span.id,
        time_zone=zone_name,
        starts_at=span.start,
        ends_at=span.end,
        totals=MonthTotals.of(counted.total),
        by_app=rows(counted.by_app),
        by_model=rows(counted.by_model),
        by_user=rows(counted.by_user),
        denials_by_rule=tuple(
            RuleDenials(rule=rule, denials=count)
            for rule, count in sorted(counted.denials_by_rule.items(), key=lambda item: (-item[1], item[0]))
        ),
        budgets=tuple(budgets),
    )
