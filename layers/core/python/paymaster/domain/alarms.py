"""Budget alarms: which thresholds a change of a counter's spend crosses, who hears of it, and
the email that says so.

A budget rule (`tokens_per_month`, `cost_*`) alerts at each of its `alert` actions' percentages;
a budget that lists no alert action alerts at `DEFAULT_ALERTS` (50, 80 and 100 %). Rate limits
(`requests_*`, `tokens_per_minute|hour|day`) never alert: their windows are minutes to a day and
refusing is the whole story.

A threshold at `at` % of `limit_units` is crossed by the one change of `spent` from below it to at
or above it, in integers: `old × 100 < limit_units × at <= new × 100`. `spent` only grows
(settlements ADD what a call cost), so each threshold of a window is crossed by exactly one
change, however the increments fall — while the limit stays. A threshold is named by its
percentage *and* its amount (`crossing_id`): a cap raised mid-window has new amounts, crossed
afresh; a cap lowered below the spend leaves thresholds no change will cross, which is why
`crossings` returns every threshold the new spend has reached and the ledger function's markers
decide which of them are new (`services.alarms.ThresholdWatch`).

Example: `search-monthly`, $2,000 (2_000_000_000 µUSD), alerts at 50 and 80 %. Spend moving from
$990 to $1,612.40 crosses 50 % ($1,000) and 80 % ($1,600) at once; the next change, $1,612.40 →
$1,700, crosses nothing.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from zoneinfo import ZoneInfo

from paymaster.domain.events import BudgetThresholdCrossed
from paymaster.domain.forecast import Projection, project
from paymaster.domain.ledger import Totals
from paymaster.domain.money import MICRO_PER_USD
from paymaster.domain.policy import Rule, unit_period
from paymaster.domain.windows import window

DEFAULT_ALERTS = (50, 80, 100)
TOP = 3  # apps and models named in an email


def alert_thresholds(rule: Rule) -> tuple[int, ...]:
    """The percentages `rule` alerts at, ascending: its alert actions', else DEFAULT_ALERTS for a
    budget; none for a rate limit."""
    if not rule.is_budget:
        return ()
    listed = sorted({action.at for action in rule.actions if action.alert})
    return tuple(listed) if listed else DEFAULT_ALERTS


def crossed(rule: Rule, old_spent: int, new_spent: int) -> tuple[int, ...]:
    """The thresholds the change from `old_spent` to `new_spent` crosses (a new counter: old 0).

    >>> from paymaster.domain.policy import Rule
    >>> rule = Rule(name="b", limit=2000, unit="cost_per_month")
    >>> crossed(rule, 990_000_000, 1_612_400_000), crossed(rule, 1_612_400_000, 1_700_000_000)
    ((50, 80), ())
    """
    limit = rule.limit_units
    return tuple(at for at in alert_thresholds(rule) if old_spent * 100 < limit * at <= new_spent * 100)


def reached(rule: Rule, spent: int) -> tuple[int, ...]:
    """The thresholds `spent` is at or above.

    >>> reached(Rule(name="b", limit=2000, unit="cost_per_month"), 1_612_400_000)
    (50, 80)
    """
    limit = rule.limit_units
    return tuple(at for at in alert_thresholds(rule) if limit * at <= spent * 100)


def threshold_amount(rule: Rule, at: int) -> int:
    """`at` % of the limit in counter units, rounded up: the least spend that reaches it."""
    return -(-rule.limit_units * at // 100)


def recipient(rule: Rule, bucket: str) -> str | None:
    """The team told of a crossing: the bucket's `team=` value (`team=search/user=alice` →
    `search`), else the rule's `when.team` when it names exactly one team, else None — a budget
    shared by several teams, or all of them, belongs to none (docs/ALARMS.md)."""
    for part in bucket.split("/"):
        dimension, _, value = part.partition("=")
        if dimension == "team" and value and value != "-":
            return value
    teams = rule.when.team or []
    return teams[0] if len(teams) == 1 else None


def crossing_id(rule: str, bucket: str, window: str, at: int, amount: int) -> str:
    """`search-monthly#team=search#2026-12#80@1600000000`: one threshold (80 %, of a $2,000
    limit: 1_600_000_000 µUSD) of one bucket's window."""
    return f"{rule}#{bucket}#{window}#{at}@{amount}"


@dataclass(frozen=True, slots=True)
class SpendChange:
    """One write to a counter as its stream record shows it: `spent` before and after."""

    rule: str
    bucket: str
    window: str
    window_end: datetime
    old_spent: int
    new_spent: int

    def crosses(self, threshold: int) -> bool:
        """Whether this change took `spent` from below `threshold` (an amount) to at or above it."""
        return self.old_spent < threshold <= self.new_spent


def crossings(rule: Rule, change: SpendChange, time: datetime) -> list[BudgetThresholdCrossed]:
    """The BudgetThresholdCrossed of every threshold `change.new_spent` has reached, at `time`
    (when the write was made): those it crossed (`change.crosses(event.threshold)`) and those
    reached before it, which are its crossings too if no earlier record's marker says otherwise
    (a cap lowered below the spend: $2,000 → $1,000 with $1,500 spent, the next change is the
    crossing of 50, 80 and 100 % of $1,000)."""
    return [
        BudgetThresholdCrossed(
            crossing_id=crossing_id(rule.name, change.bucket, change.window, at, threshold_amount(rule, at)),
            time=time,
            team=recipient(rule, change.bucket),
            rule=rule.name,
            scope=change.bucket,
            window=change.window,
            resets_at=change.window_end,
            time_zone=rule.time_zone,
            threshold_pct=at,
            unit=rule.unit,
            limit=rule.limit_units,
            cap=rule.cap,
            threshold=threshold_amount(rule, at),
            spent=change.new_spent,
        )
        for at in reached(rule, change.new_spent)
    ]


# --- the email -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TeamSpend:
    """What the ledger's rollups say of the team's UTC `month`: spend by app and by model."""

    month: str
    apps: Mapping[str, Totals]
    models: Mapping[str, Totals]


def amount(unit: str, value: int) -> str:
    """A figure in a rule's unit, for people: `$1,612.40` (µUSD, to the cent rounded down, or to
    the µUSD below a cent), `1,250,000 tokens`.

    >>> amount("cost_per_month", 1_612_400_000), amount("cost_per_day", 4_210), amount("tokens_per_month", 1_250_000)
    ('$1,612.40', '$0.00421', '1,250,000 tokens')
    """
    return usd_text(value) if unit.startswith("cost_") else f"{value:,} tokens"


def usd_text(micros: int) -> str:
    """Rounded down to the cent, as `percent` rounds: $1,999.996 of $2,000 (99.9 %) reads
    `$1,999.99`, never `$2,000.00` beside a percentage short of 100."""
    dollars = Decimal(micros) / MICRO_PER_USD
    if micros and abs(micros) < MICRO_PER_USD // 100:
        return f"${dollars.normalize():f}"
    return f"${dollars.quantize(Decimal('0.01'), rounding=ROUND_FLOOR):,}"


def percent(part: int, whole: int) -> str:
    """One decimal, rounded down so that 79.99 % never reads as 80 %: (1_612, 2_000) → `80.6 %`."""
    tenths = part * 1000 // whole if whole else 0
    return f"{tenths // 10}.{tenths % 10} %"


def _local(moment: datetime, zone_name: str) -> str:
    local = moment.astimezone(ZoneInfo(zone_name))
    return local.strftime("%a %d %b %Y %H:%M %Z")


def _left(now: datetime, end: datetime) -> str:
    seconds = max(0, int((end - now).total_seconds()))
    days, hours = divmod(seconds // 3600, 24)
    if days:
        return f"{days} day{'s' if days != 1 else ''} {hours} h"
    return f"{hours} h {seconds % 3600 // 60} min"


def _top(rows: Mapping[str, Totals]) -> list[str]:
    ranked = sorted(rows.items(), key=lambda row: (-row[1].cost, row[0]))[:TOP]
    if not ranked:
        return ["    (nothing recorded yet)"]
    width = max(len(name) for name, _ in ranked)
    return [
        f"    {name:<{width}}  {usd_text(totals.cost)}  ({totals.calls:,} call{'' if totals.calls == 1 else 's'})"
        for name, totals in ranked
    ]


def alarm_projection(event: BudgetThresholdCrossed, now: datetime) -> Projection:
    """The crossing's spend projected to its window's end at its mean rate so far, against the
    cap it carries: all from the event, whatever the live policy has become (a bucket's own daily
    spend is not kept; the team's day rollups are not the bucket's)."""
    # The crossing's window is the one that holds the last instant before its reset.
    last_instant = event.resets_at - timedelta(microseconds=1)
    current = window(unit_period(event.unit), ZoneInfo(event.time_zone), last_instant)
    return project(event.spent, event.cap, current, now)


def policy_changes(event: BudgetThresholdCrossed, rule: Rule) -> list[str]:
    """What of the crossing's figures the live rule no longer has: `limit $2,000.00 → $4,000.00`.

    The cap is named only when the limit stayed (a limit changed moves its cap with it)."""
    changes = []
    if rule.unit != event.unit:
        changes.append(f"unit {event.unit} → {rule.unit}")
    if rule.limit_units != event.limit:
        changes.append(f"limit {amount(event.unit, event.limit)} → {amount(rule.unit, rule.limit_units)}")
    elif rule.cap != event.cap:
        changes.append(f"requests refused from {amount(event.unit, event.cap)} → {amount(rule.unit, rule.cap)}")
    if rule.time_zone != event.time_zone:
        changes.append(f"time zone {event.time_zone} → {rule.time_zone}")
    return changes


def _next_steps(event: BudgetThresholdCrossed, rule: Rule) -> list[str]:
    """What the rule does from here: each downgrade (the live rule's: the event carries none) and
    the block, marked `now` when the crossing's spend had reached it, of the crossing's limit."""
    steps: list[tuple[int, bool, str]] = [
        (action.at, event.spent * 100 >= event.limit * action.at, f"requests are downgraded to {action.downgrade_to}")
        for action in rule.actions
        if action.downgrade_to is not None
    ]
    block_at = min((action.at for action in rule.actions if action.block), default=100)
    refused = "requests are refused (HTTP 429 insufficient_quota) until the window resets"
    steps.append((block_at, event.spent >= event.cap, refused))
    return [f"    at {at} %{' (now)' if reached else ''}: {what}" for at, reached, what in sorted(steps)]


def alarm_subject(event: BudgetThresholdCrossed) -> str:
    """`[paymaster] search: search-monthly reached 80 % ($1,612.40 of $2,000.00)`"""
    return (
        f"[paymaster] {event.team}: {event.rule} reached {event.threshold_pct} % "
        f"({amount(event.unit, event.spent)} of {amount(event.unit, event.limit)})"
    )


def alarm_text(
    event: BudgetThresholdCrossed, rule: Rule, projection: Projection, spend: TeamSpend, now: datetime
) -> str:
    """The email's body: the figures first, then where it is heading, who spends it, what happens
    next. Every figure is the event's; `rule` is the live one, for what the event does not carry
    (its downgrades, its `per`), and one line says what of it differs from the event.
    `projection` is the bucket's spend projected to the window's end (`alarm_projection`);
    `spend` the team's top apps and models of the ledger's UTC month; `now` when it is written."""
    unit, limit, cap = event.unit, event.limit, event.cap
    zone = event.time_zone
    per = f", per {' and '.join(rule.per)}" if rule.per else ""
    changes = policy_changes(event, rule)
    changed = [f"The policy has changed since: {'; '.join(changes)}."] if changes else []
    refused_from = "" if cap == limit else f" (requests refused from {amount(unit, cap)})"
    forecast = (
        f"    Projected:  {amount(unit, projection.at_end)} by the reset, at {amount(unit, projection.per_day)} a day"
    )
    if projection.cap_reached_at is not None and projection.spent < cap:
        forecast += f"; the cap is reached around {_local(projection.cap_reached_at, zone)}"
    elif projection.at_end <= cap:
        forecast += " (under the cap)"
    months_note = "" if zone == "UTC" else f"; the budget's window runs in {zone}"
    lines = [
        f"Team {event.team} has used {percent(event.spent, limit)} of the budget {event.rule}"
        f" (alert at {event.threshold_pct} %).",
        *changed,
        "",
        f"    Team:       {event.team}",
        f"    Rule:       {event.rule} ({event.unit}{per})",
        f"    Scope:      {event.scope}",
        f"    Spent:      {amount(unit, event.spent)}",
        f"    Cap:        {amount(unit, limit)}{refused_from}",
        f"    Used:       {percent(event.spent, limit)}",
        f"    Resets:     {_local(event.resets_at, zone)} ({zone}), in {_left(now, event.resets_at)}",
        forecast,
        "",
        f"Top apps of team {event.team} in {spend.month} (UTC calendar month{months_note}):",
        *_top(spend.apps),
        f"Top models of team {event.team} in {spend.month} (UTC calendar month{months_note}):",
        *_top(spend.models),
        "",
        "What happens next:",
        *_next_steps(event, rule),
        "",
        f"Crossing {event.crossing_id}. You get one email per threshold per window.",
    ]
    return "\n".join(lines) + "\n"
