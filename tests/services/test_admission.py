"""Admission and settlement on the in-memory counter store, with a controlled clock (no sleeping)."""

from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from paymaster.adapters.memory import MemoryCounterStore, MemorySettlementQueue
from paymaster.adapters.tokenizer import WarmingTokenCounter, count_tokens
from paymaster.domain.chat import ChatRequest, Completion, Finished, StreamEvent, TextDelta, Usage, UsageReported
from paymaster.domain.errors import (
    BudgetExhaustedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    StoreUnavailableError,
)
from paymaster.domain.identity import Caller
from paymaster.domain.limits import MIN_USEFUL_OUTPUT_TOKENS, RESERVATION_LIFETIME, Refusal
from paymaster.domain.metering import Delivered, NotAccepted, Reported, Unknown
from paymaster.domain.money import format_usd
from paymaster.domain.policy import Policy
from paymaster.ports import CounterState, CounterStore, HeldReservation, ProviderCall, Reservation, Settlement
from paymaster.services.admission import AdmissionService
from paymaster.services.chat import ChatService
from paymaster.services.routing import Router
from tests.policies import policy_with

SEARCH = Caller(team="search", app="ranker", env="prod", principal="search-ranker", arn="arn")
LONG_PROMPT = " ".join(["budget"] * 50)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def request(model: str = "fixed-cost", max_tokens: int | None = 10, **extra: Any) -> ChatRequest:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": LONG_PROMPT}], **extra}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return ChatRequest.model_validate(body)


def output_only_model(output_price: int) -> dict[str, Any]:
    """A model that charges only for output, at `output_price` µUSD per million tokens."""
    return {
        "deployments": [{"provider": "openai", "model": "cheap"}],
        "max_output_tokens": 1000,
        "context_window": 8000,
        "price": {"input": 0, "output": output_price, "source": "test", "as_of": "2026-11-29"},
    }


def service(policy: Policy, store: CounterStore, clock: Clock) -> AdmissionService:
    return AdmissionService(policy, store, count_tokens, clock, MemorySettlementQueue())


def committed_and_spent(admission_service: AdmissionService, caller: Caller = SEARCH) -> dict[str, tuple[str, str]]:
    return {rule.rule: (rule.used, rule.reserved) for rule in admission_service.usage(caller)}


def test_burst_gets_the_limit_then_the_next_window_refills(store: CounterStore) -> None:
    """Fixed windows: 60/min admits 60 of a burst of 200, and 60 more once the minute turns."""
    clock = Clock(datetime(2026, 11, 29, 18, 25, 30, tzinfo=UTC))
    admission = service(policy_with([{"name": "rpm", "limit": 60, "unit": "requests_per_minute"}]), store, clock)

    def burst(prefix: str) -> int:
        admitted, resets = 0, set()
        for i in range(200):
            try:
                admission.admit(SEARCH, request(), f"{prefix}{i}")
                admitted += 1
            except RateLimitedError as refused:
                resets.add(refused.refusal.hold.window.end)
        assert resets <= {clock.now.replace(second=0) + timedelta(minutes=1)}
        return admitted

    assert burst("a") == 60
    clock.now += timedelta(seconds=29)
    assert burst("b") == 0
    clock.now += timedelta(seconds=1)
    assert burst("c") == 60


def test_missing_max_tokens_shrinks_to_what_the_budget_affords(store: CounterStore) -> None:
    clock = Clock(datetime(2026, 11, 29, 18, 0, tzinfo=UTC))
    policy = policy_with([{"name": "budget", "limit": "0.001300", "unit": "cost_per_month"}])  # 1300 µUSD
    admission = service(policy, store, clock)
    spender = admission.admit(SEARCH, request(max_tokens=1000), "spender")  # holds 1000 µUSD
    admission.settle(spender, Reported(Usage(input_tokens=60, output_tokens=1000)))

    nearly_spent = admission.admit(SEARCH, request(max_tokens=None), "r1")

    assert nearly_spent.max_output_tokens == 300  # 1300 − 1000 µUSD at 1 µUSD per output token
    assert policy.models["fixed-cost"].max_output_tokens == 1000


def test_refused_when_the_budget_cannot_afford_a_useful_answer(store: CounterStore) -> None:
    clock = Clock(datetime(2026, 11, 29, 18, 0, tzinfo=UTC))
    admission = service(policy_with([{"name": "budget", "limit": "0.001200", "unit": "cost_per_month"}]), store, clock)
    spender = admission.admit(SEARCH, request(max_tokens=1000), "spender")
    admission.settle(spender, Reported(Usage(input_tokens=60, output_tokens=1000)))

    with pytest.raises(BudgetExhaustedError) as refused:
        admission.admit(SEARCH, request(max_tokens=None), "r1")  # 200 affordable < 256 useful
    small = admission.admit(SEARCH, request(max_tokens=150), "r2")  # asked for less: gets it

    assert MIN_USEFUL_OUTPUT_TOKENS == 256
    assert refused.value.refusal.remaining == 200
    assert small.max_output_tokens == 150


def test_month_boundary_follows_the_rule_s_time_zone(store: CounterStore) -> None:
    """America/Los_Angeles' December starts at 08:00 UTC on the 1st: not a moment earlier."""
    clock = Clock(datetime(2026, 12, 1, 7, 59, 59, tzinfo=UTC))
    policy = policy_with(
        [{"name": "budget", "limit": "0.000010", "unit": "cost_per_month", "time_zone": "America/Los_Angeles"}]
    )
    admission = service(policy, store, clock)
    november = admission.admit(SEARCH, request(max_tokens=10), "nov")

    with pytest.raises(BudgetExhaustedError) as still_november:
        admission.admit(SEARCH, request(max_tokens=10), "late")
    clock.now = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    december = admission.admit(SEARCH, request(max_tokens=10), "dec")

    assert november.holds[0].window.id == "2026-11"
    assert still_november.value.refusal.hold.window.end == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert december.holds[0].window.id == "2026-12"
    assert december.holds[0].pk == november.holds[0].pk  # same counter family, a new window item


def test_downgrade_past_the_threshold_reserves_at_the_cheaper_price(store: CounterStore) -> None:
    clock = Clock(datetime(2026, 11, 29, 18, 0, tzinfo=UTC))
    cheap = output_only_model(output_price=100_000)
    rule = {
        "name": "budget",
        "limit": "0.001000",
        "unit": "cost_per_month",
        "actions": [{"at": 80, "downgrade_to": "cheap"}, {"at": 50, "alert": True}],
    }
    admission = service(policy_with([rule], models={"cheap": cheap}), store, clock)
    first = admission.admit(SEARCH, request(max_tokens=700), "r1")  # 700 of 1000 µUSD: below 80 %
    admission.settle(first, Reported(Usage(30, 700)))

    second = admission.admit(SEARCH, request(max_tokens=200), "r2")  # 700 + 200 > 800: downgrade

    assert (first.model_name, first.downgraded_from) == ("fixed-cost", None)
    assert (second.model_name, second.downgraded_from) == ("cheap", "fixed-cost")
    assert second.holds[0].amount == 20  # 200 tokens at $0.10/M


def test_shadow_rule_counts_and_admits_what_it_would_refuse(store: CounterStore) -> None:
    clock = Clock(datetime(2026, 11, 29, 18, 0, tzinfo=UTC))
    shadow = {"name": "trial-cap", "limit": 2, "unit": "requests_per_day", "mode": "shadow"}
    admission = service(policy_with([shadow]), store, clock)

    admitted = [admission.admit(SEARCH, request(), f"r{i}") for i in range(5)]

    assert len(admitted) == 5
    (usage,) = admission.usage(SEARCH)
    assert usage.reserved == "5"  # all five counted, though only two fit


def test_store_unreachable_refuses_for_closed_rules_and_admits_for_open_ones(store: MemoryCounterStore) -> None:
    clock = Clock(datetime(2026, 11, 29, 18, 0, tzinfo=UTC))
    budget = {"name": "budget", "limit": 100, "unit": "cost_per_month"}  # closed by default
    rpm = {"name": "rpm", "limit": 100, "unit": "requests_per_minute"}  # open by default
    open_budget = budget | {"on_store_error": "open"}
    unreachable = StoreUnavailableError("the counter store is unreachable: EndpointConnectionError")

    store.fail_next("reserve", unreachable)
    with pytest.raises(StoreUnavailableError, match="budget"):
        service(policy_with([budget, rpm]), store, clock).admit(SEARCH, request(), "r1")
    store.fail_next("reserve", unreachable)
    admitted = service(policy_with([open_budget, rpm]), store, clock).admit(SEARCH, request(), "r2")

    assert admitted.held is False


class ScriptedProvider:
    """A provider that does what the test says: answer, fail, time out, or stop mid-stream."""

    def __init__(self, *, fail: ProviderError | None = None, cut_after: int | None = None) -> None:
        self.fail = fail
        self.cut_after = cut_after

    def complete(self, call: ProviderCall) -> Completion:
        if self.fail:
            raise self.fail
        return Completion("ok", "stop", Usage(30, 4))

    def stream(self, call: ProviderCall) -> Generator[StreamEvent, None, None]:
        if self.fail and self.cut_after is None:
            raise self.fail
        for i in range(6):
            if self.cut_after is not None and i == self.cut_after:
                raise ProviderError("the provider's stream broke")
            yield TextDelta(f"w{i} ")
        yield Finished("stop")
        yield UsageReported(Usage(30, 6))


BUDGET = {"name": "budget", "limit": "0.001000", "unit": "cost_per_month"}


def chat(store: CounterStore, provider: ScriptedProvider) -> tuple[ChatService, AdmissionService]:
    policy = policy_with([BUDGET])
    admission = service(policy, store, Clock(datetime(2026, 11, 29, 18, 0, tzinfo=UTC)))
    return ChatService(policy, dict.fromkeys(policy.providers, provider), Router(policy, admission)), admission


def test_success_is_settled_at_the_actual_cost(store: CounterStore) -> None:
    service_, admission = chat(store, ScriptedProvider())

    service_.complete(service_.plan(SEARCH, request(max_tokens=50), "r1"))

    assert committed_and_spent(admission) == {"budget": ("0.000004", "0")}


@pytest.mark.parametrize("failure", [ProviderError("boom", status=500), ProviderTimeoutError("slow")])
def test_provider_error_or_timeout_releases_the_whole_hold(store: CounterStore, failure: ProviderError) -> None:
    service_, admission = chat(store, ScriptedProvider(fail=failure))
    plan = service_.plan(SEARCH, request(max_tokens=50), "r1")

    with pytest.raises(type(failure)):
        service_.complete(plan)

    assert committed_and_spent(admission) == {"budget": ("0", "0")}


def test_stream_failing_before_any_output_releases_the_hold(store: CounterStore) -> None:
    service_, admission = chat(store, ScriptedProvider(fail=ProviderTimeoutError("no first byte")))

    with pytest.raises(ProviderTimeoutError):
        list(service_.stream(service_.plan(SEARCH, request(max_tokens=50), "r1")))

    assert committed_and_spent(admission) == {"budget": ("0", "0")}


def delivered_cost(text: str) -> str:
    """What `fixed-cost` (1 µUSD per output token, input free) charges for delivered `text`."""
    return format_usd(count_tokens(text, "cl100k_base"))


def test_stream_cut_after_output_is_charged_the_delivered_text_never_zero(store: CounterStore) -> None:
    service_, admission = chat(store, ScriptedProvider(cut_after=3))
    exchange = service_.plan(SEARCH, request(max_tokens=50), "r1")

    with pytest.raises(ProviderError):
        list(service_.stream(exchange))

    assert exchange.bill is not None
    assert exchange.bill.basis == "delivered_text"
    assert 0 < exchange.bill.cost < 50  # something, and less than the 50-token hold
    assert committed_and_spent(admission) == {"budget": (delivered_cost("w0 w1 w2 "), "0")}


def test_client_disconnect_mid_stream_charges_what_was_delivered(store: CounterStore) -> None:
    service_, admission = chat(store, ScriptedProvider())
    events = service_.stream(service_.plan(SEARCH, request(max_tokens=50), "r1"))
    next(events), next(events)

    events.close()  # what the HTTP layer does when the client goes away

    assert committed_and_spent(admission) == {"budget": (delivered_cost("w0 w1 "), "0")}


def test_stream_to_the_end_is_settled_from_the_provider_s_usage(store: CounterStore) -> None:
    service_, admission = chat(store, ScriptedProvider())

    list(service_.stream(service_.plan(SEARCH, request(max_tokens=50), "r1")))

    assert committed_and_spent(admission) == {"budget": ("0.000006", "0")}


def test_crashed_request_s_hold_is_charged_by_the_sweeper_after_expiry(store: CounterStore) -> None:
    """The process died between reserve and settle: the provider may have billed the call, so
    the hold is charged, flagged — never returned as $0 (docs/COUNTERS.md)."""
    clock = Clock(datetime(2026, 11, 29, 18, 0, tzinfo=UTC))
    admission = service(policy_with([BUDGET]), store, clock)
    admission.admit(SEARCH, request(max_tokens=50), "crashed")  # and never settled

    assert admission.sweep() == 0
    clock.now += RESERVATION_LIFETIME - timedelta(seconds=1)
    assert admission.sweep() == 0
    assert committed_and_spent(admission) == {"budget": ("0", "0.00005")}
    clock.now += timedelta(seconds=2)
    assert admission.sweep() == 1
    assert admission.sweep() == 0

    assert committed_and_spent(admission) == {"budget": ("0.00005", "0")}


class SettlementsKept(MemoryCounterStore):
    """The in-memory store, keeping every settlement it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.settlements: list[Settlement] = []

    def settle(self, settlement: Settlement) -> bool:
        self.settlements.append(settlement)
        return super().settle(settlement)


def test_a_charge_without_the_provider_s_usage_tells_the_store_the_tokens_it_charged() -> None:
    """For the cost event: the input estimate and the delivered output, or the whole hold; the
    provider's own count stays `usage`, and a release charges no tokens."""
    store = SettlementsKept()
    admission = service(policy_with([BUDGET]), store, Clock(datetime(2026, 11, 29, 18, 0, tzinfo=UTC)))
    outcomes = {
        "reported": Reported(Usage(30, 4)),
        "cut": Delivered("two words"),
        "lost": Unknown(),
        "refused": NotAccepted(),
    }
    held = {name: admission.admit(SEARCH, request(max_tokens=50), name) for name in outcomes}

    for name, outcome in outcomes.items():
        admission.settle(held[name], outcome)

    kept = {settlement.request_id: (settlement.usage, settlement.charged) for settlement in store.settlements}
    assert kept == {
        "reported": (Usage(30, 4), None),
        "cut": (None, Usage(held["cut"].input_tokens, 2)),
        "lost": (None, Usage(held["lost"].input_tokens, 50)),
        "refused": (None, None),
    }


class Recording:
    """A counter store that keeps every reservation and settlement sent through it, and each
    settlement's answer: one entry per store request the use case made."""

    def __init__(self, store: CounterStore) -> None:
        self._store = store
        self.reserved: list[Reservation] = []
        self.settled: list[tuple[Settlement, bool]] = []

    def reserve(self, reservation: Reservation) -> list[Refusal]:
        self.reserved.append(reservation)
        return self._store.reserve(reservation)

    def settle(self, settlement: Settlement) -> bool:
        applied = self._store.settle(settlement)
        self.settled.append((settlement, applied))
        return applied

    def counters(self, keys: Any) -> dict[tuple[str, str], CounterState]:
        return self._store.counters(keys)

    def expired(self, now: datetime, limit: int) -> list[HeldReservation]:
        return self._store.expired(now, limit)


def test_a_request_no_rule_matches_is_reserved_holding_nothing_and_settled_once(store: CounterStore) -> None:
    """One store request to admit and one to settle, as for any call: the settlement is the
    write the ledger reads, so the call is on record with what it cost."""
    clock = Clock(datetime(2026, 11, 29, 18, 0, tzinfo=UTC))
    recording = Recording(store)
    admission = service(policy_with([]), recording, clock)

    admitted = admission.admit(SEARCH, request(max_tokens=50), "unruled")
    bill = admission.settle(admitted, Reported(Usage(30, 7)))
    admission.settle(admitted, Reported(Usage(30, 7)))

    assert [
        (reservation.holds, reservation.asked and reservation.asked.reserved) for reservation in recording.reserved
    ] == [((), 50)]
    assert [(settled.changes, settled.outcome, settled.cost, applied) for settled, applied in recording.settled] == [
        ((), "settled", 7, True),
        ((), "settled", 7, False),
    ]
    assert bill.cost == 7


def test_a_crashed_request_no_rule_matches_is_charged_its_reservation_by_the_sweeper(store: CounterStore) -> None:
    clock = Clock(datetime(2026, 11, 29, 18, 0, tzinfo=UTC))
    recording = Recording(store)
    admission = service(policy_with([]), recording, clock)
    admission.admit(SEARCH, request(max_tokens=50), "crashed")  # and never settled

    clock.now += RESERVATION_LIFETIME + timedelta(seconds=1)
    assert admission.sweep() == 1
    assert admission.sweep() == 0

    ((swept, applied),) = recording.settled
    assert (swept.changes, swept.outcome, swept.cost, swept.flags, applied) == (
        (),
        "expired",
        50,
        ("expired_unsettled",),
        True,
    )


def test_settling_an_admission_twice_counts_once(store: CounterStore) -> None:
    clock = Clock(datetime(2026, 11, 29, 18, 0, tzinfo=UTC))
    admission = service(policy_with([BUDGET]), store, clock)
    admitted = admission.admit(SEARCH, request(max_tokens=50), "r1")

    admission.settle(admitted, Reported(Usage(30, 7)))
    admission.settle(admitted, Reported(Usage(30, 7)))

    assert committed_and_spent(admission) == {"budget": ("0.000007", "0")}


def test_past_the_threshold_downgrades_even_when_the_dear_model_no_longer_fits(
    store: CounterStore,
) -> None:
    """At 999 of 1000 µUSD the dearer model cannot fit at all; the cheaper one still can."""
    clock = Clock(datetime(2026, 11, 29, 18, 0, tzinfo=UTC))
    cheap = output_only_model(output_price=1_000)
    rule = {
        "name": "budget",
        "limit": "0.001000",
        "unit": "cost_per_month",
        "actions": [{"at": 80, "downgrade_to": "cheap"}],
    }
    admission = service(policy_with([rule], models={"cheap": cheap}), store, clock)
    spender = admission.admit(SEARCH, request(max_tokens=999), "spender")
    admission.settle(spender, Reported(Usage(30, 999)))

    last = admission.admit(SEARCH, request(max_tokens=None), "last")

    assert (last.model_name, last.downgraded_from) == ("cheap", "fixed-cost")
    assert last.max_output_tokens == 1000  # 1000 tokens at $0.001/M cost 1 µUSD: fits the last one


def test_while_its_tokenizer_loads_a_request_holds_an_upper_bound_and_a_cut_stream_stays_capped(
    store: CounterStore,
) -> None:
    """A cold start counts UTF-8 bytes until the encoding is loaded (adapters/tokenizer.py)."""
    clock = Clock(datetime(2026, 11, 29, 18, 25, 30, tzinfo=UTC))
    policy = policy_with([{"name": "daily-tokens", "limit": 1_000_000, "unit": "tokens_per_day"}])
    still_loading = WarmingTokenCounter(start=lambda _work: None)  # the load never finishes here
    warming = AdmissionService(policy, store, still_loading, clock, MemorySettlementQueue())
    exact = AdmissionService(policy, store, count_tokens, clock, MemorySettlementQueue())

    held = warming.admit(SEARCH, request("gpt-4o-mini", max_tokens=10), "while-loading")
    exactly = exact.admit(SEARCH, request("gpt-4o-mini", max_tokens=10), "loaded")

    assert held.input_tokens >= len(LONG_PROMPT.encode()) > exactly.input_tokens
    (hold,) = held.holds
    assert hold.amount == held.input_tokens + 10
    cut_long = warming.settle(held, Delivered("word " * 100))  # 500 bytes, more than the 10 sent as max_tokens
    assert cut_long.usage == Usage(held.input_tokens, 10)
    short = warming.admit(SEARCH, request("gpt-4o-mini", max_tokens=10), "cut-short")
    cut_short = warming.settle(short, Delivered("ok"))  # 2 bytes: at least its 1 token
    assert cut_short.usage == Usage(short.input_tokens, 2)
