"""The scheduled jobs' emails, as a team lead reads them: the forecast's warning and the daily
digest. Pure text from figures the services read; amounts in the rule's unit as people read
them (`$12.5` for cost, a count of tokens otherwise).

A forecast's subject: `[paymaster] search: search-monthly will reach its cap on 2026-11-29 (projected $2200 of $2000)`.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from paymaster.domain.forecast import Projection
from paymaster.domain.ledger import Totals
from paymaster.domain.money import format_usd
from paymaster.domain.policy import Rule
from paymaster.domain.reports import Tally, top
from paymaster.domain.windows import Window

TOP_ROWS = 5


@dataclass(frozen=True, slots=True)
class Text:
    subject: str
    text: str


def amount(rule: Rule, value: int) -> str:
    """`$12.5` for a cost rule (micro-USD 12_500_000), `1200 tokens` for a token budget."""
    return f"${format_usd(value)}" if rule.measure == "cost" else f"{value} tokens"


def forecast_text(team: str, rule: Rule, bucket: str, window: Window, projection: Projection) -> Text:
    """The forecast's warning: when the cap falls, at which rate, measured how.

    Example: search-monthly ($2000) on 2026-11-21, $1000 spent at $120 a day over the last 7 days
    → "will reach its cap on 2026-11-29 (projected $2200 of $2000)".
    """
    zone = rule.zone
    when = projection.cap_reached_at
    on = "before the window ends" if when is None else f"on {when.astimezone(zone).date().isoformat()}"
    if projection.spent >= rule.cap:
        on = "now: it is spent"
    basis = (
        "the mean of the last complete days' spend"
        if projection.basis == "recent_days"
        else "the window's mean so far (spend ÷ time elapsed)"
    )
    reached = "" if when is None else f" ({when.astimezone(zone).isoformat(timespec='minutes')} in {rule.time_zone})"
    lines = [
        f"Team {team}: budget {rule.name} ({bucket}) is projected to pass its cap.",
        "",
        f"  spent so far       {amount(rule, projection.spent)} of {amount(rule, rule.cap)} ({window.id})",
        f"  burn rate          {amount(rule, projection.per_day)} a day, from {basis}",
        f"  projected at end   {amount(rule, projection.at_end)}",
        f"  cap reached        {on}{reached}",
        f"  window resets      {window.end.astimezone(zone).isoformat(timespec='minutes')} ({rule.time_zone})",
        "",
        "At the cap, requests this budget counts are refused (429 insufficient_quota) until it resets.",
        "This warning is sent at most once a day per budget.",
    ]
    return Text(
        subject=f"[paymaster] {team}: {rule.name} will reach its cap {on} "
        f"(projected {amount(rule, projection.at_end)} of {amount(rule, rule.cap)})",
        text="\n".join(lines) + "\n",
    )


@dataclass(frozen=True, slots=True)
class BudgetLine:
    """A budget's counter now: `spent` of `cap` in its window (its rule's zone)."""

    rule: Rule
    bucket: str
    window: Window
    spent: int


def digest_text(
    team: str,
    zone: ZoneInfo,
    day: date,
    *,
    yesterday: Tally,
    month_to_date: Totals,
    utc_month: str,
    budgets: Sequence[BudgetLine],
    now: datetime,
) -> Text:
    """The daily digest: yesterday (the team's zone, exact from the entries), this UTC month to
    date (the ledger's rollup, labelled so), each budget vs its limit (its counter, exact, in the
    rule's zone), yesterday's top apps / models / users and denials by rule.

    A budget's share is of its limit, as its alarms count it, and the point where a `block`
    action stops admission is named when it comes before the limit. Example: $1800 spent of a
    $2000 limit blocking at 90 % → "$1800 of $2000 (90 %, blocks at $1800)".
    """
    spent = yesterday.total
    lines = [
        f"Team {team}, {day.isoformat()} ({zone.key}): ${format_usd(spent.cost)} in {spent.calls} calls, "
        f"{spent.denials} refused.",
        f"UTC month {utc_month} to date (the ledger's rollup): ${format_usd(month_to_date.cost)} "
        f"in {month_to_date.calls} calls.",
        "",
        "Budgets (each in its own window and time zone, as admission counts it):",
    ]
    for line in budgets:
        rule = line.rule
        used = 100 * line.spent // rule.limit_units
        blocks = "" if rule.cap == rule.limit_units else f", blocks at {amount(rule, rule.cap)}"
        resets = line.window.end.astimezone(rule.zone).isoformat(timespec="minutes")
        lines.append(
            f"  {rule.name} ({line.bucket}, {line.window.id}): {amount(rule, line.spent)} of "
            f"{amount(rule, rule.limit_units)} ({used} %{blocks}), resets {resets}"
        )
    if not budgets:
        lines.append("  none")
    apps, models = top(yesterday.by_app, TOP_ROWS), top(yesterday.by_model, TOP_ROWS)
    sections: list[tuple[str, Sequence[tuple[str | None, Totals]]]] = [
        ("apps", apps),
        ("models", models),
        ("users", top(yesterday.by_user, TOP_ROWS)),
    ]
    for title, found in sections:
        lines += ["", f"Top {title} yesterday:"]
        lines += [f"  {name or '(no user)'}: ${format_usd(row.cost)} in {row.calls} calls" for name, row in found]
        if not found:
            lines.append("  none")
    lines += ["", "Denials by rule yesterday:"]
    denials = sorted(yesterday.denials_by_rule.items(), key=lambda item: (-item[1], item[0]))
    lines += [f"  {rule}: {count}" for rule, count in denials] or ["  none"]
    lines += ["", f"Sent {now.astimezone(zone).isoformat(timespec='minutes')} ({zone.key})."]
    return Text(
        subject=f"[paymaster] {team} daily digest {day.isoformat()}: ${format_usd(spent.cost)}",
        text="\n".join(lines) + "\n",
    )
