"""A policy change redeploys the gateway stack only, and `make policy-diff` says what it touches.

The end-to-end cases synthesise the app twice each (about 10 s): the demo policy against an
edited copy."""

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from paymaster_infra import policy_change
from paymaster_infra.config import AppConfig
from paymaster_infra.policy_change import ResourceChange, template_changes

_FUNCTION = {"Type": "AWS::Lambda::Function", "Properties": {"Layers": [{"Ref": "Policy"}], "MemorySize": 1024}}
_LAYER = {"Type": "AWS::Lambda::LayerVersion", "Properties": {"Content": {"S3Key": "a.zip"}}}
_TABLE = {"Type": "AWS::DynamoDB::Table", "Properties": {"TableName": "counters"}}


def _template(**resources: dict[str, Any]) -> dict[str, Any]:
    return {"Resources": copy.deepcopy(resources)}


def test_added_removed_and_changed_resources_are_each_named_with_what_differs() -> None:
    before = _template(Fn=_FUNCTION, Table=_TABLE)
    after = _template(Fn=_FUNCTION, Queue={"Type": "AWS::SQS::Queue"})
    after["Resources"]["Fn"]["Properties"]["MemorySize"] = 512

    assert template_changes("S", before, after) == [
        ResourceChange("S", "Fn", "AWS::Lambda::Function", "modify", ("MemorySize",)),
        ResourceChange("S", "Queue", "AWS::SQS::Queue", "add"),
        ResourceChange("S", "Table", "AWS::DynamoDB::Table", "remove"),
    ]


def test_a_new_layer_version_is_a_replacement_and_every_function_mounting_it_follows() -> None:
    before = _template(Fn=_FUNCTION, Policy=_LAYER, Table=_TABLE)
    after = copy.deepcopy(before)
    after["Resources"]["Policy"]["Properties"]["Content"]["S3Key"] = "b.zip"

    assert template_changes("S", before, after) == [
        ResourceChange("S", "Policy", "AWS::Lambda::LayerVersion", "replace", ("Content",)),
        ResourceChange("S", "Fn", "AWS::Lambda::Function", "modify", ("follows Policy",)),
    ]


def test_the_cdk_s_metadata_is_not_a_change() -> None:
    before = _template(Table=_TABLE | {"Metadata": {"aws:cdk:path": "A/Table"}})
    after = _template(Table=_TABLE | {"Metadata": {"aws:cdk:path": "B/Table"}})

    assert template_changes("S", before, after) == []


def test_a_deletion_policy_change_is_a_change() -> None:
    before = _template(Table=_TABLE)
    after = _template(Table=_TABLE | {"DeletionPolicy": "Retain"})

    assert template_changes("S", before, after) == [
        ResourceChange("S", "Table", "AWS::DynamoDB::Table", "modify", ("DeletionPolicy",))
    ]


def _edited_policy(config: AppConfig, tmp_path: Path, edit: Any) -> Path:
    policy = yaml.safe_load(config.policy_file.read_text())
    edit(policy)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def _raise_search_cap(policy: dict[str, Any]) -> None:
    rule = next(rule for rule in policy["rules"] if rule["name"] == "search-monthly")
    rule["limit"] = rule["limit"] + 500


def _add_team(policy: dict[str, Any]) -> None:
    policy["teams"]["research"] = {
        "apps": {
            "notebooks": {
                "env": "prod",
                "principals": [{"name": "notebooks", "arn": "arn:aws:iam::444444444444:role/notebooks"}],
            }
        },
        "models": ["gpt-4o-mini"],
        "alerts": {"emails": ["research-lead@example.com"], "time_zone": "Asia/Tokyo"},
    }
    policy["rules"].append(
        {
            "name": "research-monthly",
            "when": {"team": "research"},
            "limit": 300,
            "unit": "cost_per_month",
            "per": ["team"],
        }
    )


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(
            _raise_search_cap,
            {"AWS::Lambda::LayerVersion", "AWS::Lambda::Function", "AWS::CloudWatch::Dashboard"},
            id="raise-a-cap",
        ),
        pytest.param(
            _add_team,
            {
                "AWS::Lambda::LayerVersion",
                "AWS::Lambda::Function",
                "AWS::CloudWatch::Dashboard",
                "AWS::SNS::Topic",
                "AWS::SNS::TopicPolicy",
                "AWS::SNS::Subscription",
                "AWS::Scheduler::Schedule",
            },
            id="add-a-team",
        ),
    ],
)
def test_a_policy_change_touches_the_gateway_stack_only_and_no_grant(
    config: AppConfig, tmp_path: Path, edit: Any, expected: set[str]
) -> None:
    changes = policy_change.policy_changes(config, _edited_policy(config, tmp_path, edit))

    assert changes["PaymasterState"] == []
    gateway = changes["PaymasterGateway"]
    assert {change.type for change in gateway} == expected
    # Nothing stateful is replaced and no role or policy widens: the new team's topic is covered
    # by the functions' grant on the topic-name prefix.
    assert not [change for change in gateway if change.action in ("replace", "remove") and "Layer" not in change.type]
    assert not [change for change in gateway if change.type.startswith("AWS::IAM::")]
    # One new policy layer version, and every function that mounts it follows.
    [layer] = [change for change in gateway if change.type == "AWS::Lambda::LayerVersion"]
    assert (layer.logical_id.startswith("LayersPolicy"), layer.action, layer.fields) == (True, "replace", ("Content",))
    functions = [change for change in gateway if change.type == "AWS::Lambda::Function"]
    assert any(change.logical_id.startswith("GatewayFunction") for change in functions)
    assert {change.fields for change in functions} == {(f"follows {layer.logical_id}",)}


def test_the_command_prints_each_stack_s_changes(
    config: AppConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        policy_change,
        "policy_changes",
        lambda _config, _policy: {
            "PaymasterState": [],
            "PaymasterGateway": [
                ResourceChange("PaymasterGateway", "LayersPolicy", "AWS::Lambda::LayerVersion", "replace", ("Content",))
            ],
        },
    )

    assert policy_change.main([str(tmp_path / "next.yaml")]) == 0

    out = capsys.readouterr().out
    assert "PaymasterState: no changes" in out
    assert "replace  AWS::Lambda::LayerVersion  LayersPolicy  (Content)" in out
    assert policy_change.main([]) == 2
