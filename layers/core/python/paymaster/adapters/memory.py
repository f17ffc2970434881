"""In-memory adapters with the real ones' semantics, for tests, benchmarks and local tools."""

import threading

from paymaster.ports import Settlement


class MemorySettlementQueue:
    """A settlement queue that keeps what it is given until `take` hands it over."""

    def __init__(self) -> None:
        self._waiting: list[Settlement] = []
        self._lock = threading.Lock()

    def put(self, settlement: Settlement) -> None:
        with self._lock:
            self._waiting.append(settlement)

    def take(self) -> list[Settlement]:
        """Everything queued so far, oldest first; the queue is empty afterwards."""
        with self._lock:
            taken, self._waiting = self._waiting, []
        return taken
