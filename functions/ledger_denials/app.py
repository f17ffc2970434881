"""The denials ledger function: SQS delivers the RequestDenied events an EventBridge rule routes
to it; each becomes one ledger entry (decision `denied by rule <rule>`, cost 0), added once to
its team's denial counts (`services.ledger_denials`, docs/LEDGER.md).

A message that cannot be recorded now (the ledger table unavailable) or is not a RequestDenied
is reported as a batch item failure: SQS delivers it again, and after `names.DENIALS_MAX_RECEIVES`
deliveries moves it to the dead-letter queue; the others are done and deleted. A message
delivered again finds its entry already there and counts nothing twice. Handler: `app.handler`.
"""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from paymaster.composition import denial_recorder
from paymaster.domain.errors import StoreUnavailableError
from paymaster.domain.events import RequestDenied

logger = Logger(service="paymaster")

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    """Raises to report the record failed (Powertools logs a record's failure only at debug level,
    so why it failed is logged here)."""
    try:
        event = RequestDenied.from_envelope(record.body)
    except ValueError as error:
        logger.error("not a RequestDenied: it goes to the dead-letter queue", extra={"message_id": record.message_id})
        raise ValueError(f"message {record.message_id} is not a RequestDenied event") from error
    try:
        denial_recorder().record(event)
    except StoreUnavailableError as error:
        logger.warning(
            "denial not recorded: the ledger cannot take it yet",
            extra={"request_id": event.request_id, "message_id": record.message_id, "error": error.message},
        )
        raise


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
