"""The counter store's contract, held by both stores: DynamoDBCounterStore on the serialised
stand-in (moto, as DynamoDB applies writes per item) and MemoryCounterStore, which the use-case
tests (`tests/services`) run on. What is pinned here, the in-memory store may be trusted with;
what only DynamoDB's wire does (retried conflicts, lost answers, request shapes) is tested in
`test_dynamodb_counters.py` and `test_unknown_outcomes.py`.
"""

import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from itertools import count

import httpx
import pytest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.adapters.memory import MemoryCounterStore
from paymaster.domain.errors import StoreUnavailableError
from paymaster.domain.limits import Hold
from paymaster.domain.policy import Rule
from paymaster.domain.windows import window
from paymaster.ports import Asked, CounterChange, CounterState, CounterStore, Reservation, Settlement
from paymaster_local.resources import COUNTERS_TABLE
from tests.reservations import BUDGET, NOW, RPM, holds, release, reservation, settlement


@pytest.fixture(params=["memory", "dynamodb"])
def store(request: pytest.FixtureRequest) -> CounterStore:
    if request.param == "memory":
        return MemoryCounterStore(clock=lambda: NOW)
    request.getfixturevalue("dynamodb")  # a fresh counters table
    # The wire as the gateway builds it: a connection the server drops is sent again (a
    # reservation with its ClientRequestToken, a settlement under `state = held`), so what is
    # checked here is the store's semantics, retries included — not one socket's luck under
    # 32 threads (a reset kept-alive connection failed a run in about four before).
    wire = DynamoDBWire(
        httpx.HTTPTransport(),
        endpoint_url=request.getfixturevalue("aws_url"),
        timeout=httpx.Timeout(5.0, connect=1.0),
        region="us-east-1",
        credentials=Credentials("local", "local"),
    )
    return DynamoDBCounterStore(wire, COUNTERS_TABLE)


def state_of(store: CounterStore, hold: Hold) -> tuple[int, int]:
    found = store.counters([(hold.pk, hold.sk)])[(hold.pk, hold.sk)]
    return found.committed, found.spent


def still_held(store: CounterStore) -> list[str]:
    return [entry.request_id for entry in store.expired(NOW + timedelta(days=1), 1_000)]


# Reserving: all or nothing, under each counter's cap.


def test_reserve_holds_every_counter_and_settle_replaces_the_hold(store: CounterStore) -> None:
    held = holds(BUDGET, RPM)

    assert store.reserve(reservation("r1", held)) == []
    before = store.counters([(hold.pk, hold.sk) for hold in held])
    assert [(state.committed, state.spent) for state in before.values()] == [(10, 0), (1, 0)]

    assert store.settle(settlement("r1", held, 7)) is True
    after = store.counters([(hold.pk, hold.sk) for hold in held])
    assert [(state.committed, state.spent) for state in after.values()] == [(7, 7), (1, 1)]


def test_refusal_is_all_or_nothing_and_reports_the_counter_value(store: CounterStore) -> None:
    budget, rpm = holds(BUDGET, RPM, output_tokens=60)
    assert store.reserve(reservation("r1", (budget, rpm))) == []

    refusals = store.reserve(reservation("r2", (budget, rpm)))

    assert [(refusal.rule.name, refusal.used) for refusal in refusals] == [("budget", 60)]
    assert state_of(store, rpm) == (1, 0)  # r2 added nothing anywhere
    assert still_held(store) == ["r1"]  # and left no reservation


def test_every_refusing_counter_is_reported_with_its_own_value(store: CounterStore) -> None:
    budget, rpm = holds(BUDGET, RPM | {"limit": 1}, output_tokens=60)
    store.reserve(reservation("r1", (budget, rpm)))

    refusals = store.reserve(reservation("r2", (budget, rpm)))

    assert [(refusal.hold, refusal.used) for refusal in refusals] == [(budget, 60), (rpm, 1)]


def test_a_counter_takes_holds_up_to_its_cap_exactly_and_not_one_unit_more(store: CounterStore) -> None:
    (sixty,), (forty,), (one,) = (
        holds(BUDGET, output_tokens=60),
        holds(BUDGET, output_tokens=40),
        holds(BUDGET, output_tokens=1),
    )

    assert store.reserve(reservation("r1", (sixty,))) == []
    assert store.reserve(reservation("r2", (forty,))) == []  # 60 + 40 = the 100 µUSD cap
    refusals = store.reserve(reservation("r3", (one,)))

    assert [refusal.used for refusal in refusals] == [100]
    assert state_of(store, one) == (100, 0)


def test_a_first_use_of_a_window_may_take_the_whole_cap(store: CounterStore) -> None:
    (whole,) = holds(BUDGET, output_tokens=100)

    assert store.reserve(reservation("r1", (whole,))) == []

    assert state_of(store, whole) == (100, 0)


@pytest.mark.parametrize("window_before", ["never used", "used and released"])
def test_an_amount_larger_than_the_cap_never_fits_even_on_first_use(store: CounterStore, window_before: str) -> None:
    (budget,) = holds(BUDGET, output_tokens=101)
    if window_before == "used and released":
        (small,) = holds(BUDGET)
        store.reserve(reservation("r0", (small,)))
        store.settle(release("r0", (small,)))

    refusals = store.reserve(reservation("r1", (budget,)))

    assert [(refusal.rule.name, refusal.used) for refusal in refusals] == [("budget", 0)]
    assert state_of(store, budget)[0] == 0


def test_a_hold_without_a_cap_is_counted_past_the_limit(store: CounterStore) -> None:
    """A shadow rule that would refuse is counted unchecked (`cap` None); enforced ones see it."""
    (capped,) = holds(BUDGET, output_tokens=150)
    unchecked = replace(capped, cap=None)

    assert store.reserve(reservation("shadow", (unchecked,))) == []
    refusals = store.reserve(reservation("r1", holds(BUDGET, output_tokens=1)))

    assert state_of(store, capped) == (150, 0)
    assert [refusal.used for refusal in refusals] == [150]


# The same request id again: a repeat finds its own reservation; anything else is refused.


def test_a_repeated_reservation_is_admitted_and_holds_once(store: CounterStore) -> None:
    held = holds(BUDGET, RPM)

    assert store.reserve(reservation("r1", held)) == []
    assert store.reserve(reservation("r1", held)) == []

    assert [state_of(store, hold) for hold in held] == [(10, 0), (1, 0)]
    assert still_held(store) == ["r1"]


def test_a_repeat_with_the_same_holds_and_another_expiry_finds_its_own_reservation_and_holds_once(
    store: CounterStore,
) -> None:
    """DynamoDB's client token (request id, holds, expiry) does not cover this repeat; the
    reservation it finds, held with the same holds, does."""
    held = holds(BUDGET, RPM)
    store.reserve(reservation("r1", held))

    assert store.reserve(reservation("r1", held, until=NOW + timedelta(minutes=21))) == []

    assert [state_of(store, hold) for hold in held] == [(10, 0), (1, 0)]


def test_an_exact_repeat_of_a_reservation_already_settled_is_answered_admitted_and_holds_nothing(
    store: CounterStore,
) -> None:
    """Within ten minutes of the first, DynamoDB answers a repeat of a committed transaction (the
    same client token and request) as it answered the first, applying nothing."""
    held = holds(BUDGET)
    store.reserve(reservation("r1", held))
    store.settle(settlement("r1", held, 4))

    assert store.reserve(reservation("r1", held)) == []

    assert state_of(store, held[0]) == (4, 4)
    assert still_held(store) == []


def test_a_repeat_of_a_settled_reservation_that_its_token_does_not_cover_is_refused(store: CounterStore) -> None:
    held = holds(BUDGET)
    store.reserve(reservation("r1", held))
    store.settle(settlement("r1", held, 4))

    with pytest.raises(StoreUnavailableError, match="already reserved"):
        store.reserve(reservation("r1", held, until=NOW + timedelta(minutes=21)))

    assert state_of(store, held[0]) == (4, 4)


def test_another_reservation_under_a_request_id_already_held_is_not_admitted(store: CounterStore) -> None:
    store.reserve(reservation("r1", holds(BUDGET)))
    budget, rpm = holds(BUDGET, RPM)

    with pytest.raises(StoreUnavailableError, match="already reserved"):
        store.reserve(reservation("r1", (budget, rpm)))

    assert [state_of(store, budget), state_of(store, rpm)] == [(10, 0), (0, 0)]


@pytest.mark.parametrize("how", ["one counter twice", "101 items"])
def test_a_transaction_dynamodb_refuses_outright_is_refused_and_changes_nothing(store: CounterStore, how: str) -> None:
    """DynamoDB answers a ValidationException (a ClientError); the in-memory store a ValueError.
    Either is a bug to fix, not a store outage for `on_store_error` to decide."""
    (budget,) = holds(BUDGET)
    many = (
        (budget, budget) if how == "one counter twice" else tuple(replace(budget, bucket=f"b{i}") for i in range(100))
    )

    with pytest.raises((ClientError, ValueError)):
        store.reserve(reservation("r1", many))

    assert state_of(store, budget) == (0, 0)
    assert still_held(store) == []


# Settling: once per request id, while held; a fence where nothing was held.


def test_settling_twice_counts_once(store: CounterStore) -> None:
    held = holds(BUDGET)
    store.reserve(reservation("r1", held))

    assert store.settle(settlement("r1", held, 4)) is True
    assert store.settle(settlement("r1", held, 4)) is False

    assert state_of(store, held[0]) == (4, 4)


def test_settling_a_request_never_reserved_counts_nothing_and_leaves_its_id_free(store: CounterStore) -> None:
    held = holds(BUDGET)

    assert store.settle(settlement("r1", held, 4)) is False

    assert state_of(store, held[0]) == (0, 0)
    assert store.reserve(reservation("r1", held)) == []
    assert state_of(store, held[0]) == (10, 0)


def test_a_fence_where_nothing_was_reserved_makes_a_late_admission_fail_and_hold_nothing(store: CounterStore) -> None:
    held = holds(BUDGET, RPM)

    assert store.settle(release("r1", held, fence=True)) is False

    with pytest.raises(StoreUnavailableError, match="already reserved"):
        store.reserve(reservation("r1", held))
    assert [state_of(store, hold) for hold in held] == [(0, 0), (0, 0)]
    assert still_held(store) == []


def test_a_fencing_release_of_a_held_reservation_returns_its_holds(store: CounterStore) -> None:
    held = holds(BUDGET, RPM)
    store.reserve(reservation("r1", held))

    assert store.settle(release("r1", held, fence=True)) is True

    assert [state_of(store, hold) for hold in held] == [(0, 0), (0, 0)]
    assert store.settle(release("r1", held, fence=True)) is False


def test_a_fencing_release_after_the_settlement_changes_nothing(store: CounterStore) -> None:
    held = holds(BUDGET)
    store.reserve(reservation("r1", held))
    store.settle(settlement("r1", held, 4))

    assert store.settle(release("r1", held, fence=True)) is False

    assert state_of(store, held[0]) == (4, 4)


# A request no rule matches: a reservation that holds nothing, so that its settlement is on record.


def test_a_reservation_holding_nothing_is_admitted_and_settled_once(store: CounterStore) -> None:
    assert store.reserve(reservation("unruled", ())) == []
    assert store.reserve(reservation("unruled", ())) == []  # a repeat finds its own

    assert [store.settle(settlement("unruled", (), 4)), store.settle(settlement("unruled", (), 4))] == [True, False]
    assert still_held(store) == []


def test_a_reservation_holding_nothing_that_a_crash_left_is_listed_and_charged_its_reservation(
    store: CounterStore,
) -> None:
    asked = Asked(NOW, "arn:aws:iam::111111111111:role/ranker", "prod", reserved=42)
    store.reserve(replace(reservation("crashed", ()), asked=asked))

    (entry,) = store.expired(NOW + timedelta(hours=1), 10)
    swept = Settlement(entry.request_id, entry.charged_in_full(), "expired", entry.reserved, None)

    assert (entry.held, entry.reserved) == ((), 42)
    assert [store.settle(swept), store.settle(swept)] == [True, False]
    assert still_held(store) == []


def test_a_fence_where_nothing_was_reserved_stops_a_late_reservation_holding_nothing(store: CounterStore) -> None:
    assert store.settle(release("unruled", (), fence=True)) is False

    with pytest.raises(StoreUnavailableError, match="already reserved"):
        store.reserve(reservation("unruled", ()))
    assert still_held(store) == []


# Reservations a crash left behind, for the sweeper.


def test_expired_lists_only_held_reservations_past_their_expiry(store: CounterStore) -> None:
    held = holds(BUDGET)
    asked = Asked(NOW, "arn:aws:iam::111111111111:role/ranker", "prod", reserved=42)
    store.reserve(replace(reservation("old", held, until=NOW + timedelta(minutes=1)), asked=asked))
    store.reserve(reservation("settled", held, until=NOW + timedelta(minutes=1)))
    store.settle(settlement("settled", held, 1))
    store.reserve(reservation("young", held, until=NOW + timedelta(minutes=30)))

    expired = store.expired(NOW + timedelta(minutes=5), 10)

    assert [(entry.request_id, entry.held, entry.reserved) for entry in expired] == [
        ("old", ((held[0].pk, held[0].sk, 10),), 42)
    ]


def test_expired_lists_the_oldest_first_and_at_most_the_limit(store: CounterStore) -> None:
    held = holds(BUDGET)
    for request_id, minutes in [("third", 3), ("first", 1), ("second", 2)]:
        store.reserve(reservation(request_id, held, until=NOW + timedelta(minutes=minutes)))

    expired = store.expired(NOW + timedelta(minutes=10), 2)

    assert [entry.request_id for entry in expired] == ["first", "second"]


def test_a_reservation_expires_only_once_its_expiry_second_has_passed(store: CounterStore) -> None:
    until = NOW + timedelta(minutes=1)
    store.reserve(reservation("r1", holds(BUDGET), until=until))

    assert store.expired(until, 10) == []
    assert [entry.request_id for entry in store.expired(until + timedelta(seconds=1), 10)] == ["r1"]


def test_an_expired_reservation_is_charged_in_full_by_settling_what_expired_lists_once(store: CounterStore) -> None:
    held = holds(BUDGET, RPM)
    store.reserve(reservation("crashed", held))
    (entry,) = store.expired(NOW + timedelta(hours=1), 10)
    swept = Settlement(entry.request_id, entry.charged_in_full(), "expired", 0, None, ("expired_unsettled",))

    assert [store.settle(swept), store.settle(swept)] == [True, False]

    assert [state_of(store, hold) for hold in held] == [(10, 10), (1, 1)]  # spent what was held
    assert still_held(store) == []


# Reading counters.


def test_counters_answers_every_key_once_with_zero_for_a_counter_never_used(store: CounterStore) -> None:
    budget, rpm = holds(BUDGET, RPM)
    store.reserve(reservation("r1", (budget,)))
    keys = [(budget.pk, budget.sk), (rpm.pk, rpm.sk), (budget.pk, budget.sk)]

    assert store.counters(keys) == {(budget.pk, budget.sk): CounterState(10, 0), (rpm.pk, rpm.sk): CounterState(0, 0)}
    assert store.counters([]) == {}


def test_counters_answers_for_more_keys_than_dynamodb_reads_in_one_request(store: CounterStore) -> None:
    """BatchGetItem takes at most 100 keys; /v1/usage asks for one per rule and model bucket."""
    (budget,) = holds(BUDGET)
    buckets = [replace(budget, bucket=f"model={i}") for i in range(150)]
    store.reserve(reservation("r1", (buckets[0],)))
    store.reserve(reservation("r2", (buckets[149],)))

    found = store.counters([(hold.pk, hold.sk) for hold in buckets])

    assert len(found) == 150
    assert [found[(hold.pk, hold.sk)].committed for hold in buckets] == [10] + [0] * 148 + [10]


# Many threads, one budget: what DynamoDB's per-item atomicity promises.


@pytest.fixture
def threads_switch_often() -> Iterator[None]:
    """Threads switch every microsecond instead of every 5 ms, so that a store whose calls are
    not atomic is caught between its check and its write: a lock-less MemoryCounterStore fails
    one of these tests in most runs this way, and hardly ever at the default interval."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("threads_switch_often")
def test_exactly_as_many_holds_as_fit_succeed_under_32_threads(store: CounterStore) -> None:
    held = holds({"name": "budget", "limit": "0.000379", "unit": "cost_per_month"})  # 37 × 10 + 9

    with ThreadPoolExecutor(32) as pool:
        outcomes = list(pool.map(lambda i: store.reserve(reservation(f"r{i}", held)), range(200)))

    assert sum(1 for refusals in outcomes if not refusals) == 37
    assert state_of(store, held[0]) == (370, 0)


def races(store: CounterStore, times: int) -> int:
    """How many times to race: ten times as often in memory, where it costs next to nothing and
    the lock is all that makes a call atomic."""
    return times * 10 if isinstance(store, MemoryCounterStore) else times


@pytest.mark.usefixtures("threads_switch_often")
def test_threads_reserving_and_settling_one_budget_never_spend_past_it_and_leave_nothing_held(
    store: CounterStore,
) -> None:
    requests = races(store, 240)
    cap = requests * 2  # µUSD: a sixteenth of what the requests would hold together
    rule = {"name": "budget", "limit": str(Decimal(cap) / 1_000_000), "unit": "cost_per_month"}
    sizes = [holds(rule, output_tokens=tokens) for tokens in (10, 25, 40, 55)]

    def one_request(i: int) -> int | None:
        """Reserves; then settles at some actual up to the hold (0: released). None if refused."""
        held = sizes[i % len(sizes)]
        if store.reserve(reservation(f"r{i}", held)):
            return None
        actual = (i * 7_919) % (held[0].amount + 1)
        assert store.settle(settlement(f"r{i}", held, actual)) is True
        return actual

    with ThreadPoolExecutor(32) as pool:
        outcomes = list(pool.map(one_request, range(requests)))

    charged = [actual for actual in outcomes if actual is not None]
    assert len(charged) < len(outcomes)  # the budget was contested
    assert state_of(store, sizes[0][0]) == (sum(charged), sum(charged))
    assert sum(charged) <= cap
    assert still_held(store) == []


@pytest.mark.usefixtures("threads_switch_often")
def test_concurrent_settlements_of_one_request_count_once(store: CounterStore) -> None:
    held = holds(BUDGET, RPM)
    store.reserve(reservation("r1", held))

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(lambda _: store.settle(settlement("r1", held, 4)), range(16)))

    assert outcomes.count(True) == 1
    assert [state_of(store, hold) for hold in held] == [(4, 4), (1, 1)]


@pytest.mark.usefixtures("threads_switch_often")
def test_a_fence_racing_its_admission_leaves_nothing_held(store: CounterStore) -> None:
    """Whichever lands first, the admission and its fencing release end with nothing held: the
    admission holds and the release returns it, or the fence is placed and the admission fails."""
    held = holds({"name": "budget", "limit": "0.001000", "unit": "cost_per_month"})

    def race(request_id: str) -> tuple[bool, bool]:
        start = threading.Barrier(2)

        def admit() -> bool:
            start.wait()
            try:
                return store.reserve(reservation(request_id, held)) == []
            except StoreUnavailableError:
                return False

        def fence() -> bool:
            start.wait()
            return store.settle(release(request_id, held, fence=True))

        with ThreadPoolExecutor(2) as pool:
            admitted, released = pool.submit(admit), pool.submit(fence)
            return admitted.result(), released.result()

    outcomes = [race(f"r{i}") for i in range(races(store, 20))]

    assert set(outcomes) <= {(True, True), (False, False)}
    assert state_of(store, held[0]) == (0, 0)
    assert still_held(store) == []


# No overspend and no phantom blocks, for any interleaving Hypothesis finds.
#
#     reserve(a)   admitted  ⇔  committed + a ≤ cap        committed += a
#     settle(x)    once per request                        committed += x − a, spent += x
#     release      once per request                        committed −= a
#
# A plain model of the counter runs alongside. The store lives across examples, so each example
# uses its own rule name and request ids and never shares a counter.

EXAMPLES = count()


def budget_hold(name: str, cap: int, amount: int) -> Hold:
    rule = Rule(name=name, limit=Decimal(cap) / 1_000_000, unit="cost_per_month")
    assert rule.cap == cap
    return Hold(rule, "*", window(rule.period, rule.zone, NOW), amount, rule.cap)


def close(request_id: str, hold: Hold, actual: int | None) -> Settlement:
    """Settle at `actual` µUSD, or release (None): the counter gives back what was not used."""
    used = actual or 0
    change = CounterChange(hold.pk, hold.sk, delta=used - hold.amount, spent=used)
    return Settlement(request_id, (change,), "released" if actual is None else "settled", used, None)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cap=st.integers(min_value=1, max_value=1_000), data=st.data())
def test_spend_never_passes_the_cap_and_nothing_stays_held_for_any_interleaving(
    store: CounterStore, cap: int, data: st.DataObject
) -> None:
    example = next(EXAMPLES)
    name = f"spend-{example}"
    probe = budget_hold(name, cap, 0)
    key = (probe.pk, probe.sk)
    committed = spent = 0  # the model of the counter
    held: dict[str, Hold] = {}  # admitted and not yet closed
    closed: list[tuple[str, Hold]] = []
    admitted_actuals: list[int] = []

    def counter() -> CounterState:
        return store.counters([key])[key]

    for step in range(data.draw(st.integers(min_value=1, max_value=16), label="steps")):
        operations = ["reserve"] + (["settle", "release"] if held else []) + (["retry"] if closed else [])
        operation = data.draw(st.sampled_from(operations), label=f"step {step}")

        if operation == "reserve":
            request_id = f"{name}-r{step}"
            hold = budget_hold(name, cap, data.draw(st.integers(min_value=0, max_value=cap + cap // 2 + 1)))
            refusals = store.reserve(Reservation(request_id, (hold,), NOW + timedelta(minutes=20), "t", "a", "m"))
            fits = committed + hold.amount <= cap
            assert (not refusals) == fits, f"committed {committed} + {hold.amount} vs cap {cap}"
            if fits:
                committed += hold.amount
                held[request_id] = hold
            else:
                assert [refusal.used for refusal in refusals] == [committed]
        elif operation in ("settle", "release"):
            request_id = data.draw(st.sampled_from(sorted(held)))
            hold = held.pop(request_id)
            actual = data.draw(st.integers(min_value=0, max_value=hold.amount)) if operation == "settle" else None
            assert store.settle(close(request_id, hold, actual)) is True
            committed += (actual or 0) - hold.amount
            spent += actual or 0
            admitted_actuals.append(actual or 0)
            closed.append((request_id, hold))
        else:
            request_id, hold = data.draw(st.sampled_from(closed))
            assert store.settle(close(request_id, hold, hold.amount)) is False  # a retry counts nothing

        assert counter() == CounterState(committed, spent)
        assert committed <= cap

    for request_id, hold in list(held.items()):
        actual = data.draw(st.none() | st.integers(min_value=0, max_value=hold.amount), label=f"close {request_id}")
        assert store.settle(close(request_id, hold, actual)) is True
        admitted_actuals.append(actual or 0)

    final = counter()
    assert final.committed == final.spent == sum(admitted_actuals)
    assert final.committed <= cap
    assert [request_id for request_id in still_held(store) if request_id.startswith(f"{name}-")] == []
