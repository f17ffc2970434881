"""The settlement-retry function: SQS delivers settlements the gateway could not apply.

Each record is one settlement (`adapters.settlement_queue`). A record that cannot be applied now
— the store still unavailable, or a body that is not a settlement — is reported as a batch item
failure, so SQS delivers it again (and, after the queue's maxReceiveCount, moves it to the
dead-letter queue); the others are done and deleted. Handler: `app.handler`.
"""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from paymaster.adapters.settlement_queue import settlement_from_json
from paymaster.composition import settlement_retry
from paymaster.domain.errors import StoreUnavailableError

logger = Logger(service="paymaster")

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    """Raises to report the record failed (Powertools logs a record's failure only at debug level,
    so why it failed is logged here)."""
    try:
        settlement = settlement_from_json(record.body)
    except (ValueError, KeyError, TypeError) as error:
        logger.error("not a settlement: it goes to the dead-letter queue", extra={"message_id": record.message_id})
        raise ValueError(f"message {record.message_id} is not a settlement") from error
    try:
        settlement_retry().apply(settlement)
    except StoreUnavailableError as error:
        logger.warning(
            "settlement not applied: the counter store cannot take it yet",
            extra={"request_id": settlement.request_id, "message_id": record.message_id, "error": error.message},
        )
        raise


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
