"""The denials ledger function: records every RequestDenied the denials queue holds (docs/LEDGER.md)."""

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from paymaster import names
from paymaster_infra.config import AppConfig
from paymaster_infra.counter_access import grant_transactions
from paymaster_infra.denial_queue import CONSUMER_BATCH_SIZE, CONSUMER_TIMEOUT
from paymaster_infra.lambda_defaults import EVENT_HANDLER, default_function
from paymaster_infra.layers import GatewayLayers

# Batches in flight at once (the least SQS allows). Every denial of a team adds to the same month
# and day TOTAL items the stream's ledger function adds to, so more batches at once would mostly
# buy TransactionConflicts; a burst of refusals waits in the queue instead (a digest reads it
# daily), at ~100 recorded a second per batch in flight.
MAX_CONCURRENCY = 2


class DenialLedgerFunction(Construct):
    """Reads the denials queue in batches and reports each denial it could not record, so that only
    those are delivered again (and dead-lettered after `names.DENIALS_MAX_RECEIVES`).

    It mounts the core package and its dependencies only, and may send the ledger's transactions
    (`PutItem`, `UpdateItem` items) and consume the queue; nothing else.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        layers: GatewayLayers,
        ledger: dynamodb.ITable,
        queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = default_function(
            self,
            "Function",
            description="paymaster ledger of denials: an entry and denial counts for every RequestDenied",
            code_dir=config.ledger_denials_code_dir,
            handler=EVENT_HANDLER,
            layers=layers.python,
            environment={names.ENV_LEDGER_TABLE: ledger.table_name},
            timeout=CONSUMER_TIMEOUT,
        )
        grant_transactions(ledger, self.function)
        self.function.add_event_source(
            event_sources.SqsEventSource(
                queue,
                batch_size=CONSUMER_BATCH_SIZE,
                report_batch_item_failures=True,
                max_concurrency=MAX_CONCURRENCY,
            )
        )
