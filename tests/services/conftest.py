"""Use cases on the in-memory adapters: pure (no sockets), time from a controlled clock.

The counter store is the `store` fixture, so that a test here can also run end to end through
DynamoDB: `tests/adapters/test_use_cases_through_dynamodb.py` collects a few of them again, and
there `store` is the DynamoDB store on the stand-in.
"""

import pytest

from paymaster.adapters.memory import MemoryCounterStore
from tests.reservations import NOW
from tests.unit.conftest import _no_sockets  # noqa: F401  (the unit tests' autouse guard, here too)


@pytest.fixture
def store() -> MemoryCounterStore:
    return MemoryCounterStore(clock=lambda: NOW)
