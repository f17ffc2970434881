"""The budget-alarm function: SQS delivers the BudgetThresholdCrossed events an EventBridge rule
routes to the alarm queue; each becomes one email to its team's SNS topic
(`services.alarms.BudgetAlarms`, docs/ALARMS.md).

A message whose email could not be sent (the topic refused it, the markers or the rollups could
not be reached) or that is not a BudgetThresholdCrossed is reported as a batch item failure: SQS
delivers it again and, after `names.ALARM_MAX_RECEIVES` deliveries, moves it to the dead-letter
queue, where it waits to be replayed — never lost. A message delivered again, or a second copy
of the event, finds the email's marker and sends nothing. Handler: `app.handler`.
"""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from paymaster.composition import budget_alarms
from paymaster.domain.errors import NoticeNotSentError, StoreUnavailableError
from paymaster.domain.events import BudgetThresholdCrossed

logger = Logger(service="paymaster")

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    """Raises to report the record failed (Powertools logs a record's failure only at debug level,
    so why it failed is logged here)."""
    try:
        crossing = BudgetThresholdCrossed.from_envelope(record.body)
    except ValueError as error:
        logger.error(
            "not a BudgetThresholdCrossed: it goes to the dead-letter queue", extra={"message_id": record.message_id}
        )
        raise ValueError(f"message {record.message_id} is not a BudgetThresholdCrossed event") from error
    try:
        budget_alarms().deliver(crossing)
    except (NoticeNotSentError, StoreUnavailableError) as error:
        logger.warning(
            "budget alarm not sent: its message will be delivered again",
            extra={"crossing_id": crossing.crossing_id, "message_id": record.message_id, "error": error.message},
        )
        raise


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
