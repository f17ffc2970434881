"""Which thresholds a change of a counter's spend crosses, who is told, and the email's text."""

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from paymaster.domain.alarms import (
    DEFAULT_ALERTS,
    SpendChange,
    TeamSpend,
    alarm_subject,
    alarm_text,
    alert_thresholds,
    amount,
    crossed,
    crossings,
    policy_changes,
    recipient,
)
from paymaster.domain.forecast import project
from paymaster.domain.ledger import Totals
from paymaster.domain.policy import Rule
from paymaster.domain.windows import window

LA = ZoneInfo("America/Los_Angeles")
NOW = datetime(2026, 12, 19, 17, 42, tzinfo=UTC)
DECEMBER = window("month", LA, NOW)


def rule(**fields: Any) -> Rule:
    return Rule.model_validate(
        {"name": "search-monthly", "limit": 2000, "unit": "cost_per_month", "per": ["team"]} | fields
    )


def change(old: int, new: int, bucket: str = "team=search") -> SpendChange:
    return SpendChange("search-monthly", bucket, DECEMBER.id, DECEMBER.end, old, new)


def usd(dollars: float) -> int:
    return round(dollars * 1_000_000)


def test_a_budget_without_alert_actions_alerts_at_50_80_and_100_percent() -> None:
    assert alert_thresholds(rule()) == DEFAULT_ALERTS == (50, 80, 100)
    assert alert_thresholds(rule(actions=[{"at": 90, "downgrade_to": "x"}])) == (50, 80, 100)


def test_a_budget_s_alert_actions_replace_the_default_ladder() -> None:
    assert alert_thresholds(rule(actions=[{"at": 80, "alert": True}, {"at": 30, "alert": True}])) == (30, 80)


def test_a_rate_limit_never_alerts() -> None:
    rpm = Rule(name="rpm", limit=600, unit="requests_per_minute")
    daily_tokens = Rule(name="tpd", limit=100_000, unit="tokens_per_day")

    assert crossed(rpm, 0, 600) == ()
    assert crossed(daily_tokens, 0, 100_000) == ()


def test_a_threshold_is_crossed_by_the_change_that_reaches_it_exactly_and_not_by_the_next() -> None:
    budget = rule()

    assert crossed(budget, usd(999.999999), usd(1000)) == (50,)
    assert crossed(budget, usd(1000), usd(1000.5)) == ()
    assert crossed(budget, usd(990), usd(1612.40)) == (50, 80)
    assert crossed(budget, 0, usd(2000)) == (50, 80, 100)  # a new counter: old 0


def test_a_threshold_of_a_limit_not_divisible_by_100_is_compared_in_integers() -> None:
    odd = rule(limit="0.000333")  # 333 µUSD: 50 % is 166.5

    assert crossed(odd, 166, 167) == (50,)
    assert crossed(odd, 0, 166) == ()


@given(st.lists(st.integers(min_value=0, max_value=400_000_000), max_size=60))
def test_any_sequence_of_increments_crosses_each_threshold_reached_by_exactly_one_change(increments: list[int]) -> None:
    budget = rule(limit=5000)
    spent = 0
    crossings_of: dict[int, int] = {}
    for increment in increments:
        for at in crossed(budget, spent, spent + increment):
            crossings_of[at] = crossings_of.get(at, 0) + 1
        spent += increment

    reached = {at for at in DEFAULT_ALERTS if spent * 100 >= budget.limit_units * at}
    assert crossings_of == dict.fromkeys(reached, 1)


def test_the_team_told_is_the_bucket_s_then_the_rule_s_only_team() -> None:
    assert recipient(rule(), "team=search/user=alice") == "search"
    assert recipient(rule(when={"team": "support"}, per=["app"]), "app=assistant") == "support"
    assert recipient(rule(when={"team": ["search", "support"]}), "*") is None
    assert recipient(rule(), "*") is None
    assert recipient(rule(per=["team", "user"]), "team=-/user=bob") is None


def test_each_crossing_names_its_window_threshold_and_figures() -> None:
    budget = rule(time_zone="America/Los_Angeles")

    [fifty, eighty] = crossings(budget, change(usd(990), usd(1612.40)), NOW)

    assert (fifty.crossing_id, eighty.crossing_id) == (
        "search-monthly#team=search#2026-12#50@1000000000",
        "search-monthly#team=search#2026-12#80@1600000000",
    )
    assert eighty.team == "search"
    assert (eighty.threshold, eighty.limit, eighty.spent) == (usd(1600), usd(2000), usd(1612.40))
    assert eighty.resets_at == datetime(2027, 1, 1, 8, tzinfo=UTC)
    assert eighty.time_zone == "America/Los_Angeles"


def test_a_cap_changed_mid_window_names_thresholds_of_its_own_and_lists_those_the_spend_left_behind() -> None:
    raised = crossings(rule(limit=4000), change(usd(1700), usd(2050)), NOW)
    lowered = crossings(rule(limit=1000), change(usd(1500), usd(1510)), NOW)

    assert [(c.crossing_id, change(usd(1700), usd(2050)).crosses(c.threshold)) for c in raised] == [
        ("search-monthly#team=search#2026-12#50@2000000000", True)
    ]
    assert [(c.threshold_pct, change(usd(1500), usd(1510)).crosses(c.threshold)) for c in lowered] == [
        (50, False),
        (80, False),
        (100, False),
    ]


def email(budget: Rule, spent: int, at: int, now: datetime = NOW) -> tuple[str, str]:
    [crossing] = [c for c in crossings(budget, change(0, spent), now) if c.threshold_pct == at]
    projection = project(spent, budget.cap, DECEMBER, now)
    spend = TeamSpend(
        month="2026-12",
        apps={"ranker": Totals(calls=1200, cost=usd(1500)), "ranker-dev": Totals(calls=40, cost=usd(112.4))},
        models={"gpt-4o": Totals(calls=300, cost=usd(1400)), "gpt-4o-mini": Totals(calls=940, cost=usd(212.4))},
    )
    return alarm_subject(crossing), alarm_text(crossing, budget, projection, spend, now)


def test_the_email_names_team_rule_scope_spend_cap_use_reset_projection_top_spenders_and_next_steps() -> None:
    budget = rule(
        time_zone="America/Los_Angeles",
        actions=[{"at": 50, "alert": True}, {"at": 80, "alert": True}, {"at": 80, "downgrade_to": "nova-lite"}],
    )

    subject, text = email(budget, usd(1612.40), 80)

    assert subject == "[paymaster] search: search-monthly reached 80 % ($1,612.40 of $2,000.00)"
    for line in (
        "Team:       search",
        "Rule:       search-monthly (cost_per_month, per team)",
        "Scope:      team=search",
        "Spent:      $1,612.40",
        "Cap:        $2,000.00",
        "Used:       80.6 %",
        "Resets:     Fri 01 Jan 2027 00:00 PST (America/Los_Angeles), in 12 days 14 h",
        "the cap is reached around",
        "ranker      $1,500.00  (1,200 calls)",
        "gpt-4o       $1,400.00  (300 calls)",
        "UTC calendar month; the budget's window runs in America/Los_Angeles",
        "at 80 % (now): requests are downgraded to nova-lite",
        "at 100 %: requests are refused (HTTP 429 insufficient_quota) until the window resets",
    ):
        assert line in text, line
    # $1,612.40 in 18 d 9 h 42 min (Dec 1 08:00 UTC → Dec 19 17:42) is $87.61 a day; 12 d 14 h 18 min left.
    assert "Projected:  $2,715.92 by the reset, at $87.61 a day; the cap is reached around Wed 23 Dec 2026" in text


def test_money_shown_as_spend_is_rounded_down_to_the_cent_as_the_percentage_is() -> None:
    """$1,999.996 of $2,000 is 99.9 %: it must not read "$2,000.00 of $2,000.00"."""
    assert amount("cost_per_month", 1_999_996_000) == "$1,999.99"
    assert amount("cost_per_month", 1_612_405_000) == "$1,612.40"
    assert amount("cost_per_day", 4_210) == "$0.00421"


def test_a_budget_that_blocks_early_shows_where_requests_are_refused_beside_its_cap() -> None:
    budget = rule(actions=[{"at": 90, "block": True}])

    _, text = email(budget, usd(1812.40), 80)

    assert "Cap:        $2,000.00 (requests refused from $1,800.00)" in text
    assert "at 90 % (now): requests are refused" in text


def test_what_the_live_rule_changed_since_the_crossing_is_named_once_each() -> None:
    [crossing] = [c for c in crossings(rule(), change(0, usd(1000)), NOW) if c.threshold_pct == 50]

    assert policy_changes(crossing, rule()) == []
    assert policy_changes(crossing, rule(limit=4000)) == ["limit $2,000.00 → $4,000.00"]
    assert policy_changes(crossing, rule(actions=[{"at": 90, "block": True}])) == [
        "requests refused from $2,000.00 → $1,800.00"
    ]
    assert policy_changes(crossing, rule(unit="cost_per_week", time_zone="Europe/Berlin")) == [
        "unit cost_per_month → cost_per_week",
        "time zone UTC → Europe/Berlin",
    ]


def test_an_email_for_a_utc_budget_does_not_explain_the_ledger_s_months() -> None:
    budget = rule(time_zone="UTC")

    _, text = email(budget, usd(1000), 50, now=NOW - timedelta(days=1))

    assert "UTC calendar month):" in text
    assert "runs in" not in text
