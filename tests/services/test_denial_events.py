"""RequestDenied: one per refusal the caller is answered with, published before the 429 and never
changing it; nothing on a served request's path. On the in-memory store, time from a clock."""

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from paymaster.adapters.memory import MemorySettlementQueue
from paymaster.adapters.tokenizer import count_tokens
from paymaster.domain.errors import BudgetExhaustedError, LimitRefusedError, ProviderError, RateLimitedError
from paymaster.domain.events import RequestDenied
from paymaster.ports import CounterStore, EventPublisher
from paymaster.services.admission import AdmissionService
from paymaster.services.chat import ChatService
from paymaster.services.denials import DenialEvents
from paymaster.services.routing import Router
from tests.policies import policy_with
from tests.publishers import HangingBus, RaisingBus, RecordingBus, RefusingBus
from tests.services.test_admission import SEARCH, Clock, request
from tests.services.test_chat_routing import BUDGET, MODELS, Deployments

NOW = datetime(2026, 11, 29, 18, 0, 7, tzinfo=UTC)
ONE_PER_MINUTE = {"name": "rpm", "limit": 1, "unit": "requests_per_minute", "per": ["team"]}
TEN_MICRO_USD = {"name": "monthly", "limit": "0.000010", "unit": "cost_per_month", "per": ["team", "user"]}


def chat(store: CounterStore, denials: DenialEvents, rules: list[dict[str, Any]], **models: Any) -> ChatService:
    policy = policy_with(rules, models=models or None)
    admission = AdmissionService(policy, store, count_tokens, Clock(NOW), MemorySettlementQueue())
    router = Router(policy, admission, denials=denials, draw=lambda: 0.0)
    return ChatService(policy, dict.fromkeys(policy.providers, Deployments()), router)


def refusal_of(service: ChatService, request_id: str = "r2", **body: Any) -> LimitRefusedError:
    with pytest.raises(LimitRefusedError) as refused:
        service.answer(SEARCH, request(**body), request_id, {"feature": "rewrite"})
    return refused.value


def test_a_refused_request_publishes_one_request_denied_with_the_rule_s_figures(store: CounterStore) -> None:
    bus = RecordingBus()
    service = chat(store, DenialEvents(bus), [ONE_PER_MINUTE])
    service.answer(SEARCH, request(), "r1")

    error = refusal_of(service, user="alice")

    assert isinstance(error, RateLimitedError)
    (event,) = bus.events
    assert isinstance(event, RequestDenied)
    assert (event.request_id, event.time, event.model, event.user) == ("r2", NOW, "fixed-cost", "alice")
    assert (event.team, event.app, event.env, event.principal_arn) == ("search", "ranker", "prod", SEARCH.arn)
    assert event.metadata == {"feature": "rewrite"}
    assert (event.code, event.status) == ("rate_limit_exceeded", 429)
    rule = event.rule
    assert (rule.name, rule.scope, rule.unit) == ("rpm", "team=search", "requests_per_minute")
    assert (rule.limit, rule.used, rule.remaining, rule.requested) == (1, 1, 0, 1)
    assert (rule.window, rule.resets_at) == ("2026-11-29T18:00Z", datetime(2026, 11, 29, 18, 1, tzinfo=UTC))


def test_a_spent_budget_s_denial_is_insufficient_quota_in_micro_usd(store: CounterStore) -> None:
    bus = RecordingBus()
    service = chat(store, DenialEvents(bus), [TEN_MICRO_USD])

    error = refusal_of(service, max_tokens=50, user="bob")  # fixed-cost: 1 µUSD per output token

    assert isinstance(error, BudgetExhaustedError)
    (event,) = bus.events
    assert isinstance(event, RequestDenied)
    assert (event.code, event.rule.scope) == ("insufficient_quota", "team=search/user=bob")
    assert (event.rule.limit, event.rule.used, event.rule.remaining, event.rule.requested) == (10, 0, 10, 50)


def test_a_served_request_publishes_nothing(store: CounterStore) -> None:
    bus = RecordingBus()
    service = chat(store, DenialEvents(bus), [ONE_PER_MINUTE, TEN_MICRO_USD])

    service.answer(SEARCH, request(max_tokens=5), "r1")

    assert bus.events == []


def test_a_fallback_the_rules_refuse_publishes_nothing_as_the_caller_gets_the_provider_s_error(
    store: CounterStore,
) -> None:
    bus = RecordingBus()
    policy = policy_with([{**BUDGET, "limit": "0.000400"}], models=MODELS)
    admission = AdmissionService(policy, store, count_tokens, Clock(NOW), MemorySettlementQueue())
    deployments = Deployments({"p-first": [ProviderError("down", status=503)], "p-second": [ProviderError("down")]})
    router = Router(policy, admission, denials=DenialEvents(bus), draw=lambda: 0.0)
    service = ChatService(policy, dict.fromkeys(policy.providers, deployments), router)

    with pytest.raises(ProviderError, match="was not admitted"):
        service.answer(SEARCH, request("primary", max_tokens=300), "r1")

    assert bus.events == []


def answer_without_events(store: CounterStore) -> LimitRefusedError:
    return refusal_of(chat(store, DenialEvents(RecordingBus()), [TEN_MICRO_USD]), max_tokens=50)


@pytest.mark.parametrize("bus", [RefusingBus(), RaisingBus()], ids=["refused", "raises"])
def test_a_bus_that_fails_leaves_the_refusal_as_it_was(store: CounterStore, bus: EventPublisher) -> None:
    denials = DenialEvents(bus)
    expected = answer_without_events(store)

    error = refusal_of(chat(store, denials, [TEN_MICRO_USD]), request_id="r3", max_tokens=50)

    assert (type(error), error.message) == (type(expected), expected.message)
    assert denials.outcomes == {"failed": 1}


def test_a_bus_that_hangs_delays_the_refusal_by_the_wait_at_most(store: CounterStore) -> None:
    bus = HangingBus()
    denials = DenialEvents(bus, wait_s=0.05)
    service = chat(store, denials, [TEN_MICRO_USD])
    try:
        started = time.monotonic()
        error = refusal_of(service, max_tokens=50)
        waited = time.monotonic() - started
    finally:
        bus.release.set()

    assert isinstance(error, BudgetExhaustedError)
    assert 0.05 <= waited < 0.5
    assert denials.outcomes["late"] == 1


def test_once_enough_publishes_hang_a_refusal_does_not_wait_at_all(store: CounterStore) -> None:
    bus = HangingBus()
    denials = DenialEvents(bus, wait_s=0.05, max_in_flight=1)
    service = chat(store, denials, [TEN_MICRO_USD])
    try:
        refusal_of(service, "r1", max_tokens=50)
        started = time.monotonic()
        refusal_of(service, "r2", max_tokens=50)
        waited = time.monotonic() - started
    finally:
        bus.release.set()

    assert waited < 0.05
    assert bus.started == 1
    assert denials.outcomes == {"late": 1, "dropped": 1}
