"""The ledger function: the counters table's stream delivers every write the counter store
makes; each reservation that leaves `held` for its outcome becomes one ledger entry, added once
to its team's rollups (`adapters.dynamodb_ledger`, docs/LEDGER.md), and its event — CostRecorded
for a charged call, ReservationExpired for a hold the sweeper charged — goes on the bus. Every
counter whose `spent` a settlement moved past one of its rule's alert thresholds publishes a
BudgetThresholdCrossed for each, once per window (`services.alarms.ThresholdWatch`,
docs/ALARMS.md). Every other record — admissions, holds, TTL deletions, fences — is done as soon
as it is read.

Two steps per batch: Powertools' BatchProcessor records each record's entry; then the events of
every record recorded (crossings included) are published together, at most 10 per PutEvents
across the batch (docs/EVENTS.md). A record whose entry could not be recorded now (the ledger table unavailable),
that cannot be read, or whose event the bus did not take for now, is reported as a batch item failure:
Lambda checkpoints the shard before the lowest one and delivers it again, with what followed
it, which finds its entries already there (nothing counted twice) and publishes its events again
(at least once; consumers de-duplicate on request id). After `names.LEDGER_RETRY_ATTEMPTS`
retries its place in the stream goes to the failure queue. An event that can never go out — its
entry lacks what the event needs, or the bus refuses it for what it is (too large, malformed) — is
logged at error with its entry or detail and its record is done: retrying could not change it.
Handler: `app.handler`.
"""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from paymaster.adapters.dynamodb_alarms import spend_change
from paymaster.adapters.dynamodb_ledger import ledger_entry
from paymaster.composition import ledger_recorder, threshold_watch
from paymaster.domain.errors import StoreUnavailableError
from paymaster.services.ledger import Pending

logger = Logger(service="paymaster")

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def record_entry(record: DynamoDBRecord, pending: list[Pending]) -> None:
    """Records the record's entry and adds its event to `pending`. Raises to report the record
    failed (Powertools logs a record's failure only at debug level, so why it failed is logged here)."""
    change = record.dynamodb
    sequence_number = change.sequence_number if change else None
    try:
        entry = ledger_entry(record.raw_event)
    except (ValueError, KeyError, TypeError) as error:
        logger.error("a reservation the ledger cannot read", extra={"sequence_number": sequence_number})
        raise ValueError(f"stream record {sequence_number} is not a reservation the ledger can read") from error
    if entry is None:
        record_crossings(record, pending)
        return
    # An entry is read from the record's change, which names its sequence number.
    assert change is not None
    assert sequence_number is not None
    created = change.approximate_creation_date_time
    written_at = None if created is None else datetime.fromtimestamp(created, UTC)
    try:
        event = ledger_recorder().record(entry, written_at)
    except StoreUnavailableError as error:
        logger.warning(
            "ledger entry not recorded: the ledger cannot take it yet",
            extra={"request_id": entry.request_id, "sequence_number": sequence_number, "error": error.message},
        )
        raise
    except ValueError:
        # Recorded, and its event cannot be made from it however often it comes: failing the
        # record would hold the shard back for nothing until the record is set aside.
        logger.exception(
            "a ledger entry whose event cannot be made: recorded, not published",
            extra={"request_id": entry.request_id, "sequence_number": sequence_number, "outcome": entry.outcome},
        )
        return
    if event is not None:
        pending.append(Pending(sequence_number, event))


def record_crossings(record: DynamoDBRecord, pending: list[Pending]) -> None:
    """Adds the BudgetThresholdCrossed of every threshold a counter's change crossed, and that
    this record is the one to publish, to `pending`. Raises to report the record failed."""
    change = record.dynamodb
    sequence_number = change.sequence_number if change else None
    try:
        spend = spend_change(record.raw_event)
    except (ValueError, KeyError, TypeError) as error:
        logger.error("a counter the ledger cannot read", extra={"sequence_number": sequence_number})
        raise ValueError(f"stream record {sequence_number} is not a counter the ledger can read") from error
    if spend is None:
        return
    assert change is not None
    assert sequence_number is not None
    created = change.approximate_creation_date_time
    # A record's eventID is the same on every delivery of it, and no other record's.
    record_id = record.event_id or sequence_number
    written_at = datetime.now(UTC) if created is None else datetime.fromtimestamp(created, UTC)
    try:
        crossings = threshold_watch().crossings(spend, record_id, written_at)
    except StoreUnavailableError as error:
        logger.warning(
            "threshold crossing not recorded: the ledger cannot take it yet",
            extra={"rule": spend.rule, "sequence_number": sequence_number, "error": error.message},
        )
        raise
    pending.extend(Pending(sequence_number, crossing) for crossing in crossings)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    pending: list[Pending] = []

    def record_handler(record: DynamoDBRecord) -> None:
        record_entry(record, pending)

    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    # Lambda resumes the shard from the lowest sequence number reported; listed in stream order.
    failed = {failure["itemIdentifier"] for failure in response["batchItemFailures"]}
    failed |= set(ledger_recorder().publish(pending))
    return {"batchItemFailures": [{"itemIdentifier": number} for number in sorted(failed, key=int)]}
