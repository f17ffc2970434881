"""The ledger function: reads the counters table's stream, writes the ledger and publishes each
entry's event (docs/LEDGER.md, docs/EVENTS.md)."""

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from paymaster import names
from paymaster_infra.budget_alarms import MARKERS_ONLY
from paymaster_infra.config import AppConfig
from paymaster_infra.counter_access import grant_transactions
from paymaster_infra.lambda_defaults import EVENT_HANDLER, default_function
from paymaster_infra.layers import POLICY_FILE, GatewayLayers
from paymaster_infra.nag import acknowledge

# A batch of names.LEDGER_BATCH_SIZE records takes well under a second (one transaction per
# settled reservation); with DynamoDB not answering, each gives up after 3 attempts × 5 s, so a
# batch can run out of time, which fails it whole: it is retried (bisected), never lost.
TIMEOUT = Duration.minutes(2)
# A record still failing after this long is set aside (the failure queue names where it is), so a
# record that can never be read holds its shard back for hours, not for the stream's 24: the
# iterator-age alarm fires after 15 minutes, and an operator has the 18 hours left to replay it
# from the stream (docs/LEDGER.md).
MAX_RECORD_AGE = Duration.hours(6)


class LedgerFunction(Construct):
    """Reads every record of the counters' stream from its oldest (TRIM_HORIZON), in batches of
    `names.LEDGER_BATCH_SIZE`, reporting each record it could not record so that the shard
    resumes from it; a batch that fails `names.LEDGER_RETRY_ATTEMPTS` retries (halved on each
    function error, to isolate the record that fails) is set aside on `failures`.

    It mounts the core package, its dependencies and the policy, and may read the counters'
    stream, send the ledger's transactions (`PutItem`, `UpdateItem` items) and the conditional
    `PutItem` of a threshold's marker (docs/ALARMS.md), and put events on `bus`; nothing else.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        layers: GatewayLayers,
        counters: dynamodb.ITable,
        ledger: dynamodb.ITable,
        bus: events.IEventBus,
        failures: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = default_function(
            self,
            "Function",
            description="paymaster ledger: an entry and its rollups for every reservation the stream settles",
            code_dir=config.ledger_code_dir,
            handler=EVENT_HANDLER,
            # The policy: a counter's spend is checked against its rule's alert thresholds.
            layers=[*layers.python, layers.policy],
            environment={
                names.ENV_LEDGER_TABLE: ledger.table_name,
                names.ENV_EVENT_BUS: bus.event_bus_name,
                names.ENV_POLICY_FILE: POLICY_FILE,
            },
            timeout=TIMEOUT,
        )
        grant_transactions(ledger, self.function)
        # A threshold the spend had already passed: its marker is read once per container
        # (`services.alarms.ThresholdWatch`), and no other item of the ledger.
        self.function.add_to_role_policy(
            iam.PolicyStatement(actions=["dynamodb:GetItem"], resources=[ledger.table_arn], conditions=MARKERS_ONLY)
        )
        bus.grant_put_events_to(self.function)
        self.function.add_event_source(
            event_sources.DynamoEventSource(
                counters,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=names.LEDGER_BATCH_SIZE,
                report_batch_item_failures=True,
                retry_attempts=names.LEDGER_RETRY_ATTEMPTS,
                bisect_batch_on_error=True,
                max_record_age=MAX_RECORD_AGE,
                on_failure=event_sources.SqsDlq(failures),
            )
        )
        assert self.function.role is not None
        acknowledge(
            self.function.role,
            {
                "AwsSolutions-IAM5[Resource::*]": (
                    "dynamodb:ListStreams (which the stream event source needs to find the counters' "
                    "stream) and active tracing's xray:PutTraceSegments and xray:PutTelemetryRecords "
                    "support no resource-level permissions; the stream's own actions are on its ARN."
                ),
            },
        )
