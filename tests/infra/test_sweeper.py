"""Template assertions on the sweeper: its function, its schedule, its grants, its dead letters."""

import json
from pathlib import Path
from typing import Any

from aws_cdk.assertions import Template

from paymaster import names, schema
from paymaster_infra import sweeper
from paymaster_infra.deployment import Paymaster
from paymaster_infra.layers import POLICY_FILE
from tests.infra.test_stacks import (
    assert_grants_exactly,
    import_of,
    logical_id,
    own_logs,
    properties,
    role_statements,
    settings_of,
)

SAMPLE = Path(__file__).resolve().parents[2] / "events" / "scheduler" / "sweeper.json"


def sweeper_function(gateway_template: Template, paymaster: Paymaster) -> dict[str, Any]:
    return properties(gateway_template, paymaster.gateway.sweeper.function)


def dead_letters_arn(state_template: Template, paymaster: Paymaster) -> dict[str, str]:
    return import_of(state_template, logical_id(paymaster.state.sweeper_dead_letters.queue), "Arn")


def the_schedule(gateway_template: Template) -> dict[str, Any]:
    """The sweeper's schedule (the report schedules are tests/infra/test_schedules.py's)."""
    (schedule,) = [
        schedule
        for schedule in gateway_template.find_resources("AWS::Scheduler::Schedule").values()
        if schedule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    ]
    properties: dict[str, Any] = schedule["Properties"]
    return properties


def test_the_sweeper_runs_its_handler_on_the_core_deps_and_policy_layers_for_a_minute_at_most(
    gateway_template: Template, paymaster: Paymaster
) -> None:
    layers = paymaster.gateway.layers
    function = sweeper_function(gateway_template, paymaster)
    assert function["Handler"] == "app.handler"
    assert function["Layers"] == [{"Ref": logical_id(layer)} for layer in (layers.core, layers.deps, layers.policy)]
    assert (function["Runtime"], function["Architectures"], function["Timeout"]) == ("python3.13", ["arm64"], 60)
    assert function["LoggingConfig"]["LogFormat"] == "JSON"


def test_the_sweeper_environment_holds_every_setting_it_requires(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    variables = sweeper_function(gateway_template, paymaster)["Environment"]["Variables"]
    settings = settings_of(variables)
    assert settings.policy_file.as_posix() == POLICY_FILE
    counters = paymaster.state.tables.counters
    assert variables[names.ENV_COUNTERS_TABLE] == import_of(state_template, logical_id(counters), None)


def test_the_schedule_invokes_the_sweeper_every_minute_without_a_flexible_window(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    schedule = the_schedule(gateway_template)
    assert schedule["ScheduleExpression"] == "rate(1 minute)"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = schedule["Target"]
    assert target["Arn"] == {"Fn::GetAtt": [logical_id(paymaster.gateway.sweeper.function), "Arn"]}
    assert target["RetryPolicy"] == {
        "MaximumRetryAttempts": sweeper.DELIVERY_RETRIES,
        "MaximumEventAgeInSeconds": sweeper.MAX_EVENT_AGE.to_seconds(),
    }
    assert target["DeadLetterConfig"] == {"Arn": dead_letters_arn(state_template, paymaster)}
    # The function's event contract is the sample (tests/functions/test_sweeper_entry.py).
    assert set(json.loads(target["Input"])) == set(json.loads(SAMPLE.read_text()))


def test_the_schedule_s_role_may_only_invoke_the_sweeper_and_send_to_its_dead_letters(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    role_arn = the_schedule(gateway_template)["Target"]["RoleArn"]
    role = {"Ref": role_arn["Fn::GetAtt"][0]}
    statements = [
        statement
        for policy in gateway_template.find_resources("AWS::IAM::Policy").values()
        if role in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    function_arn = {"Fn::GetAtt": [logical_id(paymaster.gateway.sweeper.function), "Arn"]}
    queue_arn = dead_letters_arn(state_template, paymaster)
    assert_grants_exactly(statements, [(function_arn, {"lambda:InvokeFunction"}), (queue_arn, {"sqs:SendMessage"})])


def test_a_failed_sweep_is_not_retried_by_lambda_and_lands_in_the_dead_letters(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    sweeper_function = {"Ref": logical_id(paymaster.gateway.sweeper.function)}
    (config,) = [
        config
        for config in gateway_template.find_resources("AWS::Lambda::EventInvokeConfig").values()
        if config["Properties"]["FunctionName"] == sweeper_function
    ]
    assert config["Properties"]["MaximumRetryAttempts"] == 0
    assert config["Properties"]["MaximumEventAgeInSeconds"] == sweeper.MAX_EVENT_AGE.to_seconds()
    queue_arn = dead_letters_arn(state_template, paymaster)
    assert config["Properties"]["DestinationConfig"] == {"OnFailure": {"Destination": queue_arn}}


def test_the_sweeper_role_may_only_query_the_held_index_update_the_counters_and_dead_letter(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    counters_arn = import_of(state_template, logical_id(paymaster.state.tables.counters), "Arn")
    index_arn = {"Fn::Join": ["", [counters_arn, f"/index/{schema.HELD_INDEX}"]]}
    queue_arn = dead_letters_arn(state_template, paymaster)
    statements = role_statements(gateway_template, paymaster.gateway.sweeper.function)

    assert_grants_exactly(
        statements,
        [
            own_logs(gateway_template, paymaster.gateway.sweeper.function),
            (counters_arn, {"dynamodb:UpdateItem"}),
            (index_arn, {"dynamodb:Query"}),
            # Lambda's on-failure destination: CDK's grant_send_messages.
            (queue_arn, {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}),
            ("*", {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}),
        ],
    )


def test_the_sweeper_s_dead_letters_keep_two_weeks_encrypted_with_the_state_and_are_named_for_operators(
    state_template: Template, paymaster: Paymaster
) -> None:
    queue = paymaster.state.sweeper_dead_letters.queue
    resource = state_template.to_json()["Resources"][logical_id(queue)]

    assert resource["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert resource["Properties"]["SqsManagedSseEnabled"] is True
    assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == ("Retain", "Retain")
    state_template.has_output("SweeperDeadLetterQueueUrl", {"Value": {"Ref": logical_id(queue)}})
