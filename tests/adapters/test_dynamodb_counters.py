"""What only the DynamoDB counter store does: errors from the wire, and transaction conflicts
retried. Its semantics, shared with the in-memory store, are in test_counter_store_contract.py."""

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from paymaster import schema
from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.domain.chat import Usage
from paymaster.domain.errors import StoreUnavailableError
from paymaster.ports import Asked, CallRecord
from paymaster_local.resources import COUNTERS_TABLE
from tests.dynamodb_answers import conflicting
from tests.reservations import BUDGET, NOW, holds, reservation, settlement


def test_unreachable_store_is_reported_as_unavailable(wire_to: Callable[[str], DynamoDBWire]) -> None:
    store = DynamoDBCounterStore(wire_to("http://127.0.0.1:9"), "counters")

    with pytest.raises(StoreUnavailableError, match="unreachable"):
        store.reserve(reservation("r1", holds(BUDGET)))


def test_a_missing_table_is_reported_as_unavailable(dynamodb: DynamoDBWire) -> None:
    store = DynamoDBCounterStore(dynamodb, "no-such-table")

    with pytest.raises(StoreUnavailableError, match="ResourceNotFoundException"):
        store.reserve(reservation("r1", holds(BUDGET)))


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


def reservation_item(client: Any, request_id: str) -> dict[str, Any]:
    key = {
        schema.PARTITION_KEY: {"S": schema.reservation_pk(request_id)},
        schema.SORT_KEY: {"S": schema.RESERVATION_SORT_KEY},
    }
    item: dict[str, Any] = client.get_item(TableName=COUNTERS_TABLE, Key=key, ConsistentRead=True)["Item"]
    return item


def test_the_reservation_item_records_who_asked_and_how_the_call_was_served(
    store: DynamoDBCounterStore, counters_table: tuple[Any, dict[str, Any]]
) -> None:
    """What the ledger's stream consumer reads: written by the admission and the settlement
    themselves, so the ledger adds no request to the hot path."""
    client, _ = counters_table
    held = holds(BUDGET)
    asked = Asked(NOW, "arn:aws:sts::111111111111:assumed-role/ranker/i-1", "prod", "u-7", (("tenant", "acme"),), 90)
    call = CallRecord("openai/gpt-4o-mini", ("bedrock/nova-lite", "openai/gpt-4o-mini"), "chatcmpl-1", 812, 240)
    store.reserve(replace(reservation("r1", held), asked=asked))
    store.settle(replace(settlement("r1", held, 7), usage=Usage(21, 4, 3, 0), billed_on="provider_usage", call=call))

    item = reservation_item(client, "r1")

    assert item[schema.STATE] == {"S": "settled"}
    assert item[schema.ADMITTED_AT] == {"N": str(int(NOW.timestamp() * 1000))}
    assert item[schema.PRINCIPAL] == {"S": asked.principal_arn}
    assert (item[schema.ENV], item[schema.USER]) == ({"S": "prod"}, {"S": "u-7"})
    assert item[schema.METADATA] == {"M": {"tenant": {"S": "acme"}}}
    assert item[schema.RESERVED] == {"N": "90"}
    assert item[schema.COST] == {"N": "7"}
    assert item[schema.BILLED_ON] == {"S": "provider_usage"}
    assert item[schema.DEPLOYMENT] == {"S": "openai/gpt-4o-mini"}
    assert item[schema.TRIED] == {"L": [{"S": "bedrock/nova-lite"}, {"S": "openai/gpt-4o-mini"}]}
    assert item[schema.PROVIDER_REQUEST_ID] == {"S": "chatcmpl-1"}
    assert (item[schema.LATENCY_MS], item[schema.FIRST_TOKEN_MS]) == ({"N": "812"}, {"N": "240"})
    assert item[schema.USAGE]["M"][schema.USAGE_CACHE_READ] == {"N": "3"}
    assert schema.HELD_SHARD not in item  # off the sweeper's index once settled


def test_a_charge_without_the_provider_s_usage_records_the_tokens_charged_beside_no_usage(
    store: DynamoDBCounterStore, counters_table: tuple[Any, dict[str, Any]]
) -> None:
    client, _ = counters_table
    held = holds(BUDGET)
    store.reserve(reservation("r1", held))
    cut = replace(settlement("r1", held, 7), outcome="charged_delivered", billed_on="delivered_text")
    store.settle(replace(cut, usage=None, charged=Usage(21, 9)))

    item = reservation_item(client, "r1")

    assert schema.USAGE not in item
    assert item[schema.CHARGED_USAGE]["M"][schema.USAGE_INPUT] == {"N": "21"}
    assert item[schema.CHARGED_USAGE]["M"][schema.USAGE_OUTPUT] == {"N": "9"}


def test_what_the_caller_controls_is_capped_in_the_reservation_item(
    store: DynamoDBCounterStore, counters_table: tuple[Any, dict[str, Any]]
) -> None:
    client, _ = counters_table
    labels = tuple((f"key-{index}", "v" * 500) for index in range(10))
    asked = Asked(NOW, "arn:aws:iam::111111111111:role/ranker", "prod", "u" * 500, labels, 90)
    store.reserve(replace(reservation("r1", holds(BUDGET)), asked=asked))

    item = reservation_item(client, "r1")

    assert len(item[schema.USER]["S"]) == schema.MAX_LABEL_CHARS
    assert sorted(item[schema.METADATA]["M"]) == [f"key-{index}" for index in range(schema.MAX_METADATA_KEYS)]
    assert {len(value["S"]) for value in item[schema.METADATA]["M"].values()} == {schema.MAX_LABEL_CHARS}
