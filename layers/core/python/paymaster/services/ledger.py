"""Recording what each reservation came to, and publishing it: the ledger function's use case.

The counters table's stream carries every settlement's own write; the ledger function
(`functions/ledger`) reads the entry out of each record that takes a reservation from `held` to
its outcome and records it here, off the gateway's hot path. Recording is idempotent, so a
record the stream delivers twice (a retried batch) is recorded once.

Each recorded entry's event (`domain.events.ledger_event`: CostRecorded for a charged call,
ReservationExpired for an expired hold) is published once the whole stream batch is recorded,
every event of the batch in one `publish`, so that the bus is sent at most 10 per PutEvents
across records (25 entries of a batch → 3 PutEvents, not 25). An entry already recorded
publishes again: its event may be what failed the first time. Delivery is at least once;
consumers de-duplicate on `request_id`.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from aws_lambda_powertools import Logger

from paymaster.domain.events import PaymasterEvent, ledger_event
from paymaster.domain.ledger import LedgerEntry
from paymaster.ports import EventPublisher, Ledger

logger = Logger(service="paymaster")


@dataclass(frozen=True, slots=True)
class Pending:
    """The event of the entry that stream record `record_id` (its sequence number) carried."""

    record_id: str
    event: PaymasterEvent


class LedgerRecorder:
    def __init__(self, ledger: Ledger, bus: EventPublisher) -> None:
        self._ledger = ledger
        self._bus = bus

    def record(self, entry: LedgerEntry, written_at: datetime | None) -> PaymasterEvent | None:
        """Records the entry (once, however often it comes) and returns the event it publishes, if
        any — also when it was already recorded. `written_at`: when its settlement was written.
        Raises StoreUnavailableError while the ledger cannot take it (the stream delivers it
        again), ValueError for an entry whose event cannot be made (after recording it: the
        ledger keeps the entry; a redelivery could not make the event either)."""
        if not self._ledger.record(entry):
            logger.info("ledger entry already recorded", extra={"request_id": entry.request_id, "hop": entry.hop})
        return ledger_event(entry, written_at)

    def publish(self, pending: Sequence[Pending]) -> list[str]:
        """Publishes every pending event in one go (the bus batches them) and returns the record
        ids whose event it could not publish, in the order given: the stream must deliver those
        records again."""
        records = {id(item.event): item.record_id for item in pending}
        unpublished = self._bus.publish([item.event for item in pending])
        for refused in [failure for failure in unpublished if failure.final]:
            # Delivering the record again would be refused the same way, holding back its shard
            # until the record is set aside: the event is in the log, whole, to be replayed by hand.
            logger.error(
                "ledger event refused by the bus for what it is: not retried",
                extra={
                    "key": refused.event.key,
                    "detail_type": refused.event.detail_type,
                    "code": refused.code,
                    "error": refused.message,
                    "detail": refused.event.model_dump(mode="json"),
                },
            )
        unpublished = [failure for failure in unpublished if not failure.final]
        for failure in unpublished:
            logger.warning(
                "ledger event not published: its record will be delivered again",
                extra={
                    "key": failure.event.key,
                    "detail_type": failure.event.detail_type,
                    "code": failure.code,
                    "error": failure.message,
                },
            )
        failed = {records[id(failure.event)] for failure in unpublished}
        return [item.record_id for item in pending if item.record_id in failed]
