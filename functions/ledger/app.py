"""The ledger function: the counters table's stream delivers every write the counter store
makes; each reservation that leaves `held` for its outcome becomes one ledger entry, added once
to its team's rollups (`adapters.dynamodb_ledger`, docs/LEDGER.md). Every other record —
counters, admissions, TTL deletions, fences — is done as soon as it is read.

A record that cannot be recorded now (the ledger table unavailable) or cannot be read is reported
as a batch item failure: Lambda checkpoints the shard before it and delivers it again, with what
followed it, which finds its entries already there and counts nothing twice. After
`names.LEDGER_RETRY_ATTEMPTS` retries its place in the stream goes to the failure queue.
Handler: `app.handler`.
"""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from paymaster.adapters.dynamodb_ledger import ledger_entry
from paymaster.composition import ledger_recorder
from paymaster.domain.errors import StoreUnavailableError

logger = Logger(service="paymaster")

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def record_handler(record: DynamoDBRecord) -> None:
    """Raises to report the record failed (Powertools logs a record's failure only at debug level,
    so why it failed is logged here)."""
    sequence_number = record.dynamodb.sequence_number if record.dynamodb else None
    try:
        entry = ledger_entry(record.raw_event)
    except (ValueError, KeyError, TypeError) as error:
        logger.error("a reservation the ledger cannot read", extra={"sequence_number": sequence_number})
        raise ValueError(f"stream record {sequence_number} is not a reservation the ledger can read") from error
    if entry is None:
        return
    try:
        ledger_recorder().record(entry)
    except StoreUnavailableError as error:
        logger.warning(
            "ledger entry not recorded: the ledger cannot take it yet",
            extra={"request_id": entry.request_id, "sequence_number": sequence_number, "error": error.message},
        )
        raise


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
