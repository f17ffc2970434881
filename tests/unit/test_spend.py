"""A team's spend as GET /v1/usage asks for it and shapes it: months, dimensions, breakdowns."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from paymaster.api.usage_wire import month_body, totals_body, usage_body
from paymaster.domain.errors import InvalidRequestError
from paymaster.domain.identity import Caller
from paymaster.domain.ledger import Totals
from paymaster.domain.spend import MonthSpend, Share, SpendQuery, breakdown, is_month, month_before, spend_query
from paymaster.services.admission import RuleUsage
from paymaster.services.usage import TeamUsage

NOW = datetime(2026, 12, 3, 10, 15, 42, tzinfo=UTC)
SEARCH = Caller(team="search", app="ranker", env="prod", principal="search-ranker", arn="arn")


def test_nothing_asked_is_this_month_to_date_and_the_last() -> None:
    assert SpendQuery().months(NOW) == ("2026-12", "2026-11")
    assert SpendQuery().months(datetime(2026, 1, 15, tzinfo=UTC)) == ("2026-01", "2025-12")


def test_months_are_utc_months_whatever_the_callers_time_zone() -> None:
    los_angeles = timezone(timedelta(hours=-8))
    assert SpendQuery().months(datetime(2026, 11, 30, 23, 30, tzinfo=los_angeles)) == ("2026-12", "2026-11")


def test_a_breakdown_without_a_month_is_of_this_month_and_a_month_is_only_itself() -> None:
    assert SpendQuery(by="app").months(NOW) == ("2026-12",)
    assert SpendQuery(month="2025-06").months(NOW) == ("2025-06",)
    assert SpendQuery(month="2025-06", by="user").months(NOW) == ("2025-06",)


@pytest.mark.parametrize(("month", "before"), [("2026-12", "2026-11"), ("2026-01", "2025-12"), ("2000-03", "2000-02")])
def test_the_month_before(month: str, before: str) -> None:
    assert month_before(month) == before


def test_query_values_are_checked_and_kept() -> None:
    assert spend_query(None, None) == SpendQuery()
    assert spend_query("2026-11", "model") == SpendQuery("2026-11", "model")
    assert spend_query(None, "user") == SpendQuery(None, "user")


@pytest.mark.parametrize("month", ["2026-13", "2026-00", "2026-1", "26-11", "2026/11", "Nov 2026", "2026-11-01", ""])
def test_a_month_that_is_not_yyyy_mm_is_refused_naming_month(month: str) -> None:
    assert not is_month(month)
    with pytest.raises(InvalidRequestError) as refused:
        spend_query(month, None)
    assert refused.value.param == "month"
    assert "YYYY-MM" in refused.value.message


@pytest.mark.parametrize("by", ["team", "App", "deployment", "", "app,model"])
def test_a_dimension_other_than_app_model_or_user_is_refused_naming_by(by: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        spend_query("2026-11", by)
    assert refused.value.param == "by"
    assert "app, model, user" in refused.value.message


def test_totals_add_and_subtract_field_by_field() -> None:
    assert Totals(1, 30, 21, 4) + Totals(2, 12, 5, 1, 3, 7) == Totals(3, 42, 26, 5, 3, 7)
    assert Totals(3, 42, 26, 5, 3, 7) - Totals(2, 12, 5, 1, 3, 7) == Totals(1, 30, 21, 4)
    assert sum((Totals(1, 1), Totals(1, 2)), Totals()) == Totals(2, 3)


def test_a_breakdown_by_model_is_costliest_first_and_its_total_is_its_sum() -> None:
    rows = {"nova-lite": Totals(5, 10), "gpt-4o": Totals(1, 900), "gpt-4o-mini": Totals(2, 10), "claude": Totals(2, 10)}

    total, shares = breakdown("model", rows, None)

    assert total == Totals(10, 930)
    assert [share.value for share in shares] == ["gpt-4o", "nova-lite", "claude", "gpt-4o-mini"]


def test_by_user_the_calls_that_named_no_user_are_the_rest_of_the_total() -> None:
    total, shares = breakdown("user", {"u-1": Totals(1, 30, 21, 4)}, Totals(3, 42, 40, 9))

    assert total == Totals(3, 42, 40, 9)
    assert shares == (Share("u-1", Totals(1, 30, 21, 4)), Share(None, Totals(2, 12, 19, 5)))


def test_by_user_with_every_call_named_there_is_no_unnamed_row() -> None:
    _, shares = breakdown("user", {"u-1": Totals(1, 30)}, Totals(1, 30))

    assert shares == (Share("u-1", Totals(1, 30)),)


def test_a_breakdown_by_user_cannot_be_made_without_the_total() -> None:
    with pytest.raises(ValueError, match="total"):
        breakdown("user", {}, None)


def test_totals_on_the_wire_are_micro_usd_and_the_same_in_usd_text() -> None:
    assert totals_body(Totals(3, 1_234_567, 63, 12, 5, 2, denials=4)) == {
        "calls": 3,
        "denials": 4,
        "cost_micro_usd": 1_234_567,
        "cost_usd": "1.234567",
        "tokens": {"input": 63, "output": 12, "cache_read": 5, "cache_write": 2},
    }
    assert totals_body(Totals())["cost_usd"] == "0"


def test_a_breakdown_row_is_named_by_its_dimension() -> None:
    month = MonthSpend(
        "2026-11", False, Totals(3, 42), "user", (Share("u-1", Totals(1, 30)), Share(None, Totals(2, 12)))
    )

    body = month_body(month)

    assert (body["month"], body["to_date"], body["by"], body["calls"], body["cost_usd"]) == (
        "2026-11",
        False,
        "user",
        3,
        "0.000042",
    )
    assert [(row["user"], row["cost_micro_usd"]) for row in body["breakdown"]] == [("u-1", 30), (None, 12)]
    assert "by" not in month_body(MonthSpend("2026-11", False, Totals()))


def test_the_usage_body_names_the_team_its_rules_and_its_spend() -> None:
    rule = RuleUsage("search-budget", "cost_per_month", "team=search", "2026-12", "100", "0.000042", "0", "99.99", "x")
    usage = TeamUsage([rule], (MonthSpend("2026-12", True, Totals(3, 42)), MonthSpend("2026-11", False, Totals())), NOW)

    body = usage_body(SEARCH, usage)

    assert (body["object"], body["team"], body["app"], body["env"]) == ("usage", "search", "ranker", "prod")
    assert body["rules"][0]["rule"] == "search-budget"
    spend = body["spend"]
    assert (spend["object"], spend["source"], spend["time_zone"], spend["as_of"]) == (
        "usage.spend",
        "ledger",
        "UTC",
        "2026-12-03T10:15:42Z",
    )
    assert [(month["month"], month["to_date"], month["cost_micro_usd"]) for month in spend["months"]] == [
        ("2026-12", True, 42),
        ("2026-11", False, 0),
    ]
