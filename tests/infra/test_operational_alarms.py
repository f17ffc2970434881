"""The ops topic and the operational alarms: every function, stream consumer, dead-letter queue,
table and the API of the synthesised stacks is watched, and every alarm goes to the ops topic."""

from typing import Any

import pytest
from aws_cdk.assertions import Template

from paymaster import names
from paymaster.domain.errors import StoreUnavailableError
from paymaster_infra import operational_alarms
from paymaster_infra.config import ConfigError, ops_emails
from paymaster_infra.deployment import Paymaster
from tests.infra.conftest import OPS_EMAILS
from tests.infra.test_stacks import import_of, logical_id


def alarms(gateway_template: Template) -> list[dict[str, Any]]:
    return [alarm["Properties"] for alarm in gateway_template.find_resources("AWS::CloudWatch::Alarm").values()]


def watching(gateway_template: Template, namespace: str, metric: str) -> list[dict[str, Any]]:
    """The alarms on `metric` of `namespace`, with their dimensions as {name: value}."""
    found = []
    for alarm in alarms(gateway_template):
        if alarm.get("Namespace") == namespace and alarm.get("MetricName") == metric:
            found.append({**alarm, "dimensions": {d["Name"]: d["Value"] for d in alarm["Dimensions"]}})
    return found


def topic_arn(state_template: Template, paymaster: Paymaster) -> dict[str, str]:
    return import_of(state_template, logical_id(paymaster.ops.topic), None)


def test_every_alarm_notifies_the_ops_topic_going_into_alarm_and_back_with_its_reason(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    topic = topic_arn(state_template, paymaster)
    found = alarms(gateway_template)
    assert len(found) == len(paymaster.alarms.alarms) > 10
    for alarm in found:
        assert alarm["AlarmActions"] == [topic]
        assert alarm["OKActions"] == [topic]
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmDescription"].startswith("paymaster: ")


def test_every_function_of_the_stacks_alarms_on_any_error_and_any_throttle(
    gateway_template: Template, paymaster: Paymaster
) -> None:
    functions = {logical_id(function) for function in operational_alarms.functions_of(paymaster.gateway)}
    # The five functions of today; one added later is found the same way.
    assert len(functions) >= 5
    assert logical_id(paymaster.gateway.gateway.function) in functions
    for metric in ("Errors", "Throttles"):
        watched = watching(gateway_template, "AWS/Lambda", metric)
        assert {alarm["dimensions"]["FunctionName"]["Ref"] for alarm in watched} == functions
        assert {(a["Threshold"], a["ComparisonOperator"], a["Statistic"]) for a in watched} == {
            (1, "GreaterThanOrEqualToThreshold", "Sum")
        }


def test_the_ledger_function_alarms_when_it_falls_five_minutes_behind_its_stream_for_fifteen(
    gateway_template: Template, paymaster: Paymaster
) -> None:
    (alarm,) = watching(gateway_template, "AWS/Lambda", "IteratorAge")
    assert alarm["dimensions"]["FunctionName"] == {"Ref": logical_id(paymaster.gateway.ledger.function)}
    assert (alarm["Threshold"], alarm["Statistic"], alarm["Period"]) == (300_000, "Maximum", 300)
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 3)


def test_every_dead_letter_queue_and_no_work_queue_alarms_on_a_single_message(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    state = paymaster.state
    dead_letters = [
        state.settlements.dead_letter_queue,
        state.denials.dead_letter_queue,
        state.ledger_failures.queue,
        state.sweeper_dead_letters.queue,
    ]
    assert set(operational_alarms.dead_letter_queues_of(state)) == set(dead_letters)
    watched = watching(gateway_template, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
    watched_names = sorted(str(alarm["dimensions"]["QueueName"]) for alarm in watched)
    assert watched_names == sorted(str(import_of(state_template, logical_id(q), "QueueName")) for q in dead_letters)
    assert {(a["Threshold"], a["ComparisonOperator"]) for a in watched} == {(0, "GreaterThanThreshold")}


def test_every_table_alarms_on_throttling_and_sustained_transaction_conflicts(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    tables = paymaster.state.tables
    names_ = [import_of(state_template, logical_id(t), None) for t in (tables.counters, tables.ledger, tables.prompts)]
    conflicts = watching(gateway_template, "AWS/DynamoDB", "TransactionConflict")
    assert [alarm["dimensions"]["TableName"] for alarm in conflicts] == names_
    assert {(a["Threshold"], a["EvaluationPeriods"]) for a in conflicts} == {(100, 3)}

    throttles = [a for a in alarms(gateway_template) if "throttled requests" in a["AlarmDescription"]]
    assert len(throttles) == len(names_)
    for alarm, table in zip(throttles, names_, strict=True):
        metrics = {m["Id"]: m for m in alarm["Metrics"]}
        assert metrics["expr_1"]["Expression"] == "reads + writes"
        for key, metric in (("reads", "ReadThrottleEvents"), ("writes", "WriteThrottleEvents")):
            stat = metrics[key]["MetricStat"]
            assert stat["Metric"]["MetricName"] == metric
            assert stat["Metric"]["Dimensions"] == [{"Name": "TableName", "Value": table}]
        assert (alarm["Threshold"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (1, 2, 2)


def test_the_api_alarms_past_a_five_percent_5xx_rate_for_ten_minutes(gateway_template: Template) -> None:
    (alarm,) = watching(gateway_template, "AWS/ApiGateway", "5XXError")
    assert alarm["Statistic"] == "Average"
    assert (alarm["Threshold"], alarm["EvaluationPeriods"], alarm["Period"]) == (0.05, 2, 300)


def test_one_refusal_without_the_counter_store_alarms(gateway_template: Template) -> None:
    (alarm,) = [a for a in alarms(gateway_template) if "counter store" in a["AlarmDescription"]]
    (query,) = alarm["Metrics"]
    assert query["Expression"] == (
        f"SELECT SUM({names.METRIC_DENIALS}) FROM SCHEMA({names.METRICS_NAMESPACE}, team, env, reason) "
        f"WHERE reason = '{StoreUnavailableError.code}'"
    )
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")


def test_the_ops_topic_is_encrypted_with_a_rotated_key_cloudwatch_may_use(
    state_template: Template, paymaster: Paymaster
) -> None:
    resources = state_template.to_json()["Resources"]
    topic = resources[logical_id(paymaster.ops.topic)]["Properties"]
    key = resources[logical_id(paymaster.ops.key)]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": [logical_id(paymaster.ops.key), "Arn"]}
    assert key["EnableKeyRotation"] is True
    (for_cloudwatch,) = [
        s for s in key["KeyPolicy"]["Statement"] if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert set(for_cloudwatch["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert for_cloudwatch["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_the_ops_topic_takes_alarms_from_this_account_only_over_tls(
    state_template: Template, paymaster: Paymaster
) -> None:
    (policy,) = state_template.find_resources("AWS::SNS::TopicPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    (publish,) = [s for s in statements if s["Effect"] == "Allow"]
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert publish["Action"] == "sns:Publish"
    assert publish["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_each_configured_address_is_subscribed_to_the_ops_topic(state_template: Template, paymaster: Paymaster) -> None:
    subscriptions = state_template.find_resources("AWS::SNS::Subscription").values()
    assert sorted(s["Properties"]["Endpoint"] for s in subscriptions) == sorted(OPS_EMAILS)
    assert {s["Properties"]["Protocol"] for s in subscriptions} == {"email"}
    assert {s["Properties"]["TopicArn"]["Ref"] for s in subscriptions} == {logical_id(paymaster.ops.topic)}


def test_ops_emails_are_read_from_a_comma_separated_context_value() -> None:
    assert ops_emails(" a@example.com,b@example.org , ") == ("a@example.com", "b@example.org")
    assert ops_emails("") == ()
    with pytest.raises(ConfigError, match="not-an-address"):
        ops_emails("a@example.com,not-an-address")
