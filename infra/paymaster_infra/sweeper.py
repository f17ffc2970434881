"""The sweeper: a function EventBridge Scheduler invokes every minute to charge expired holds,
and the dead-letter queue of the minutes it could not sweep."""

from aws_cdk import Duration, RemovalPolicies, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from paymaster import names
from paymaster.domain.schedules import SWEEPER
from paymaster_infra.config import AppConfig
from paymaster_infra.counter_access import grant_sweeps
from paymaster_infra.lambda_defaults import EVENT_HANDLER, default_function
from paymaster_infra.layers import POLICY_FILE, GatewayLayers
from paymaster_infra.nag import acknowledge
from paymaster_infra.schedules import scheduler_input
from paymaster_infra.settlement_queue import kept_queue

# The handler stops sweeping with 15 s left (functions/sweeper); a backlog larger than a minute's
# sweeps is the next invocation's.
TIMEOUT = Duration.minutes(1)
# Scheduler's retries of an invocation it could not deliver (throttled, Lambda unavailable): a
# sweep older than two minutes is superseded by the ones that followed it.
DELIVERY_RETRIES = 2
MAX_EVENT_AGE = Duration.minutes(2)


class SweeperDeadLetterQueue(Construct):
    """The sweeper's dead-letter queue, with the tables (it is a record an operator reads): SSE-SQS,
    TLS only, 14 days, retained.

    A message is a minute that was not swept — an invocation Scheduler could not deliver after
    `DELIVERY_RETRIES`, or one whose sweep failed (the store unavailable, say) — not money: the
    holds stay in the held-by-expiry index until a later sweep charges them.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.queue = kept_queue(self, "Queue")
        RemovalPolicies.of(self).retain()
        acknowledge(
            self.queue,
            {
                "AwsSolutions-SQS3": (
                    "This queue is itself the dead-letter queue of the sweeper's schedule and of its "
                    "asynchronous invocations; a queue behind it would only move the same record again."
                )
            },
        )


class SweeperFunction(Construct):
    """The function and its schedule (`paymaster.domain.schedules.SWEEPER`: `rate(1 minute)`)
    with no flexible time window: a hold is charged at most about a minute after its
    `RESERVATION_LIFETIME`. An invocation Scheduler could
    not deliver after `DELIVERY_RETRIES`, and one whose sweep failed (Lambda does not retry it;
    the next minute's sweep does), lands in `dead_letters` (`SweeperDeadLetterQueue`).

    It mounts the core package, its dependencies and the policy file (the admission service it
    sweeps with is built from the policy); it may query the held-by-expiry index and send the
    settlement's Update items, nothing else.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        layers: GatewayLayers,
        counters: dynamodb.ITable,
        settlement_queue: sqs.IQueue,
        dead_letters: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = default_function(
            self,
            "Function",
            description="paymaster sweeper: charges holds that outlived their reservation",
            code_dir=config.sweeper_code_dir,
            handler=EVENT_HANDLER,
            layers=[*layers.python, layers.policy],
            environment={
                names.ENV_COUNTERS_TABLE: counters.table_name,
                # Required by Settings; a sweep never queues a settlement, so no grant on it.
                names.ENV_SETTLEMENT_QUEUE_URL: settlement_queue.queue_url,
                names.ENV_POLICY_FILE: POLICY_FILE,
            },
            timeout=TIMEOUT,
        )
        grant_sweeps(counters, self.function)
        self.function.configure_async_invoke(
            retry_attempts=0,
            max_event_age=MAX_EVENT_AGE,
            on_failure=destinations.SqsDestination(dead_letters),
        )
        # Its own role, not the stack's shared schedule role: it may invoke this function only.
        self.role = iam.Role(
            self,
            "ScheduleRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}}
            ),
        )
        function_id = Stack.of(self).resolve(self.function.node.default_child.logical_id)  # type: ignore[union-attr]
        acknowledge(
            self.role,
            {
                f"AwsSolutions-IAM5[Resource::<{function_id}.Arn>:*]": (
                    "LambdaInvoke grants lambda:InvokeFunction on the sweeper and `<its ARN>:*`, its "
                    "versions and aliases: still this one function."
                )
            },
        )
        self.schedule = scheduler.Schedule(
            self,
            "EveryMinute",
            description="paymaster sweeper: charge expired holds",
            schedule=scheduler.ScheduleExpression.expression(SWEEPER.expression),
            time_window=scheduler.TimeWindow.off(),
            target=targets.LambdaInvoke(
                self.function,
                input=scheduler_input(SWEEPER),
                dead_letter_queue=dead_letters,
                role=self.role,
                retry_attempts=DELIVERY_RETRIES,
                max_event_age=MAX_EVENT_AGE,
            ),
        )
