"""Applying settlements the gateway could not: the settlement-retry function's use case.

The gateway queues a settlement (or a release) when the counter store refused or did not answer
it (`AdmissionService`); this applies it with the same idempotent `CounterStore.settle`. A store
still unavailable raises, so the message is delivered again, and again, until it lands or an
operator takes it from the dead-letter queue.
"""

from aws_lambda_powertools import Logger

from paymaster.ports import CounterStore, Settlement

logger = Logger(service="paymaster")


class SettlementRetry:
    def __init__(self, store: CounterStore) -> None:
        self._store = store

    def apply(self, settlement: Settlement) -> bool:
        """True when it counted now; False when it had already landed (or nothing was held).
        Raises StoreUnavailableError while the store cannot take it."""
        applied = self._store.settle(settlement)
        logger.info(
            "queued settlement applied" if applied else "queued settlement had already landed",
            extra={"request_id": settlement.request_id, "outcome": settlement.outcome, "cost": settlement.cost},
        )
        return applied
