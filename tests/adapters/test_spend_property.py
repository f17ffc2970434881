"""No overspend and no phantom blocks, as a property of the real counter store (serialised moto).

Hypothesis drives one budget counter through any interleaving of reserve, settle (actual ≤ the
reservation), release and retried settle, and a plain model of the counter runs alongside:

    reserve(a)   admitted  ⇔  committed + a ≤ cap        committed += a
    settle(x)    once per request                        committed += x − a, spent += x
    release      once per request                        committed −= a

Each example uses its own rule name and request ids, so examples never share a counter.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.domain.limits import Hold
from paymaster.domain.policy import Rule
from paymaster.domain.windows import window
from paymaster.ports import CounterChange, CounterState, Reservation, Settlement

NOW = datetime(2026, 11, 29, 18, 25, tzinfo=UTC)
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
    store: DynamoDBCounterStore, cap: int, data: st.DataObject
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
    still_held = store.expired(NOW + timedelta(days=1), 1_000)
    assert [entry.request_id for entry in still_held if entry.request_id.startswith(f"{name}-")] == []
