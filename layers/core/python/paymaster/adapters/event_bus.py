"""paymaster's events onto its EventBridge bus: PutEvents over AWS's JSON protocol (`aws_json`).

One PutEvents takes at most 10 entries and 256 KB, an entry counted as EventBridge counts it:
14 bytes for `Time`, plus the UTF-8 bytes of `Source`, `DetailType`, `Detail` and each of
`Resources` (`EventBusName` is not counted). Events are sent in order, as many per call as fit;
one that cannot fit on its own is reported failed (`EntryTooLarge`) without being sent.

PutEvents answers 200 even when some entries failed: `FailedEntryCount`, and an `ErrorCode` in
each failed entry's result (results are in the order of the entries). Entries failed with a
code EventBridge calls retryable (`InternalFailure`, `ThrottlingException`) are sent again —
alone, after a jittered backoff — up to `entry_attempts` times in all; any other code
(`MalformedDetail`, `AccessDeniedException`, …) is final at once. A whole call that is throttled,
answers 5xx or whose answer is lost is sent again by `aws_json` (`max_attempts`).

Example: 25 events → calls of 10, 10 and 5. If the first answers FailedEntryCount 2
(ThrottlingException on entries 3 and 7), those two go again in a call of their own; if that
succeeds, nothing is returned. What still failed at the end is returned, never raised.

At least once: PutEvents is not idempotent, so a call whose answer was lost, sent again, may
publish twice, and an event reported failed may have been published (every answer to its call
was lost). That is the sense in which repeating it is safe (`aws_json`): consumers de-duplicate
on `request_id`.
"""

import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from paymaster.adapters.aws_json import AwsJsonApi
from paymaster.domain.events import PaymasterEvent
from paymaster.ports import Unpublished

MAX_ENTRIES = 10
MAX_REQUEST_BYTES = 256 * 1024
TIME_BYTES = 14  # what EventBridge counts for an entry's `Time`, whatever its value
RETRYABLE_ENTRY_ERRORS = frozenset({"InternalFailure", "ThrottlingException"})
# Codes that refuse an entry for what it is: the same entry is refused again however often it is sent.
FINAL_ENTRY_ERRORS = frozenset({"EntryTooLarge", "MalformedDetail", "InvalidArgument", "ValidationException"})
_RETRYABLE = {"ThrottlingException", "InternalException", "InternalFailure", "ServiceUnavailable"}
DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=2.0)

Entry = dict[str, Any]


class EventBridgeWire(AwsJsonApi):
    """The one EventBridge call paymaster makes, with a boto3 client's shapes and errors."""

    _service = "events"
    _target_prefix = "AWSEvents."
    _content_type = "application/x-amz-json-1.1"
    _retryable = frozenset(_RETRYABLE)
    _default_timeout = DEFAULT_TIMEOUT

    def put_events(self, *, Entries: list[Entry]) -> dict[str, Any]:
        return self.call("PutEvents", {"Entries": Entries})


def entry_size(entry: Entry) -> int:
    """An entry's size as EventBridge counts it against the 256 KB of a call."""
    size = TIME_BYTES if entry.get("Time") is not None else 0
    for part in ("Source", "DetailType", "Detail"):
        size += len(str(entry.get(part) or "").encode())
    return size + sum(len(resource.encode()) for resource in entry.get("Resources") or ())


def batches(entries: Sequence[tuple[PaymasterEvent, Entry]]) -> Iterator[list[tuple[PaymasterEvent, Entry]]]:
    """Consecutive runs of at most MAX_ENTRIES entries and MAX_REQUEST_BYTES, in order; each entry
    is at most MAX_REQUEST_BYTES."""
    batch: list[tuple[PaymasterEvent, Entry]] = []
    size = 0
    for event, entry in entries:
        this = entry_size(entry)
        if batch and (len(batch) == MAX_ENTRIES or size + this > MAX_REQUEST_BYTES):
            yield batch
            batch, size = [], 0
        batch.append((event, entry))
        size += this
    if batch:
        yield batch


class EventBridgePublisher:
    """An EventPublisher on the bus named `bus_name`, through `wire` (an EventBridgeWire)."""

    def __init__(
        self,
        wire: EventBridgeWire,
        bus_name: str,
        *,
        entry_attempts: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._wire = wire
        self._bus_name = bus_name
        self._entry_attempts = entry_attempts
        self._sleep = sleep

    def publish(self, events: Sequence[PaymasterEvent]) -> list[Unpublished]:
        unpublished: list[Unpublished] = []
        sendable: list[tuple[PaymasterEvent, Entry]] = []
        for event in events:
            entry = event.put_events_entry(self._bus_name)
            size = entry_size(entry)
            if size > MAX_REQUEST_BYTES:
                unpublished.append(
                    Unpublished(event, "EntryTooLarge", f"{size} bytes, over PutEvents' 256 KB", final=True)
                )
            else:
                sendable.append((event, entry))
        for batch in batches(sendable):
            unpublished += self._put(batch)
        return unpublished

    def _put(self, batch: list[tuple[PaymasterEvent, Entry]]) -> list[Unpublished]:
        """Sends one batch, then again what failed and may be retried, until nothing is left to retry."""
        pending = batch
        final: list[Unpublished] = []
        for attempt in range(1, self._entry_attempts + 1):
            try:
                answer = self._wire.put_events(Entries=[entry for _, entry in pending])
            except ClientError as error:
                failure = error.response["Error"]
                return final + [Unpublished(event, failure["Code"], failure["Message"]) for event, _ in pending]
            except BotoCoreError as error:
                return final + [Unpublished(event, type(error).__name__, str(error)) for event, _ in pending]
            results: list[dict[str, Any]] = answer.get("Entries") or []
            retry: list[tuple[PaymasterEvent, Entry]] = []
            for index, (event, entry) in enumerate(pending):
                # EventBridge answers one result per entry, in order; a missing one is a failure.
                result = results[index] if index < len(results) else {"ErrorCode": "NoResult"}
                code = result.get("ErrorCode")
                if not code:
                    continue
                if code in RETRYABLE_ENTRY_ERRORS and attempt < self._entry_attempts:
                    retry.append((event, entry))
                else:
                    message = result.get("ErrorMessage") or ""
                    final.append(Unpublished(event, code, message, final=code in FINAL_ENTRY_ERRORS))
            if not retry:
                break
            pending = retry
            self._sleep(0.05 * 2**attempt * random.random())  # noqa: S311 - jitter, not secrecy
        return final


class NoEventBus:
    """No bus configured (a test, a stack without events): every event is dropped as published."""

    def publish(self, events: Sequence[PaymasterEvent]) -> list[Unpublished]:
        return []
