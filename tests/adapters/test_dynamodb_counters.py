"""The counter store against DynamoDB (moto, serialised as DynamoDB applies writes per item)."""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from botocore.credentials import Credentials

from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.domain.errors import StoreUnavailableError
from paymaster.domain.limits import Hold, RequestFacts, plan_holds
from paymaster.ports import CounterChange, Reservation, Settlement
from tests.policies import policy_with

NOW = datetime(2026, 11, 29, 18, 25, tzinfo=UTC)
FACTS = RequestFacts(team="search", app="ranker", env="prod", model="fixed-cost")


def holds(*rules: dict[str, Any], output_tokens: int = 10) -> tuple[Hold, ...]:
    policy = policy_with(list(rules))
    return tuple(
        plan_holds(
            policy.rules,
            FACTS,
            policy.models["fixed-cost"],
            input_tokens=0,
            output_tokens=output_tokens,
            now=NOW,
            check_downgrades=False,
        )
    )


def reservation(
    request_id: str, held: tuple[Hold, ...], *, until: datetime = NOW + timedelta(minutes=20)
) -> Reservation:
    return Reservation(request_id, held, until, "search", "ranker", "fixed-cost")


def settlement(request_id: str, held: tuple[Hold, ...], cost: int) -> Settlement:
    """The request cost `cost` µUSD; a requests counter's actual is always 1."""
    actual = {hold.rule.name: 1 if hold.rule.measure == "requests" else cost for hold in held}
    changes = tuple(
        CounterChange(hold.pk, hold.sk, actual[hold.rule.name] - hold.amount, actual[hold.rule.name]) for hold in held
    )
    return Settlement(request_id, changes, "settled", cost, None)


BUDGET = {"name": "budget", "limit": "0.000100", "unit": "cost_per_month"}  # 100 µUSD
RPM = {"name": "rpm", "limit": 5, "unit": "requests_per_minute"}


def test_reserve_holds_every_counter_and_settle_replaces_the_hold(store: DynamoDBCounterStore) -> None:
    held = holds(BUDGET, RPM)

    assert store.reserve(reservation("r1", held)) == []
    before = store.counters([(hold.pk, hold.sk) for hold in held])
    assert [(state.committed, state.spent) for state in before.values()] == [(10, 0), (1, 0)]

    assert store.settle(settlement("r1", held, 7)) is True
    after = store.counters([(hold.pk, hold.sk) for hold in held])
    assert [(state.committed, state.spent) for state in after.values()] == [(7, 7), (1, 1)]


def test_settling_twice_counts_once(store: DynamoDBCounterStore) -> None:
    held = holds(BUDGET)
    store.reserve(reservation("r1", held))

    assert store.settle(settlement("r1", held, 4)) is True
    assert store.settle(settlement("r1", held, 4)) is False

    state = store.counters([(held[0].pk, held[0].sk)])[(held[0].pk, held[0].sk)]
    assert (state.committed, state.spent) == (4, 4)


def test_refusal_is_all_or_nothing_and_reports_the_counter_value(store: DynamoDBCounterStore) -> None:
    budget, rpm = holds(BUDGET, RPM, output_tokens=60)
    assert store.reserve(reservation("r1", (budget, rpm))) == []

    refusals = store.reserve(reservation("r2", (budget, rpm)))

    assert [(refusal.rule.name, refusal.used) for refusal in refusals] == [("budget", 60)]
    rpm_state = store.counters([(rpm.pk, rpm.sk)])[(rpm.pk, rpm.sk)]
    assert rpm_state.committed == 1  # r2 added nothing anywhere
    assert store.expired(NOW + timedelta(hours=1), 10)[0].request_id == "r1"  # and left no reservation


def test_an_amount_larger_than_the_cap_never_fits_even_on_first_use(store: DynamoDBCounterStore) -> None:
    (budget,) = holds(BUDGET, output_tokens=101)

    refusals = store.reserve(reservation("r1", (budget,)))

    assert [(refusal.rule.name, refusal.used) for refusal in refusals] == [("budget", 0)]


def test_expired_lists_only_held_reservations_past_their_expiry(store: DynamoDBCounterStore) -> None:
    held = holds(BUDGET)
    store.reserve(reservation("old", held, until=NOW + timedelta(minutes=1)))
    store.reserve(reservation("settled", held, until=NOW + timedelta(minutes=1)))
    store.settle(settlement("settled", held, 1))
    store.reserve(reservation("young", held, until=NOW + timedelta(minutes=30)))

    expired = store.expired(NOW + timedelta(minutes=5), 10)

    assert [(entry.request_id, entry.changes[0].delta) for entry in expired] == [("old", -10)]


def test_exactly_as_many_holds_as_fit_succeed_under_32_threads(store: DynamoDBCounterStore) -> None:
    held = holds({"name": "budget", "limit": "0.000379", "unit": "cost_per_month"})  # 37 × 10 + 9

    with ThreadPoolExecutor(32) as pool:
        outcomes = list(pool.map(lambda i: store.reserve(reservation(f"r{i}", held)), range(200)))

    assert sum(1 for refusals in outcomes if not refusals) == 37
    state = store.counters([(held[0].pk, held[0].sk)])[(held[0].pk, held[0].sk)]
    assert state.committed == 370


def test_unreachable_store_is_reported_as_unavailable(wire_to: Callable[[str], DynamoDBWire]) -> None:
    store = DynamoDBCounterStore(wire_to("http://127.0.0.1:9"), "counters")

    with pytest.raises(StoreUnavailableError, match="unreachable"):
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
