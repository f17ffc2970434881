"""What only the DynamoDB counter store does: errors from the wire, and transaction conflicts
retried. Its semantics, shared with the in-memory store, are in test_counter_store_contract.py."""

from collections.abc import Callable

import httpx
import pytest
from botocore.credentials import Credentials

from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.domain.errors import StoreUnavailableError
from tests.reservations import BUDGET, holds, reservation


def test_unreachable_store_is_reported_as_unavailable(wire_to: Callable[[str], DynamoDBWire]) -> None:
    store = DynamoDBCounterStore(wire_to("http://127.0.0.1:9"), "counters")

    with pytest.raises(StoreUnavailableError, match="unreachable"):
        store.reserve(reservation("r1", holds(BUDGET)))


def test_a_missing_table_is_reported_as_unavailable(dynamodb: DynamoDBWire) -> None:
    store = DynamoDBCounterStore(dynamodb, "no-such-table")

    with pytest.raises(StoreUnavailableError, match="ResourceNotFoundException"):
        store.reserve(reservation("r1", holds(BUDGET)))


def conflicting(times: int) -> tuple[DynamoDBWire, list[int]]:
    """A DynamoDB that cancels the first `times` transactions with TransactionConflict."""
    attempts: list[int] = []
    cancelled = {
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "message": "Transaction cancelled, please refer cancellation reasons for specific reasons",
        "CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}],
    }

    def answer(_: httpx.Request) -> httpx.Response:
        attempts.append(1)
        return httpx.Response(400, json=cancelled) if len(attempts) <= times else httpx.Response(200, json={})

    client = DynamoDBWire(
        httpx.MockTransport(answer),
        endpoint_url="https://dynamodb.us-east-1.amazonaws.com",
        region="us-east-1",
        credentials=Credentials("a", "b"),
    )
    return client, attempts


def test_transaction_conflicts_are_retried_until_the_transaction_goes_through() -> None:
    client, attempts = conflicting(times=3)
    store = DynamoDBCounterStore(client, "counters", sleep=lambda _: None)

    assert store.reserve(reservation("r1", holds(BUDGET))) == []
    assert len(attempts) == 4


def test_persistent_conflicts_become_store_unavailable_for_on_store_error_to_decide() -> None:
    client, attempts = conflicting(times=100)
    waits: list[float] = []
    store = DynamoDBCounterStore(client, "counters", sleep=waits.append, jitter=lambda: 0.5)

    with pytest.raises(StoreUnavailableError, match="TransactionConflict"):
        store.reserve(reservation("r1", holds(BUDGET)))
    assert len(attempts) == 5
    assert waits == [0.005, 0.01, 0.02, 0.04]  # jittered exponential backoff (jitter fixed at ½)
