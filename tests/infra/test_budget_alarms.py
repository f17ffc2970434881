"""Template assertions on the budget alarms: rule → alarm queue (+ DLQ) → function → a topic per team."""

from typing import Any

from aws_cdk.assertions import Template

from paymaster import names
from paymaster.adapters.policy_file import load_policy
from paymaster.adapters.settings import LedgerSettings
from paymaster_infra import budget_alarms
from paymaster_infra.config import DEFAULT_POLICY_FILE, REPO_ROOT
from paymaster_infra.deployment import Paymaster
from paymaster_infra.layers import POLICY_FILE
from tests.infra.test_stacks import logical_id, properties, role_statements

POLICY = load_policy(REPO_ROOT / DEFAULT_POLICY_FILE)


def alarm_function(gateway_template: Template, paymaster: Paymaster) -> dict[str, Any]:
    return properties(gateway_template, paymaster.gateway.budget_alarms.function)


def test_the_rule_sends_every_budget_threshold_crossed_to_the_alarm_queue_with_its_dead_letters(
    state_template: Template, paymaster: Paymaster
) -> None:
    alarms = paymaster.state.alarms
    rule = properties(state_template, alarms.rule)
    assert rule["EventPattern"] == {"source": [names.EVENT_SOURCE], "detail-type": [names.BUDGET_THRESHOLD_CROSSED]}
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": [logical_id(alarms.queue), "Arn"]}
    queue = properties(state_template, alarms.queue)
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [logical_id(alarms.dead_letter_queue), "Arn"]},
        "maxReceiveCount": names.ALARM_MAX_RECEIVES,
    }
    assert queue["VisibilityTimeout"] == budget_alarms.VISIBILITY_TIMEOUT.to_seconds()
    resources = state_template.to_json()["Resources"]
    assert resources[logical_id(alarms.dead_letter_queue)]["DeletionPolicy"] == "Retain"


def test_each_team_has_its_encrypted_topic_named_by_convention_with_its_policy_s_emails(
    gateway_template: Template,
) -> None:
    topics = gateway_template.find_resources("AWS::SNS::Topic")
    by_name = {topic["Properties"]["TopicName"]: topic["Properties"] for topic in topics.values()}
    assert set(by_name) == {names.alert_topic_name(team) for team in POLICY.teams}
    assert all(topic["KmsMasterKeyId"] for topic in by_name.values())
    subscriptions = gateway_template.find_resources("AWS::SNS::Subscription")
    emails = sorted(
        s["Properties"]["Endpoint"] for s in subscriptions.values() if s["Properties"]["Protocol"] == "email"
    )
    assert emails == sorted(email for team in POLICY.teams.values() for email in team.alerts.emails)


def test_the_function_reads_its_settings_and_the_policy_layer_and_consumes_the_queue_reporting_failures(
    gateway_template: Template, paymaster: Paymaster
) -> None:
    function = alarm_function(gateway_template, paymaster)
    layers = paymaster.gateway.layers
    assert function["Layers"] == [{"Ref": logical_id(layer)} for layer in (layers.core, layers.deps, layers.policy)]
    variables = function["Environment"]["Variables"]
    environ = {name: value if isinstance(value, str) else f"<{name}>" for name, value in variables.items()}
    assert LedgerSettings.from_environ(environ).policy_file.as_posix() == POLICY_FILE  # type: ignore[union-attr]
    assert names.ENV_ALERT_TOPIC_ARN_PREFIX in variables
    mapping = next(
        m["Properties"]
        for m in gateway_template.find_resources("AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": logical_id(paymaster.gateway.budget_alarms.function)}
    )
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_the_function_may_write_only_alert_markers_read_only_rollups_and_publish_only_to_team_topics(
    gateway_template: Template, paymaster: Paymaster
) -> None:
    alarms = paymaster.gateway.budget_alarms
    statements = role_statements(gateway_template, alarms.function)
    dynamodb = [s for s in statements if any(a.startswith("dynamodb:") for a in _actions(s))]
    assert {
        (tuple(sorted(_actions(s))), s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"][0])
        for s in dynamodb
    } == {
        (("dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:UpdateItem"), "ALERT#*"),
        (("dynamodb:GetItem", "dynamodb:Query"), "SPEND#*"),
    }
    publish = [s for s in statements if "sns:Publish" in _actions(s)]
    published_to = [r for s in publish for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])]
    # One statement on the teams' topic prefix (alert_topics.py), which every team's topic is named by.
    assert published_to == [
        {
            "Fn::Join": [
                "",
                [
                    "arn:",
                    {"Ref": "AWS::Partition"},
                    ":sns:",
                    {"Ref": "AWS::Region"},
                    ":",
                    {"Ref": "AWS::AccountId"},
                    f":{names.ALERT_TOPIC_PREFIX}*",
                ],
            ]
        }
    ]


def test_the_ledger_function_is_given_the_policy_to_check_thresholds_against(
    gateway_template: Template, paymaster: Paymaster
) -> None:
    function = properties(gateway_template, paymaster.gateway.ledger.function)
    assert function["Environment"]["Variables"][names.ENV_POLICY_FILE] == POLICY_FILE
    assert {"Ref": logical_id(paymaster.gateway.layers.policy)} in function["Layers"]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]
