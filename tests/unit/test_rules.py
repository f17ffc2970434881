"""Rules are validated when the policy file is loaded: a typo or an impossible limit never reaches admission."""

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from paymaster.domain.policy import Action, Rule
from tests.policies import policy_with


def rule(**fields: Any) -> Rule:
    return Rule.model_validate({"name": "r", "limit": 1000, "unit": "tokens_per_day"} | fields)


# limits


@pytest.mark.parametrize("unit", ["requests_per_minute", "tokens_per_day", "tokens_per_month"])
def test_count_limit_must_be_a_whole_number(unit: str) -> None:
    with pytest.raises(ValidationError, match=f"a {unit} limit is a whole number"):
        rule(unit=unit, limit="10.5")


def test_count_limit_written_with_a_zero_fraction_is_whole() -> None:
    assert rule(unit="requests_per_minute", limit="600.0").limit_units == 600


def test_cost_limit_finer_than_a_micro_dollar_is_refused() -> None:
    with pytest.raises(ValidationError, match="finer than one micro-dollar"):
        rule(unit="cost_per_month", limit="0.0000001")


def test_cost_limit_with_six_decimals_is_exact() -> None:
    assert rule(unit="cost_per_month", limit="2000.000001").limit_units == 2_000_000_001


def test_cost_limit_written_as_a_yaml_float_is_read_exactly() -> None:
    # YAML `limit: 0.1` arrives as a float; it must be 100_000 µUSD, not 0.1000000000000000055….
    assert rule(unit="cost_per_day", limit=0.1).limit_units == 100_000


@pytest.mark.parametrize("limit", [0, -5])
def test_limit_must_be_positive(limit: int) -> None:
    with pytest.raises(ValidationError, match="greater than 0"):
        rule(limit=limit)


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "EST5EDT6", "../../etc/passwd", ""])
def test_unknown_time_zone_is_refused(zone: str) -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        rule(time_zone=zone)


def test_unknown_rule_key_is_an_error_not_ignored() -> None:
    with pytest.raises(ValidationError, match="limt"):
        rule(limt=5)


# actions


@pytest.mark.parametrize("unit", ["requests_per_minute", "tokens_per_minute", "tokens_per_day"])
def test_actions_on_a_rate_limit_are_refused(unit: str) -> None:
    with pytest.raises(ValidationError, match=r"actions \(alerts, downgrades\) apply to budgets"):
        rule(unit=unit, actions=[{"at": 80, "alert": True}])


@pytest.mark.parametrize("unit", ["tokens_per_month", "cost_per_day", "cost_per_week", "cost_per_month"])
def test_actions_on_a_budget_are_accepted(unit: str) -> None:
    assert len(rule(unit=unit, actions=[{"at": 80, "alert": True}, {"at": 90, "block": True}]).actions) == 2


def test_two_block_actions_are_refused() -> None:
    with pytest.raises(ValidationError, match="at most one block action"):
        rule(unit="cost_per_month", actions=[{"at": 80, "block": True}, {"at": 90, "block": True}])


def test_two_block_actions_at_the_same_threshold_are_refused() -> None:
    with pytest.raises(ValidationError, match="at most one block action"):
        rule(unit="cost_per_month", actions=[{"at": 90, "block": True}, {"at": 90, "block": True}])


@pytest.mark.parametrize(
    "action",
    [
        {"at": 80, "alert": True, "block": True},
        {"at": 80, "alert": True, "downgrade_to": "nova-lite"},
        {"at": 80, "block": True, "downgrade_to": "nova-lite"},
        {"at": 80},
    ],
)
def test_an_action_does_exactly_one_thing(action: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="an action does exactly one of"):
        Action.model_validate(action)


@pytest.mark.parametrize(("at", "error"), [(0, "greater than or equal to 1"), (101, "less than or equal to 100")])
def test_action_threshold_is_a_percentage_from_1_to_100(at: int, error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        Action.model_validate({"at": at, "alert": True})


def test_downgrade_to_an_unknown_model_is_refused() -> None:
    monthly = {
        "name": "monthly",
        "limit": 2000,
        "unit": "cost_per_month",
        "actions": [{"at": 80, "downgrade_to": "gpt-9"}],
    }

    with pytest.raises(ValidationError, match="rule 'monthly' downgrades to unknown model 'gpt-9'"):
        policy_with([monthly])


def test_duplicate_rule_names_are_refused() -> None:
    daily = {"name": "daily", "limit": 5, "unit": "cost_per_day"}

    with pytest.raises(ValidationError, match="two rules are named 'daily'"):
        policy_with([daily, daily | {"limit": 10}])


# cap


def test_budget_caps_at_its_limit_without_a_block_action() -> None:
    assert rule(unit="cost_per_month", limit=2000, actions=[{"at": 80, "alert": True}]).cap == 2_000_000_000


def test_block_action_at_90_caps_the_budget_at_90_percent() -> None:
    monthly = rule(unit="cost_per_month", limit=2000, actions=[{"at": 50, "alert": True}, {"at": 90, "block": True}])

    assert (monthly.limit_units, monthly.cap) == (2_000_000_000, 1_800_000_000)


def test_cap_of_a_count_rounds_down() -> None:
    # 90 % of 5 tokens is 4.5: admission stops at 4, never above the share.
    assert rule(unit="tokens_per_month", limit=5, actions=[{"at": 90, "block": True}]).cap == 4


def test_cap_of_a_rate_limit_is_its_limit() -> None:
    assert rule(unit="requests_per_minute", limit=600).cap == 600


# fails_closed


@pytest.mark.parametrize(
    ("unit", "on_store_error", "closed"),
    [
        ("cost_per_month", None, True),
        ("cost_per_week", None, True),
        ("cost_per_day", None, True),
        ("tokens_per_month", None, True),
        ("requests_per_minute", None, False),
        ("tokens_per_minute", None, False),
        ("tokens_per_day", None, False),
        ("cost_per_month", "open", False),
        ("requests_per_minute", "closed", True),
        ("tokens_per_month", "closed", True),
    ],
)
def test_budgets_fail_closed_and_rate_limits_open_unless_told(
    unit: str, on_store_error: str | None, closed: bool
) -> None:
    assert rule(unit=unit, on_store_error=on_store_error).fails_closed is closed


# what a unit means


@pytest.mark.parametrize(
    ("unit", "measure", "period", "is_budget"),
    [
        ("requests_per_minute", "requests", "minute", False),
        ("requests_per_hour", "requests", "hour", False),
        ("requests_per_day", "requests", "day", False),
        ("tokens_per_minute", "tokens", "minute", False),
        ("tokens_per_hour", "tokens", "hour", False),
        ("tokens_per_day", "tokens", "day", False),
        ("tokens_per_month", "tokens", "month", True),
        ("cost_per_day", "cost", "day", True),
        ("cost_per_week", "cost", "week", True),
        ("cost_per_month", "cost", "month", True),
    ],
)
def test_unit_names_its_measure_period_and_whether_it_is_a_budget(
    unit: str, measure: str, period: str, is_budget: bool
) -> None:
    r = rule(unit=unit, limit=Decimal(5))

    assert (r.measure, r.period, r.is_budget) == (measure, period, is_budget)
