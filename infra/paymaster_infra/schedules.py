"""The daily and monthly schedules beside the sweeper's (`sweeper.py`): the forecast (daily),
each team's digest (at its `alerts.digest_at`, in its `alerts.time_zone`) and month close (00:45
on the 1st in the team's zone), each an EventBridge Scheduler schedule with delivery retries and the
sweeper's dead-letter queue, invoking its own function with least privilege; a run that failed
is retried twice by Lambda (`RUN_RETRIES`), then lands on the same queue.

Which schedules, their expressions, zones and inputs are `paymaster.domain.schedules`'s (the
local runner fires the same list):
    forecast     cron(0 6 * * ? *)  UTC
    digest       cron(<m> <h> * * ? *)  e.g. 09:00 America/Los_Angeles → cron(0 9 * * ? *)
    month close  cron(45 0 1 * ? *)  the team's zone
"""

from pathlib import Path

from aws_cdk import Duration, Stack, TimeZone
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from paymaster import names
from paymaster.domain.policy import Policy
from paymaster.domain.schedules import Schedule, schedules
from paymaster_infra.alert_topics import grant_publish_to_team_topics
from paymaster_infra.config import AppConfig
from paymaster_infra.counter_access import READ_COUNTERS
from paymaster_infra.lambda_defaults import EVENT_HANDLER, default_function
from paymaster_infra.layers import POLICY_FILE, GatewayLayers
from paymaster_infra.nag import acknowledge

TIMEOUT = Duration.minutes(5)
# A daily or monthly run is worth delivering late: Scheduler retries it for up to a day.
DELIVERY_RETRIES = 10
MAX_EVENT_AGE = Duration.hours(24)
# Scheduler retries only an Invoke it could not deliver; a run that failed (the ledger, a topic or
# the bus unavailable) is retried by Lambda's asynchronous invocation, twice, with its backoff
# (about 1 and 2 minutes). A repeat is safe: a report is put once, notices are claimed once a day.
RUN_RETRIES = 2
RUN_MAX_AGE = Duration.hours(6)


def scheduler_input(schedule: Schedule) -> scheduler.ScheduleTargetInput:
    """The schedule's input with Scheduler's context attributes in place."""
    return scheduler.ScheduleTargetInput.from_object(
        schedule.input(
            scheduler.ContextAttribute.schedule_arn,
            scheduler.ContextAttribute.scheduled_time,
            scheduler.ContextAttribute.execution_id,
            scheduler.ContextAttribute.attempt_number,
        )
    )


class ReportSchedules(Construct):
    """Three functions and their schedules. Each may read what its use case reads: the counters
    (BatchGetItem), the ledger (Query, GetItem; PutItem/UpdateItem/DeleteItem for its report and
    notice markers); publish to the teams' alert topics (the forecast and digest) or the bus
    (month close). Scheduler retries delivering an invocation (`DELIVERY_RETRIES`), Lambda retries
    a run that failed (`RUN_RETRIES`); what still fails lands in `dead_letters`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        policy: Policy,
        layers: GatewayLayers,
        counters: dynamodb.ITable,
        ledger: dynamodb.ITable,
        bus: events.IEventBus,
        dead_letters: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        self._layers = layers
        self._dead_letters = dead_letters
        stack = Stack.of(self)
        topic_prefix = f"arn:{stack.partition}:sns:{stack.region}:{stack.account}:{names.ALERT_TOPIC_PREFIX}"
        environment = {
            names.ENV_POLICY_FILE: POLICY_FILE,
            names.ENV_COUNTERS_TABLE: counters.table_name,
            names.ENV_LEDGER_TABLE: ledger.table_name,
            names.ENV_ALERT_TOPIC_ARN_PREFIX: topic_prefix,
        }
        self.role = iam.Role(
            self,
            "ScheduleRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
        )
        self.forecast = self._function("Forecast", config.forecast_code_dir, environment, counters, ledger)
        self.digest = self._function("Digest", config.digest_code_dir, environment, counters, ledger)
        self.month_close = self._function(
            "MonthClose",
            config.month_close_code_dir,
            environment | {names.ENV_EVENT_BUS: bus.event_bus_name},
            counters,
            ledger,
        )
        for function in (self.forecast, self.digest):
            grant_publish_to_team_topics(function)
        bus.grant_put_events_to(self.month_close)

        functions = {"forecast": self.forecast, "digest": self.digest, "month-close": self.month_close}
        self.schedules: list[scheduler.Schedule] = [
            self._schedule(schedule, functions[schedule.job])
            for schedule in schedules(policy)
            if schedule.job in functions
        ]

    def _function(
        self, name: str, code_dir: Path, environment: dict[str, str], counters: dynamodb.ITable, ledger: dynamodb.ITable
    ) -> lambda_.Function:
        function = default_function(
            self,
            name,
            description=f"paymaster {name}: a scheduled report job (docs/SCHEDULES.md)",
            code_dir=code_dir,
            handler=EVENT_HANDLER,
            layers=[*self._layers.python, self._layers.policy],
            environment=environment,
            timeout=TIMEOUT,
        )
        function.add_to_role_policy(iam.PolicyStatement(actions=list(READ_COUNTERS), resources=[counters.table_arn]))
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "dynamodb:Query",
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                ],
                resources=[ledger.table_arn],
            )
        )
        function.configure_async_invoke(
            retry_attempts=RUN_RETRIES,
            max_event_age=RUN_MAX_AGE,
            on_failure=destinations.SqsDestination(self._dead_letters),
        )
        function_id = Stack.of(self).resolve(function.node.default_child.logical_id)  # type: ignore[union-attr]
        acknowledge(
            self.role,
            {
                f"AwsSolutions-IAM5[Resource::<{function_id}.Arn>:*]": (
                    "LambdaInvoke grants lambda:InvokeFunction on the function and `<its ARN>:*`, its versions "
                    "and aliases: still this one function."
                )
            },
        )
        return function

    def _schedule(self, schedule: Schedule, function: lambda_.Function) -> scheduler.Schedule:
        return scheduler.Schedule(
            self,
            schedule.name,
            description=f"paymaster {schedule.name}",
            schedule=scheduler.ScheduleExpression.expression(schedule.expression, TimeZone.of(schedule.time_zone)),
            time_window=scheduler.TimeWindow.off(),
            target=targets.LambdaInvoke(
                function,
                input=scheduler_input(schedule),
                dead_letter_queue=self._dead_letters,
                role=self.role,
                retry_attempts=DELIVERY_RETRIES,
                max_event_age=MAX_EVENT_AGE,
            ),
        )
