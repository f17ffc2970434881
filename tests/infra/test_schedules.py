"""Template assertions on the report schedules: the forecast daily, each team's digest at its
hour and month close at 00:45 on the 1st in its zone, with retries, the dead letters, least privilege."""

import json
from typing import Any

from aws_cdk.assertions import Template

from paymaster import names
from paymaster_infra import schedules
from paymaster_infra.deployment import Paymaster
from tests.infra.test_stacks import assert_grants_exactly, import_of, logical_id, own_logs, properties, role_statements
from tests.infra.test_sweeper import dead_letters_arn


def by_expression(gateway_template: Template) -> dict[tuple[str, str, str], dict[str, Any]]:
    found = {}
    for schedule in gateway_template.find_resources("AWS::Scheduler::Schedule").values():
        properties = schedule["Properties"]
        if properties["ScheduleExpression"].startswith("cron("):
            target = properties["Target"]["Arn"]["Fn::GetAtt"][0]
            found[(target, properties["ScheduleExpression"], properties.get("ScheduleExpressionTimezone", "UTC"))] = (
                properties
            )
    return found


def test_the_forecast_runs_daily_and_each_team_s_digest_and_month_close_in_its_own_zone(
    gateway_template: Template, paymaster: Paymaster
) -> None:
    jobs = paymaster.gateway.schedules
    forecast, digest, close = (logical_id(f) for f in (jobs.forecast, jobs.digest, jobs.month_close))

    assert set(by_expression(gateway_template)) == {
        (forecast, "cron(0 6 * * ? *)", "UTC"),
        (digest, "cron(0 9 * * ? *)", "America/Los_Angeles"),  # search: digest_at 09:00
        (digest, "cron(0 9 * * ? *)", "Europe/Berlin"),  # support: the default 09:00
        (close, "cron(45 0 1 * ? *)", "America/Los_Angeles"),
        (close, "cron(45 0 1 * ? *)", "Europe/Berlin"),
    }


def test_each_schedule_retries_for_a_day_into_the_dead_letters_and_names_its_team(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    for (_, _, zone), schedule in by_expression(gateway_template).items():
        target = schedule["Target"]
        assert target["RetryPolicy"] == {
            "MaximumRetryAttempts": schedules.DELIVERY_RETRIES,
            "MaximumEventAgeInSeconds": schedules.MAX_EVENT_AGE.to_seconds(),
        }
        assert target["DeadLetterConfig"] == {"Arn": dead_letters_arn(state_template, paymaster)}
        detail = json.loads(target["Input"])
        assert ("team" in detail) == (zone != "UTC")


def test_a_failed_report_run_is_retried_twice_by_lambda_then_lands_in_the_dead_letters(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    jobs = paymaster.gateway.schedules
    configs = {
        config["Properties"]["FunctionName"]["Ref"]: config["Properties"]
        for config in gateway_template.find_resources("AWS::Lambda::EventInvokeConfig").values()
    }
    for function in (jobs.forecast, jobs.digest, jobs.month_close):
        config = configs[logical_id(function)]
        assert config["MaximumRetryAttempts"] == schedules.RUN_RETRIES == 2
        assert config["MaximumEventAgeInSeconds"] == schedules.RUN_MAX_AGE.to_seconds()
        assert config["DestinationConfig"] == {
            "OnFailure": {"Destination": dead_letters_arn(state_template, paymaster)}
        }


def test_the_month_close_may_read_the_counters_and_ledger_write_its_report_and_publish_to_the_bus(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    counters = import_of(state_template, logical_id(paymaster.state.tables.counters), "Arn")
    ledger = import_of(state_template, logical_id(paymaster.state.tables.ledger), "Arn")
    bus = import_of(state_template, logical_id(paymaster.state.events.bus), "Arn")
    queue = dead_letters_arn(state_template, paymaster)
    statements = role_statements(gateway_template, paymaster.gateway.schedules.month_close)

    assert_grants_exactly(
        statements,
        [
            (counters, {"dynamodb:BatchGetItem"}),
            (
                ledger,
                {
                    "dynamodb:Query",
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                },
            ),
            (bus, {"events:PutEvents"}),
            (queue, {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}),
            ("*", {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}),
            own_logs(gateway_template, paymaster.gateway.schedules.month_close),
        ],
    )


def test_the_forecast_and_digest_publish_only_to_the_teams_alert_topics(
    gateway_template: Template, paymaster: Paymaster
) -> None:
    for function in (paymaster.gateway.schedules.forecast, paymaster.gateway.schedules.digest):
        actions = {
            action
            for statement in role_statements(gateway_template, function)
            for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
        }
        assert "sns:Publish" in actions
        assert "events:PutEvents" not in actions
        variables = properties(gateway_template, function)["Environment"]["Variables"]
        assert names.ENV_ALERT_TOPIC_ARN_PREFIX in variables
