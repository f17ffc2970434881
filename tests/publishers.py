"""Event publishers for tests: one that keeps what it is given, ones that fail or hang, and the
real EventBridge publisher on a scripted PutEvents."""

import json
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from paymaster.adapters.aws_environment import StaticCredentials
from paymaster.adapters.event_bus import EventBridgePublisher, EventBridgeWire
from paymaster.domain.events import PaymasterEvent
from paymaster.ports import Unpublished


class RecordingBus:
    """An EventPublisher that takes every event and keeps it, in order."""

    def __init__(self) -> None:
        self.events: list[PaymasterEvent] = []
        self._lock = threading.Lock()

    def publish(self, events: Sequence[PaymasterEvent]) -> list[Unpublished]:
        with self._lock:
            self.events.extend(events)
        return []


class RefusingBus:
    """Returns every event unpublished, with `code`."""

    def __init__(self, code: str = "AccessDeniedException") -> None:
        self.code = code

    def publish(self, events: Sequence[PaymasterEvent]) -> list[Unpublished]:
        return [Unpublished(event, self.code, "scripted") for event in events]


class RaisingBus:
    """Breaks its promise never to raise."""

    def publish(self, events: Sequence[PaymasterEvent]) -> list[Unpublished]:
        raise RuntimeError("a publisher that raises")


class HangingBus:
    """Does not answer until `release` is set (a test sets it when done, so no thread is left)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0

    def publish(self, events: Sequence[PaymasterEvent]) -> list[Unpublished]:
        self.started += 1
        self.release.wait(timeout=30)
        return []


class ScriptedBus:
    """EventBridge's PutEvents as an httpx transport: `fail(entry, call)` says which error code an
    entry gets on the call-th call (None: accepted). Records each call's entries and what it took."""

    def __init__(self, fail: Callable[[dict[str, Any], int], str | None] = lambda *_: None) -> None:
        self.fail = fail
        self.calls: list[list[dict[str, Any]]] = []
        self.accepted: list[str] = []  # request ids (a crossing's id), once per acceptance

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["x-amz-target"] == "AWSEvents.PutEvents"
        entries = json.loads(request.content)["Entries"]
        self.calls.append(entries)
        results = []
        for entry in entries:
            code = self.fail(entry, len(self.calls))
            if code is None:
                detail = json.loads(entry["Detail"])
                self.accepted.append(detail.get("request_id") or detail["crossing_id"])
                results.append({"EventId": uuid.uuid4().hex})
            else:
                results.append({"ErrorCode": code, "ErrorMessage": f"{code} (scripted)"})
        failed = sum("ErrorCode" in result for result in results)
        return httpx.Response(200, json={"FailedEntryCount": failed, "Entries": results})


def scripted_publisher(bus: ScriptedBus, *, entry_attempts: int = 4) -> EventBridgePublisher:
    """The EventBridge publisher as the ledger function builds it, sending to `bus`, without sleeps."""
    wire = EventBridgeWire(
        httpx.MockTransport(bus),
        endpoint_url="https://events.us-east-1.amazonaws.com",
        region="us-east-1",
        credentials=StaticCredentials("local", "local"),
        sleep=lambda _: None,
    )
    return EventBridgePublisher(wire, "paymaster-events", entry_attempts=entry_attempts, sleep=lambda _: None)
