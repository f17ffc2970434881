from datetime import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from paymaster.domain.errors import ModelNotFoundError, UnknownPrincipalError
from paymaster.domain.policy import Policy

DEMO = Path(__file__).resolve().parents[2] / "policy" / "demo.yaml"


def demo() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(DEMO.read_text())
    return raw


def test_demo_policy_is_valid() -> None:
    policy = Policy.model_validate(demo())

    assert set(policy.teams) == {"search", "support"}


def test_assumed_role_session_maps_to_its_team_and_app() -> None:
    policy = Policy.model_validate(demo())

    caller = policy.caller("arn:aws:sts::111111111111:assumed-role/search-ranker/i-0abc")

    assert (caller.team, caller.app, caller.env, caller.principal) == ("search", "ranker", "prod", "search-ranker")


def test_same_role_name_in_another_account_is_a_stranger() -> None:
    policy = Policy.model_validate(demo())

    with pytest.raises(UnknownPrincipalError):
        policy.caller("arn:aws:sts::999999999999:assumed-role/search-ranker/i-0abc")


def test_model_without_a_price_is_rejected() -> None:
    raw = demo()
    del raw["models"]["nova-lite"]["price"]

    with pytest.raises(ValidationError, match=r"models\.nova-lite\.price"):
        Policy.model_validate(raw)


def test_price_must_say_where_it_came_from() -> None:
    raw = demo()
    del raw["models"]["nova-lite"]["price"]["source"]

    with pytest.raises(ValidationError, match="source"):
        Policy.model_validate(raw)


def test_unknown_key_is_an_error_not_ignored() -> None:
    raw = demo()
    raw["teams"]["search"]["montly_cap"] = 2000

    with pytest.raises(ValidationError, match="montly_cap"):
        Policy.model_validate(raw)


def test_deployment_must_name_a_known_provider() -> None:
    raw = demo()
    raw["models"]["nova-lite"]["deployments"][0]["provider"] = "bedrock-mars-1"

    with pytest.raises(ValidationError, match="unknown provider 'bedrock-mars-1'"):
        Policy.model_validate(raw)


def test_one_iam_principal_cannot_belong_to_two_apps() -> None:
    raw = demo()
    raw["teams"]["support"]["apps"]["assistant"]["principals"].append(
        {"name": "sneaky", "arn": "arn:aws:iam::111111111111:role/other/path/search-ranker"}
    )

    with pytest.raises(ValidationError, match="claimed by search/ranker and support/assistant"):
        Policy.model_validate(raw)


def test_principal_names_are_unique_because_they_are_profile_names() -> None:
    raw = demo()
    raw["teams"]["support"]["apps"]["assistant"]["principals"][0]["name"] = "search-ranker"

    with pytest.raises(ValidationError, match="principal name 'search-ranker'"):
        Policy.model_validate(raw)


def test_team_sees_only_its_allowed_models() -> None:
    policy = Policy.model_validate(demo())

    assert policy.models_for("search") == [
        "gpt-4o-mini",
        "gpt-4o",
        "nova-lite",
        "text-embedding-3-small",
        "titan-embed-v2",
    ]
    with pytest.raises(ModelNotFoundError):
        policy.model_for("search", "claude-haiku")


def test_team_without_an_allow_list_may_use_every_model() -> None:
    raw = demo()
    del raw["teams"]["search"]["models"]

    assert Policy.model_validate(raw).models_for("search") == list(raw["models"])


def test_team_alerts_default_to_no_subscribers_a_utc_day_and_a_nine_o_clock_digest() -> None:
    doc = demo()
    del doc["teams"]["search"]["alerts"]

    alerts = Policy.model_validate(doc).teams["search"].alerts

    assert (alerts.emails, alerts.time_zone, alerts.digest_at) == ([], "UTC", time(9, 0))


def test_team_alerts_take_addresses_a_zone_and_a_digest_time() -> None:
    doc = demo()
    doc["teams"]["search"]["alerts"] = {
        "emails": ["lead@example.com"],
        "time_zone": "Europe/Berlin",
        "digest_at": "08:30",
    }

    alerts = Policy.model_validate(doc).teams["search"].alerts

    assert alerts.emails == ["lead@example.com"]
    assert alerts.zone.key == "Europe/Berlin"
    assert alerts.digest_at == time(8, 30)


@pytest.mark.parametrize(
    ("alerts", "complaint"),
    [
        ({"emails": ["not-an-address"]}, "email address"),
        ({"emails": ["lead@"]}, "email address"),
        ({"time_zone": "Mars/Olympus"}, "unknown time zone"),
        ({"digest_at": "25:00"}, "time"),
    ],
)
def test_team_alerts_refuse_what_could_never_be_delivered(alerts: dict[str, Any], complaint: str) -> None:
    doc = demo()
    doc["teams"]["search"]["alerts"] = alerts

    with pytest.raises(ValidationError, match=complaint):
        Policy.model_validate(doc)


@pytest.mark.parametrize(
    ("when", "complaint"),
    [
        ({"team": "serch"}, "counts team 'serch'"),
        ({"team": ["search", "suport"]}, "counts team 'suport'"),
        ({"app": "rankr"}, "counts app 'rankr'"),
        ({"model": "gpt-4o-mni"}, "counts model 'gpt-4o-mni'"),
        ({"env": "staging"}, "counts env 'staging'"),
    ],
)
def test_a_rule_that_names_what_the_policy_lacks_is_refused_not_silently_never_applied(
    when: dict[str, Any], complaint: str
) -> None:
    data = demo()
    data["rules"].append({"name": "typo", "when": when, "limit": 1, "unit": "cost_per_day"})

    with pytest.raises(ValidationError, match=complaint + ".*would never apply"):
        Policy.model_validate(data)


def test_a_rule_whose_team_app_and_env_no_app_has_together_is_refused() -> None:
    data = demo()
    data["rules"].append(
        {"name": "nobody", "when": {"team": "support", "app": "ranker"}, "limit": 1, "unit": "cost_per_day"}
    )

    with pytest.raises(ValidationError, match="'nobody' counts no app"):
        Policy.model_validate(data)


def test_a_rule_may_name_several_teams_apps_and_envs_that_some_app_has_together() -> None:
    data = demo()
    data["rules"].append(
        {
            "name": "mixed",
            "when": {"team": ["search", "support"], "app": ["ranker", "assistant"], "env": ["dev", "prod"]},
            "limit": 1,
            "unit": "cost_per_day",
        }
    )

    assert Policy.model_validate(data).rules[-1].name == "mixed"


def test_an_env_only_an_app_sharing_another_team_s_app_name_has_is_known() -> None:
    data = demo()
    data["teams"]["search"]["apps"]["assistant"] = {
        "env": "qa",
        "principals": [{"name": "search-assistant-qa", "arn": "arn:aws:iam::444444444444:role/search-assistant"}],
    }
    data["rules"].append({"name": "qa-daily", "when": {"env": "qa"}, "limit": 1, "unit": "cost_per_day"})

    assert Policy.model_validate(data).rules[-1].when.env == ["qa"]
