"""RequestDenied: one event for each request a rule refused, published before its 429 is sent.

Why before: under Lambda Web Adapter the execution environment may be frozen as soon as the
response ends, so work left for after it may never run. A refusal can afford to wait for its own
PutEvents; a served request never waits for one (nothing is published on its path).

The wait is bounded: the event is published from a worker thread, and the 429 goes out after
`wait_s` whether or not the bus has answered. A bus that fails, refuses or is slow changes
nothing in the answer. Whatever was not confirmed in time is logged with the whole PutEvents
event before the 429 is sent, so every 429 has its event on the bus or in the log:

    published          nothing logged
    failed / refused   error "denial event not published", with the event
    not in time        warning "denial event not confirmed in time", with the event (it may
                       still be published: a replay from the log is de-duplicated by request id)
    too many waiting   error "denial event not published" (MAX_IN_FLIGHT slow publishes already)
"""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as WaitedTooLong

from aws_lambda_powertools import Logger

from paymaster.domain.events import RequestDenied
from paymaster.ports import EventPublisher, Unpublished

logger = Logger(service="paymaster")

# What a refusal may wait for its event: a PutEvents in the region answers in tens of ms.
DENIAL_EVENT_WAIT_S = 0.5
# Publishes still running after their wait; past this many, a bus that hangs costs no more threads.
MAX_IN_FLIGHT = 4


class DenialEvents:
    """`publisher` is the gateway's, set for one short attempt (composition); `wait_s` bounds the wait."""

    def __init__(
        self, publisher: EventPublisher, *, wait_s: float = DENIAL_EVENT_WAIT_S, max_in_flight: int = MAX_IN_FLIGHT
    ) -> None:
        self._publisher = publisher
        self._wait_s = wait_s
        self._max_in_flight = max_in_flight
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="paymaster-denial-event")
        self._lock = threading.Lock()
        self.outcomes = Counter[str]()  # published, failed, late, dropped: this container's, logged

    def publish(self, event: RequestDenied) -> None:
        """Publishes the refusal's event, waiting at most `wait_s`; never raises for the bus."""
        if not self._slots.acquire(blocking=False):
            self._record(event, "dropped", f"{self._max_in_flight} denial events already waiting for the bus")
            return
        try:
            future = self._pool.submit(self._publish, event)
        except RuntimeError:  # the pool is shut down: the process is ending
            self._slots.release()
            self._record(event, "dropped", "the process is stopping")
            return
        try:
            future.result(timeout=self._wait_s)
        except WaitedTooLong:
            self._record(event, "late", f"no answer from the bus within {self._wait_s} s")

    def _publish(self, event: RequestDenied) -> None:
        try:
            unpublished = self._publisher.publish([event])
        except Exception as error:  # noqa: BLE001 - the refusal stands whatever the publisher does
            unpublished = [Unpublished(event, type(error).__name__, str(error))]
        finally:
            self._slots.release()
        if unpublished:
            self._record(event, "failed", f"{unpublished[0].code}: {unpublished[0].message}")
        else:
            with self._lock:
                self.outcomes["published"] += 1

    def _record(self, event: RequestDenied, outcome: str, reason: str) -> None:
        with self._lock:
            self.outcomes[outcome] += 1
            counts = dict(self.outcomes)
        log = logger.warning if outcome == "late" else logger.error
        log(
            "denial event not confirmed in time" if outcome == "late" else "denial event not published",
            extra={
                "request_id": event.request_id,
                "outcome": outcome,
                "reason": reason,
                "denial_events": counts,
                "detail_type": event.detail_type,
                "detail": event.model_dump(mode="json"),
            },
        )
