"""The forecast on a controlled clock: a budget projected past its cap is warned about once a
day, naming the date; the burn rate is last week's days where the ledger has the bucket's own."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from paymaster import schema
from paymaster.adapters.memory import MemoryLedger, MemoryReports
from paymaster.domain.errors import NoticeNotSentError
from paymaster.services.forecast import Forecast
from tests.ledger_entries import ENTRY
from tests.notifiers import RecordingNotifier, RefusingNotifier
from tests.policies import policy_with
from tests.services.test_month_close import Counters

# $2000 a month for search, counted in UTC months (the worked example of domain/forecast.py).
MONTHLY = {
    "name": "search-monthly",
    "when": {"team": "search"},
    "limit": 2000,
    "unit": "cost_per_month",
    "per": ["team"],
}
APP_DAILY = {"name": "app-daily", "limit": 10, "unit": "cost_per_day", "per": ["team", "app"]}
KEY = (schema.counter_pk("search-monthly", "team=search"), "2026-11")
NOW = datetime(2026, 11, 21, tzinfo=UTC)
USD = 1_000_000


def ledger_with_days(per_day: int) -> MemoryLedger:
    """search spends `per_day` µUSD a day: on each of the 7 days before NOW, and on NOW's."""
    ledger = MemoryLedger()
    for back in range(8):
        ledger.record(
            replace(
                ENTRY, request_id=f"d{back}", admitted_at=NOW - timedelta(days=back) + timedelta(hours=3), cost=per_day
            )
        )
    return ledger


def forecaster(
    ledger: MemoryLedger, reports: MemoryReports, notifier: object, spent: int, rules: list[dict] | None = None
) -> Forecast:
    policy = policy_with(rules or [MONTHLY])
    return Forecast(policy, Counters({KEY: spent}), ledger, reports, notifier)  # type: ignore[arg-type]


def test_a_budget_burning_past_its_cap_is_warned_naming_the_date_the_cap_falls() -> None:
    notifier = RecordingNotifier()

    (warned,) = forecaster(ledger_with_days(120 * USD), MemoryReports(), notifier, 1_000 * USD).run(NOW)

    assert warned.cap_reached_at == datetime(2026, 11, 29, 8, tzinfo=UTC)
    ((team, notice),) = notifier.sent
    assert team == "search"
    assert "will reach its cap on 2026-11-29" in notice.subject
    assert "projected $2200 of $2000" in notice.subject
    assert "$120 a day, from the mean of the last complete days' spend" in notice.text


def test_a_budget_on_course_to_stay_under_its_cap_is_not_warned() -> None:
    notifier = RecordingNotifier()

    assert forecaster(ledger_with_days(80 * USD), MemoryReports(), notifier, 1_000 * USD).run(NOW) == []
    assert notifier.sent == []


def test_the_forecast_warns_at_most_once_a_day_and_again_the_next_day() -> None:
    ledger, reports, notifier = ledger_with_days(120 * USD), MemoryReports(), RecordingNotifier()
    forecast = forecaster(ledger, reports, notifier, 1_000 * USD)

    assert len(forecast.run(NOW + timedelta(hours=6))) == 1
    assert forecast.run(NOW + timedelta(hours=7)) == []  # a retry, or a tick by hand
    assert len(forecast.run(NOW + timedelta(days=1, hours=6))) == 1

    assert len(notifier.sent) == 2


def test_a_notice_the_topic_refused_fails_the_run_and_the_retry_sends_it() -> None:
    ledger, reports = ledger_with_days(120 * USD), MemoryReports()

    with pytest.raises(NoticeNotSentError):
        forecaster(ledger, reports, RefusingNotifier(), 1_000 * USD).run(NOW)
    notifier = RecordingNotifier()
    assert len(forecaster(ledger, reports, notifier, 1_000 * USD).run(NOW)) == 1
    assert len(notifier.sent) == 1


def test_without_day_figures_of_its_own_a_bucket_is_projected_from_its_window_s_mean() -> None:
    notifier = RecordingNotifier()
    rule_key = (schema.counter_pk("app-daily", "team=search/app=ranker"), "2026-11-21")
    policy = policy_with([APP_DAILY])
    # $6 by noon of a $10 day: $12 a day projects $12 at midnight.
    forecast = Forecast(policy, Counters({rule_key: 6 * USD}), MemoryLedger(), MemoryReports(), notifier)  # type: ignore[arg-type]

    warned = forecast.run(NOW + timedelta(hours=12))

    assert [(w.team, w.bucket) for w in warned] == [("search", "team=search/app=ranker")]
    ((_, notice),) = notifier.sent
    assert "from the window's mean so far" in notice.text
    assert "projected $12 of $10" in notice.subject


class RecordingProjections:
    def __init__(self) -> None:
        self.emitted: list[tuple[str, str, int, datetime]] = []

    def emit(self, team: str, rule: str, projected: int, at: datetime) -> None:
        self.emitted.append((team, rule, projected, at))


def test_each_teams_projection_is_a_metric_for_its_dashboard_warned_or_not() -> None:
    metrics = RecordingProjections()
    policy = policy_with([MONTHLY, APP_DAILY])
    forecast = Forecast(
        policy,
        Counters({KEY: 1_000 * USD}),  # type: ignore[arg-type]
        ledger_with_days(80 * USD),
        MemoryReports(),
        RecordingNotifier(),
        metrics=metrics,
    )

    assert forecast.run(NOW) == []  # under its cap: no warning, and still a point on the dashboard

    # search-monthly is search's whole; app-daily's buckets are per app, which the dashboard
    # cannot name by team and rule alone: no metric for them.
    assert metrics.emitted == [("search", "search-monthly", 1_800 * USD, NOW)]
