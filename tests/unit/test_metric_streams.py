"""The metric streams a policy yields, and what collapses past its budget (domain.cardinality)."""

from typing import Any

import pytest
from pydantic import ValidationError

from paymaster import names
from paymaster.domain.cardinality import metric_dimensions, metric_streams, models_ending
from paymaster.domain.policy import DEFAULT_MAX_METRIC_STREAMS, Policy
from tests.policies import demo_raw


def demo(max_streams: int | None = None, *, more_search_apps: int = 0) -> Policy:
    raw = demo_raw()
    if max_streams is not None:
        raw["metrics"] = {"max_streams": max_streams}
    for i in range(more_search_apps):
        raw["teams"]["search"]["apps"][f"app-{i}"] = {
            "env": "prod",
            "principals": [{"name": f"search-app-{i}", "arn": f"arn:aws:iam::111111111111:role/search-app-{i}"}],
        }
    return Policy.model_validate(raw)


def test_the_demo_policy_yields_211_streams_and_keeps_every_dimension() -> None:
    """search: 2 apps × 5 models (its own 5; gpt-4o-mini falls back to nova-lite, which it has);
    support: 1 app × 6 models. 12 metrics × 16 = 192, + denials by reason, each the rules that can
    refuse the team in that env + the store: search/prod 3 search rules + per-user + 1 = 5,
    search/dev those + the 2 dev rules = 7, support/prod per-user + support-monthly + 1 = 3;
    + 4 providers = 192 + 15 + 4 = 211."""
    dimensions = metric_dimensions(demo())

    assert (dimensions.streams, dimensions.uncollapsed, dimensions.collapsed) == (211, 211, ())
    assert dimensions.budget == DEFAULT_MAX_METRIC_STREAMS == 2_000
    assert dimensions.of_request(team="search", app="ranker", model="gpt-4o", env="prod") == {
        "team": "search",
        "app": "ranker",
        "model": "gpt-4o",
        "env": "prod",
    }


def test_past_the_budget_app_collapses_to_one_value_for_every_team() -> None:
    """Three more prod apps for search: 12 × (5 apps × 5 + 6) + 15 + 4 = 391 streams. With
    `app` collapsed, search counts its 2 envs instead of its 5 apps: 12 × 16 + 19 = 211."""
    policy = demo(300, more_search_apps=3)

    dimensions = metric_dimensions(policy)

    assert (dimensions.uncollapsed, dimensions.streams, dimensions.collapsed) == (391, 211, ("app",))
    assert dimensions.within_budget
    assert dimensions.of_request(team="search", app="app-0", model="gpt-4o", env="prod") == {
        "team": "search",
        "app": names.COLLAPSED,
        "model": "gpt-4o",
        "env": "prod",
    }


def test_when_app_alone_is_not_enough_model_collapses_too() -> None:
    """12 × 3 team envs + 15 + 4 = 55."""
    dimensions = metric_dimensions(demo(210, more_search_apps=3))

    assert (dimensions.streams, dimensions.collapsed) == (55, ("app", "model"))
    assert dimensions.of_request(team="support", app="assistant", model="claude-haiku", env="prod") == {
        "team": "support",
        "app": "_all",
        "model": "_all",
        "env": "prod",
    }


def test_a_budget_team_and_env_alone_pass_keeps_them_and_says_so() -> None:
    dimensions = metric_dimensions(demo(50))

    assert (dimensions.streams, dimensions.collapsed, dimensions.within_budget) == (55, ("app", "model"), False)


def test_a_team_s_requests_can_end_on_fallbacks_and_downgrade_targets_it_may_not_name() -> None:
    raw: dict[str, Any] = demo_raw()
    raw["teams"]["search"]["models"] = ["gpt-4o-mini"]
    raw["rules"] = [
        {
            "name": "search-monthly",
            "when": {"team": "search"},
            "limit": 500,
            "unit": "cost_per_month",
            "actions": [{"at": 80, "downgrade_to": "claude-haiku"}],
        },
        {
            "name": "support-monthly",
            "when": {"team": "support"},
            "limit": 500,
            "unit": "cost_per_month",
            "actions": [{"at": 80, "downgrade_to": "llama-3-3-70b"}],
        },
    ]
    policy = Policy.model_validate(raw)

    # nova-lite: gpt-4o-mini's fallback; claude-haiku: its rule's target. Support's rule cannot
    # count search's requests, so its target is not one of search's.
    assert models_ending(policy, "search") == {"gpt-4o-mini", "nova-lite", "claude-haiku"}
    # Denials: search's rule and the store in search's 2 envs; support's rule and the store.
    assert metric_streams(policy, ()) == 12 * (2 * 3 + 1 * 6) + 2 * 2 + 2 + 4


@pytest.mark.parametrize(
    ("when", "denial_streams"),
    [
        pytest.param({}, 3 * 2, id="every-request"),
        pytest.param({"team": "support"}, 3 + 1, id="one-team"),
        pytest.param({"env": "dev"}, 3 + 1, id="one-env"),
        pytest.param({"app": "ranker-dev"}, 3 + 1, id="one-app"),
        # A rule that can refuse no app at all fails validation (test_policy); one that names
        # several teams or apps adds streams only where its keys meet.
        pytest.param({"team": ["search", "support"], "env": "dev"}, 3 + 1, id="two-teams-one-with-that-env"),
        pytest.param({"team": "search", "app": ["assistant", "ranker-dev"]}, 3 + 1, id="apps-of-two-teams"),
        pytest.param({"team": "search", "model": "gpt-4o"}, 3 + 2, id="other-keys-can-match-anything"),
    ],
)
def test_a_rule_adds_denial_streams_only_for_the_teams_and_envs_it_can_refuse(
    when: dict[str, Any], denial_streams: int
) -> None:
    """Demo teams: search in prod and dev, support in prod: 3 (team, env), each with the store."""
    raw: dict[str, Any] = demo_raw()
    raw["rules"] = [{"name": "only", "when": when, "limit": 10, "unit": "requests_per_minute"}]
    policy = Policy.model_validate(raw)

    assert metric_streams(policy, ()) == 12 * 16 + denial_streams + 4


def test_the_stream_budget_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="max_streams"):
        demo(0)
