"""The settlement-retry function: SQS delivers settlements the gateway could not apply.

Each record is one settlement (`adapters.settlement_queue`). A record that cannot be applied now
— the store still unavailable, or a body that is not a settlement — is reported as a batch item
failure, so SQS delivers it again (and, after the queue's maxReceiveCount, moves it to the
dead-letter queue); the others are done and deleted. Handler: `app.handler`.
"""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from paymaster.adapters.settlement_queue import settlement_from_json
from paymaster.composition import settlement_retry

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    settlement_retry().apply(settlement_from_json(record.body))


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
