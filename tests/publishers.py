"""Event publishers for tests: one that keeps what it is given, and ones that fail or hang."""

import threading
from collections.abc import Sequence

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
