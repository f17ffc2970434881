"""Recording each request a rule refused: the denials ledger function's use case.

A refusal holds nothing, so no reservation of it reaches the counters' stream; the gateway
publishes its RequestDenied before the 429 instead, and an EventBridge rule queues it for the
denials ledger function (`functions/ledger_denials`), which records it here. Recording is
idempotent (the entry is keyed by team, month, refusal time and request id, and put only where
it is not), so a message SQS delivers twice is recorded once.
"""

from aws_lambda_powertools import Logger

from paymaster.domain.events import RequestDenied, denied_entry
from paymaster.ports import Ledger

logger = Logger(service="paymaster")


class DenialRecorder:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def record(self, event: RequestDenied) -> bool:
        """True when it was recorded now; False when it already was. Raises
        StoreUnavailableError while the ledger cannot take it (SQS delivers it again)."""
        recorded = self._ledger.record(denied_entry(event))
        if not recorded:
            logger.info("denial already recorded", extra={"request_id": event.request_id, "rule": event.rule.name})
        return recorded
