"""A team's month and day in its own zone, the ledger partitions they span, and the budget
buckets the policy can name."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from paymaster.domain.events import MonthClosed
from paymaster.domain.reports import budget_buckets, closable_at, month_to_close, team_day, team_month, utc_months
from tests.policies import policy_with
from tests.unit.test_event_contracts import sample

LOS_ANGELES = ZoneInfo("America/Los_Angeles")


def test_november_in_los_angeles_spans_two_utc_partitions_and_changes_offset_with_dst() -> None:
    november = team_month("2026-11", LOS_ANGELES)

    assert (november.start, november.end) == (
        datetime(2026, 11, 1, 7, tzinfo=UTC),
        datetime(2026, 12, 1, 8, tzinfo=UTC),
    )
    assert utc_months(november) == ("2026-11", "2026-12")


def test_a_utc_team_month_is_one_partition() -> None:
    assert utc_months(team_month("2026-12", ZoneInfo("UTC"))) == ("2026-12",)


def test_a_month_ahead_of_utc_starts_in_the_previous_utc_month() -> None:
    december = team_month("2026-12", ZoneInfo("Asia/Tokyo"))

    assert december.start == datetime(2026, 11, 30, 15, tzinfo=UTC)
    assert utc_months(december) == ("2026-11", "2026-12")


def test_the_month_to_close_is_the_last_complete_one_in_the_team_s_zone() -> None:
    assert month_to_close(LOS_ANGELES, datetime(2026, 12, 1, 8, 45, tzinfo=UTC)) == "2026-11"
    assert month_to_close(LOS_ANGELES, datetime(2026, 12, 1, 7, 30, tzinfo=UTC)) == "2026-10"
    assert month_to_close(ZoneInfo("UTC"), datetime(2027, 1, 1, 0, 5, tzinfo=UTC)) == "2026-12"


def test_a_team_day_is_its_local_midnight_to_midnight() -> None:
    day = team_day(LOS_ANGELES, date(2026, 11, 30))

    assert (day.id, day.start, day.end) == (
        "2026-11-30",
        datetime(2026, 11, 30, 8, tzinfo=UTC),
        datetime(2026, 12, 1, 8, tzinfo=UTC),
    )


def test_budgets_are_listed_per_bucket_the_policy_names_and_per_user_ones_are_left_out() -> None:
    policy = policy_with(
        [
            {"name": "per-team", "when": {"team": "search"}, "limit": 10, "unit": "cost_per_month", "per": ["team"]},
            {"name": "per-app", "limit": 10, "unit": "cost_per_day", "per": ["team", "app"]},
            {"name": "shared", "limit": 10, "unit": "tokens_per_month"},
            {"name": "per-user", "limit": 10, "unit": "cost_per_month", "per": ["user"]},
            {"name": "rate", "limit": 10, "unit": "requests_per_minute", "per": ["team"]},
        ]
    )

    found = {(bucket.rule.name, bucket.bucket): bucket.teams for bucket in budget_buckets(policy)}
    apps = {(team, app) for team, config in policy.teams.items() for app in config.apps}

    assert found[("per-team", "team=search")] == ("search",)
    assert found[("shared", "*")] == tuple(sorted(policy.teams))
    assert {key for key in found if key[0] == "per-app"} == {("per-app", f"team={t}/app={a}") for t, a in apps}
    assert not {name for name, _ in found} & {"per-user", "rate"}
    assert {bucket.bucket for bucket in budget_buckets(policy, "support") if bucket.rule.name == "per-team"} == set()


def test_a_month_closed_listing_at_most_n_rows_counts_what_it_left_out() -> None:
    report = MonthClosed.model_validate(sample("month-closed.json")["detail"])

    cut = report.listing_at_most(1)

    assert [len(cut.by_app), len(cut.by_model), len(cut.by_user)] == [1, 1, 1]
    assert cut.rows_left_out == 3
    assert cut.totals == report.totals


def test_a_month_may_be_closed_once_its_last_local_midnight_is_45_minutes_past() -> None:
    assert closable_at("2026-11", LOS_ANGELES) == datetime(2026, 12, 1, 8, 45, tzinfo=UTC)
    assert closable_at("2026-11", ZoneInfo("Europe/Berlin")) == datetime(2026, 11, 30, 23, 45, tzinfo=UTC)
    # March in Los Angeles ends in PDT (UTC−7): its close is an hour earlier in UTC than November's.
    assert closable_at("2027-03", LOS_ANGELES) == datetime(2027, 4, 1, 7, 45, tzinfo=UTC)
