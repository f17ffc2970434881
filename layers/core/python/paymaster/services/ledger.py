"""Recording what each reservation came to: the ledger function's use case.

The counters table's stream carries every settlement's own write; the ledger function
(`functions/ledger`) reads the entry out of each record that takes a reservation from `held` to
its outcome and records it here, off the gateway's hot path. Recording is idempotent, so a
record the stream delivers twice (a retried batch) is recorded once.
"""

from aws_lambda_powertools import Logger

from paymaster.domain.ledger import LedgerEntry
from paymaster.ports import Ledger

logger = Logger(service="paymaster")


class LedgerRecorder:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def record(self, entry: LedgerEntry) -> bool:
        """True when it was recorded now; False when it already was. Raises
        StoreUnavailableError while the ledger cannot take it (the stream delivers it again)."""
        recorded = self._ledger.record(entry)
        if not recorded:
            logger.info("ledger entry already recorded", extra={"request_id": entry.request_id, "hop": entry.hop})
        return recorded
