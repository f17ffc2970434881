"""What only the in-memory counter store does: the failures a test asks of it, and the client
token's ten minutes on its own clock. Its semantics, shared with the DynamoDB store, are held by
`tests/adapters/test_counter_store_contract.py`."""

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from paymaster.adapters.memory import CLIENT_TOKEN_WINDOW, MemoryCounterStore, StoreOperation
from paymaster.domain.errors import StoreOutcomeUnknownError, StoreUnavailableError
from paymaster.domain.limits import Hold
from tests.reservations import BUDGET, NOW, RPM, holds, reservation, settlement


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def committed(store: MemoryCounterStore, held: tuple[Hold, ...] | None = None) -> list[int]:
    found = store.counters([(hold.pk, hold.sk) for hold in held or holds(BUDGET)])
    return [state.committed for state in found.values()]


def test_a_failure_before_applying_changes_nothing() -> None:
    store = MemoryCounterStore(clock=Clock())
    store.fail_next("reserve", StoreUnavailableError("the counter store is unreachable"))

    with pytest.raises(StoreUnavailableError, match="unreachable"):
        store.reserve(reservation("r1", holds(BUDGET)))

    assert committed(store) == [0]
    assert store.reserve(reservation("r1", holds(BUDGET))) == []  # the next call goes through


def test_a_failure_after_applying_keeps_what_was_applied_as_a_store_that_never_answered() -> None:
    store = MemoryCounterStore(clock=Clock())
    store.fail_next("reserve", StoreOutcomeUnknownError("the counter store did not answer"), applied=True)

    with pytest.raises(StoreOutcomeUnknownError):
        store.reserve(reservation("r1", holds(BUDGET)))

    assert committed(store) == [10]
    assert store.reserve(reservation("r1", holds(BUDGET))) == []  # a repeat finds its own
    assert committed(store) == [10]


def test_failures_queue_up_one_call_each_for_their_own_operation() -> None:
    store = MemoryCounterStore(clock=Clock())
    held = holds(BUDGET)
    store.fail_next("settle", StoreUnavailableError("first"))
    store.fail_next("settle", StoreUnavailableError("second"))

    assert store.reserve(reservation("r1", held)) == []
    with pytest.raises(StoreUnavailableError, match="first"):
        store.settle(settlement("r1", held, 4))
    with pytest.raises(StoreUnavailableError, match="second"):
        store.settle(settlement("r1", held, 4))
    assert store.settle(settlement("r1", held, 4)) is True


READS: dict[StoreOperation, Callable[[MemoryCounterStore], object]] = {
    "counters": lambda store: store.counters([("RULE#budget#*", "2026-11")]),
    "expired": lambda store: store.expired(NOW, 10),
}


@pytest.mark.parametrize("operation", READS)
def test_reads_fail_when_asked_to(operation: StoreOperation) -> None:
    store = MemoryCounterStore(clock=Clock())
    store.fail_next(operation, StoreUnavailableError("down"))

    with pytest.raises(StoreUnavailableError):
        READS[operation](store)


def test_an_exact_repeat_of_a_settled_reservation_is_refused_once_its_client_token_is_forgotten() -> None:
    """DynamoDB remembers a client token ten minutes after the request that used it completed."""
    clock = Clock()
    store = MemoryCounterStore(clock=clock)
    held = holds(BUDGET, RPM)
    store.reserve(reservation("r1", held))
    store.settle(settlement("r1", held, 4))

    clock.now += CLIENT_TOKEN_WINDOW - timedelta(seconds=1)
    assert store.reserve(reservation("r1", held)) == []  # still answered as the first time
    clock.now += timedelta(seconds=1)
    with pytest.raises(StoreUnavailableError, match="already reserved"):
        store.reserve(reservation("r1", held))

    assert committed(store, held) == [4, 1]
