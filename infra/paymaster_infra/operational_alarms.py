"""Operational alarms to the ops topic, derived from what the stack holds.

`OperationalAlarms` lives in the gateway stack (stateless, replaced with it; the state stack keeps
only what is retained) and is added once both stacks hold everything else (`deployment.py`). It
alarms on every function, stream consumer, dead-letter queue, table and REST API it finds in the
stacks it watches, so a function or queue added later is watched without a line here. The
thresholds and why:

- a function's `Errors` ≥ 1 in 5 minutes: paymaster's handlers answer expected failures (HTTP
  errors, batch item failures) without raising, so a function error is a crash, a timeout or
  memory running out — a caller's 5xx or a batch that will be retried;
- a function's `Throttles` ≥ 1 in 5 minutes: a throttled gateway is a paying caller refused by
  Lambda (the account's concurrency), a throttled consumer is money or a ledger entry late;
- a stream consumer's `IteratorAge` above 5 minutes for 15: the ledger usually follows the
  counters within seconds; a quarter of an hour behind means cost events and budget alarms are
  late, long before the stream's 24 hours expire records;
- a dead-letter queue holding any message: each is work that failed every retry (a settlement
  owed, a stream batch the ledger never saw, a denial not recorded, a minute not swept);
- a table's read and write throttle events in two 5-minute periods running: an on-demand table
  throttles only at a partition's ceiling (a hot team, about 1,000 writes a second per key,
  docs/COUNTERS.md); one burst is absorbed by the SDK's retries, ten minutes of it is the
  ceiling, and admissions start to fail;
- a table's `TransactionConflict` above 100 in 5 minutes, three periods running: the store
  retries conflicts with backoff (docs/COUNTERS.md), so some are normal under concurrency on a
  team's items; sustained, they are requests paying retries (and soon refusals) — time to shard;
- the API's `5XXError` rate above 5 % over two 5-minute periods: the gateway's own 502/503s
  (every deployment of a model failed, a closed budget without its store) count too, and the
  fallbacks absorb a provider's blip;
- refusals for want of the counter store (`Denials` with reason `counter_store_unavailable`,
  `StoreUnavailableError.code`) ≥ 1 in 5 minutes: each refused a call its budget would have
  admitted.
"""

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct, IConstruct

from paymaster import names
from paymaster.domain.errors import StoreUnavailableError
from paymaster_infra.dashboards import insights

PERIOD = Duration.minutes(5)
ITERATOR_AGE_MS = 5 * 60 * 1000
ITERATOR_AGE_PERIODS = 3
THROTTLE_PERIODS = 2
TRANSACTION_CONFLICTS = 100
CONFLICT_PERIODS = 3
SERVER_ERROR_RATE = 0.05
SERVER_ERROR_PERIODS = 2


def functions_of(scope: IConstruct) -> list[lambda_.Function]:
    return [c for c in scope.node.find_all() if isinstance(c, lambda_.Function)]


def tables_of(scope: IConstruct) -> list[dynamodb.Table]:
    return [c for c in scope.node.find_all() if isinstance(c, dynamodb.Table)]


def dead_letter_queues_of(scope: IConstruct) -> list[sqs.Queue]:
    """The queues that have no dead-letter queue themselves: where failures end. cdk-nag's
    AwsSolutions-SQS3 gives every other queue one (or asks for a reason it has none)."""
    return [c for c in scope.node.find_all() if isinstance(c, sqs.Queue) and c.dead_letter_queue is None]


def stream_consumers_of(scope: IConstruct) -> list[lambda_.Function]:
    """The functions with an event source that reads a stream (one with a starting position)."""
    return [
        function
        for function in functions_of(scope)
        if any(
            isinstance(child, lambda_.CfnEventSourceMapping) and child.starting_position is not None
            for child in function.node.find_all()
        )
    ]


class OperationalAlarms(Construct):
    """Every alarm above for what the `watched` scopes (the stacks) hold, and the one on refusals
    without the counter store (a metric of the namespace, not of a resource); each notifies
    `topic` when it goes into ALARM and when it is OK again. Missing data is not breaching: a quiet
    hour is no alarm.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, topic: sns.ITopic, watched: Sequence[IConstruct]
    ) -> None:
        super().__init__(scope, construct_id)
        self._action = actions.SnsAction(topic)
        self.alarms: list[cloudwatch.Alarm] = []
        for each in watched:
            self._watch(each)
        refused = cloudwatch.MathExpression(
            expression=insights(
                names.METRIC_DENIALS,
                names.DENIAL_DIMENSIONS,
                {names.DIMENSION_REASON: StoreUnavailableError.code},
                [],
            ),
            using_metrics={},
            period=PERIOD,
            label="refused without the counter store",
        )
        self._alarm(
            self,
            "StoreUnavailableRefusals",
            refused,
            threshold=1,
            what="refused calls because the counter store could not be reached (budgets fail closed)",
        )

    def _watch(self, stack: IConstruct) -> None:
        for function in functions_of(stack):
            self._function(function)
        for function in stream_consumers_of(stack):
            self._alarm(
                function,
                "IteratorAge",
                function.metric("IteratorAge", statistic="Maximum", period=PERIOD),
                threshold=ITERATOR_AGE_MS,
                periods=ITERATOR_AGE_PERIODS,
                comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                what="is more than 5 minutes behind its stream, for 15 minutes",
            )
        for queue in dead_letter_queues_of(stack):
            self._alarm(
                queue,
                "Depth",
                queue.metric_approximate_number_of_messages_visible(statistic="Maximum", period=PERIOD),
                threshold=0,
                comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                what="holds messages: work that failed every retry (docs/LEDGER.md, infra/README.md)",
            )
        for table in tables_of(stack):
            self._table(table)
        for api in (c for c in stack.node.find_all() if isinstance(c, apigateway.RestApi)):
            self._alarm(
                api,
                "ServerErrors",
                api.metric_server_error(statistic="Average", period=PERIOD),
                threshold=SERVER_ERROR_RATE,
                periods=SERVER_ERROR_PERIODS,
                comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                what="answers more than 5 % of requests with a 5xx, for 10 minutes",
            )

    def _function(self, function: lambda_.Function) -> None:
        self._alarm(
            function,
            "Errors",
            function.metric_errors(statistic="Sum", period=PERIOD),
            threshold=1,
            what="failed (a crash, a timeout or memory running out)",
        )
        self._alarm(
            function,
            "Throttles",
            function.metric_throttles(statistic="Sum", period=PERIOD),
            threshold=1,
            what="was throttled (the account's or its reserved concurrency)",
        )

    def _table(self, table: dynamodb.Table) -> None:
        throttled = cloudwatch.MathExpression(
            expression="reads + writes",
            using_metrics={
                "reads": table.metric("ReadThrottleEvents", statistic="Sum", period=PERIOD),
                "writes": table.metric("WriteThrottleEvents", statistic="Sum", period=PERIOD),
            },
            period=PERIOD,
            label="throttle events",
        )
        self._alarm(
            table,
            "Throttles",
            throttled,
            threshold=1,
            periods=THROTTLE_PERIODS,
            what="throttled requests for 10 minutes: a partition at its ceiling (docs/COUNTERS.md)",
        )
        self._alarm(
            table,
            "TransactionConflicts",
            table.metric("TransactionConflict", statistic="Sum", period=PERIOD),
            threshold=TRANSACTION_CONFLICTS,
            periods=CONFLICT_PERIODS,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            what="cancelled more than 100 transactions in each of 15 minutes: a hot item (docs/COUNTERS.md)",
        )

    def _alarm(
        self,
        watched: IConstruct,
        kind: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        what: str,
        periods: int = 1,
        comparison: cloudwatch.ComparisonOperator = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    ) -> None:
        path = watched.node.path
        alarm = cloudwatch.Alarm(
            self,
            f"{path.replace('/', '')}{kind}",
            metric=metric,
            threshold=threshold,
            evaluation_periods=periods,
            datapoints_to_alarm=periods,
            comparison_operator=comparison,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"paymaster: {path} {what}",
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.alarms.append(alarm)
