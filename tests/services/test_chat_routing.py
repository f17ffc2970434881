"""Walking a virtual model's route: fallbacks, re-reservation at the fallback's price, and the
bill on every exit path — on the in-memory counter store."""

from collections.abc import Generator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from paymaster.adapters.memory import MemoryCounterStore, MemorySettlementQueue
from paymaster.adapters.tokenizer import count_tokens
from paymaster.domain.chat import Completion, Finished, StreamEvent, TextDelta, Usage, UsageReported
from paymaster.domain.embeddings import EmbeddingRequest, Embeddings
from paymaster.domain.errors import (
    InvalidRequestError,
    ProviderError,
    ProviderRejectedError,
    ProviderResponseError,
    ProviderThrottledError,
    ProviderTimeoutError,
)
from paymaster.domain.limits import Refusal
from paymaster.domain.metering import Bill
from paymaster.ports import CallRecord, CounterStore, EmbeddingCall, ProviderCall, Reservation, Settlement
from paymaster.services.admission import AdmissionService
from paymaster.services.chat import ChatService
from paymaster.services.embeddings import EmbeddingsService
from paymaster.services.routing import Exchange, Router
from tests.policies import FIXED_COST_MODEL, policy_with
from tests.services.test_admission import SEARCH, Clock, committed_and_spent, request


class Deployments:
    """Every provider of the policy at once: answers per deployment model id, failing first with
    the errors scripted for it, and records which deployment each call went to."""

    def __init__(self, faults: Mapping[str, Sequence[ProviderError]] | None = None) -> None:
        self.faults = {model: list(errors) for model, errors in (faults or {}).items()}
        self.calls: list[tuple[str, int]] = []  # (deployment model id, max_output_tokens)

    def _next_fault(self, call: ProviderCall) -> ProviderError | None:
        self.calls.append((call.deployment.model, call.max_output_tokens))
        queue = self.faults.get(call.deployment.model, [])
        return queue.pop(0) if queue else None

    def complete(self, call: ProviderCall) -> Completion:
        if fault := self._next_fault(call):
            raise fault
        return Completion("ok", "stop", Usage(30, 4))

    def stream(self, call: ProviderCall) -> Generator[StreamEvent, None, None]:
        if fault := self._next_fault(call):
            raise fault
        for word in ("one ", "two ", "three "):
            yield TextDelta(word)
        yield Finished("stop")
        yield UsageReported(Usage(30, 3))


# `primary` costs 1 µUSD per output token, `backup` 2: a fallback's hold is visibly its own.
MODELS: dict[str, Any] = {
    "primary": {
        **FIXED_COST_MODEL,
        "deployments": [
            {"provider": "openai", "model": "p-first"},
            {"provider": "openai", "model": "p-second", "priority": 1},
        ],
        "fallbacks": ["backup"],
    },
    "backup": {
        **FIXED_COST_MODEL,
        "deployments": [{"provider": "anthropic", "model": "b-only"}],
        "price": {**FIXED_COST_MODEL["price"], "output": 2_000_000},
    },
}
BUDGET = {"name": "budget", "limit": "0.001000", "unit": "cost_per_month"}


def chat(
    store: CounterStore, deployments: Deployments, limit: str = "0.001000", **models: Any
) -> tuple[ChatService, AdmissionService]:
    policy = policy_with([{**BUDGET, "limit": limit}], models=MODELS | models)
    admission = AdmissionService(
        policy, store, count_tokens, Clock(datetime(2026, 11, 29, 18, 0, tzinfo=UTC)), MemorySettlementQueue()
    )
    providers = dict.fromkeys(policy.providers, deployments)
    return ChatService(policy, providers, Router(policy, admission, draw=lambda: 0.0)), admission


def serve(service: ChatService, max_tokens: int | None = 50) -> tuple[Exchange, Completion]:
    exchange = service.plan(SEARCH, request("primary", max_tokens=max_tokens), "r1")
    return exchange, service.complete(exchange)


def test_a_throttled_deployment_falls_to_the_next_on_the_same_hold(store: CounterStore) -> None:
    deployments = Deployments({"p-first": [ProviderThrottledError("429", retry_after_s=2)]})
    service, admission = chat(store, deployments)

    exchange, _ = serve(service)

    assert [model for model, _ in deployments.calls] == ["p-first", "p-second"]
    assert exchange.tried == ["openai/p-first", "openai/p-second"]
    assert exchange.admission.request_id == "r1"  # one hold served both attempts
    assert committed_and_spent(admission) == {"budget": ("0.000004", "0")}


def test_a_fallback_model_is_held_at_its_own_price_before_it_is_called(store: CounterStore) -> None:
    unavailable = [ProviderError("internal", status=500)]
    deployments = Deployments({"p-first": list(unavailable), "p-second": [ProviderTimeoutError("no first byte")]})
    service, admission = chat(store, deployments)

    exchange, _ = serve(service)

    assert exchange.tried == ["openai/p-first", "openai/p-second", "anthropic/b-only"]
    assert exchange.admission.model_name == "backup"
    assert exchange.admission.request_id == "r1~2"
    assert exchange.bill == Bill(Usage(30, 4), 8, "provider_usage")  # 4 tokens at backup's 2 µUSD
    assert committed_and_spent(admission) == {"budget": ("0.000008", "0")}  # primary's hold released


def test_a_fallback_that_cannot_afford_max_tokens_is_called_with_fewer(store: CounterStore) -> None:
    """A $0.0006 budget affords 600 output tokens of primary and 300 of backup (2 µUSD each)."""
    deployments = Deployments({"p-first": [ProviderError("down", status=503)], "p-second": [ProviderError("down")]})
    service, _ = chat(store, deployments, limit="0.000600")
    exchange = service.plan(SEARCH, request("primary", max_tokens=None), "r1")

    service.complete(exchange)

    assert deployments.calls == [("p-first", 600), ("p-second", 600), ("b-only", 300)]


def test_when_every_deployment_fails_the_last_error_is_raised_and_nothing_stays_held(
    store: CounterStore,
) -> None:
    deployments = Deployments(
        {
            "p-first": [ProviderError("down", status=503)],
            "p-second": [ProviderError("down", status=502)],
            "b-only": [ProviderThrottledError("429", retry_after_s=7)],
        }
    )
    service, admission = chat(store, deployments)

    with pytest.raises(ProviderThrottledError) as raised:
        serve(service)

    assert raised.value.retry_after_s == 7
    assert committed_and_spent(admission) == {"budget": ("0", "0")}


def test_a_rejected_request_does_not_move_on(store: CounterStore) -> None:
    deployments = Deployments({"p-first": [ProviderRejectedError("bad tool schema", status=400)]})
    service, admission = chat(store, deployments)

    with pytest.raises(ProviderRejectedError):
        serve(service)

    assert [model for model, _ in deployments.calls] == ["p-first"]
    assert committed_and_spent(admission) == {"budget": ("0", "0")}


def test_an_answer_that_cannot_be_read_is_charged_its_hold_not_retried(store: CounterStore) -> None:
    """A 200 that is not JSON: the provider may have billed it; retrying could bill it twice."""
    deployments = Deployments({"p-first": [ProviderResponseError("not JSON", status=200)]})
    service, admission = chat(store, deployments)

    with pytest.raises(ProviderResponseError):
        serve(service)

    assert [model for model, _ in deployments.calls] == ["p-first"]
    assert committed_and_spent(admission) == {"budget": ("0.00005", "0")}


def test_fallback_on_decides_which_failures_move_on(store: CounterStore) -> None:
    primary = {**MODELS["primary"], "fallback_on": ["timeout"]}
    deployments = Deployments({"p-first": [ProviderThrottledError("429")]})
    service, _ = chat(store, deployments, primary=primary)

    with pytest.raises(ProviderThrottledError):
        serve(service)

    assert [model for model, _ in deployments.calls] == ["p-first"]


def test_a_fallback_the_budget_refuses_ends_the_walk_with_the_provider_s_error(store: CounterStore) -> None:
    """Primary (1 µUSD/token) fits 300 tokens in the $0.0004 budget; backup (2 µUSD) cannot
    hold 300 and the caller asked for exactly that, so the fallback is refused, not shrunk."""
    deployments = Deployments({"p-first": [ProviderError("down", status=503)], "p-second": [ProviderError("down")]})
    service, admission = chat(store, deployments, limit="0.000400")
    exchange = service.plan(SEARCH, request("primary", max_tokens=300), "r1")

    with pytest.raises(ProviderError, match="fallback to `backup` was not admitted: Budget exhausted"):
        service.complete(exchange)

    assert [model for model, _ in deployments.calls] == ["p-first", "p-second"]
    assert committed_and_spent(admission) == {"budget": ("0", "0")}


def test_a_stream_falls_back_before_its_first_event(store: CounterStore) -> None:
    deployments = Deployments({"p-first": [ProviderThrottledError("429")], "p-second": [ProviderError("down")]})
    service, admission = chat(store, deployments)
    exchange = service.plan(SEARCH, request("primary", max_tokens=50), "r1")

    events = list(service.stream(exchange))

    assert exchange.deployment.label == "anthropic/b-only"
    assert events[-1] == Bill(Usage(30, 3), 6, "provider_usage")
    assert not any(isinstance(event, UsageReported) for event in events)  # the bill replaces it
    assert committed_and_spent(admission) == {"budget": ("0.000006", "0")}


def test_a_stream_past_its_total_timeout_is_cut_and_charged_what_it_delivered(store: CounterStore) -> None:
    ticks = iter([0.0, 1.0, 500.0])  # started, after "one ", after "two " (past total_s = 240)
    deployments = Deployments()
    policy = policy_with([BUDGET], models=MODELS)
    admission = AdmissionService(
        policy, store, count_tokens, Clock(datetime(2026, 11, 29, 18, 0, tzinfo=UTC)), MemorySettlementQueue()
    )
    service = ChatService(
        policy, dict.fromkeys(policy.providers, deployments), Router(policy, admission), monotonic=lambda: next(ticks)
    )
    exchange = service.plan(SEARCH, request("primary", max_tokens=50), "r1")

    with pytest.raises(ProviderTimeoutError, match="total timeout"):
        list(service.stream(exchange))

    assert exchange.bill is not None
    assert exchange.bill.basis == "delivered_text"
    assert exchange.bill.usage.output_tokens == count_tokens("one two ", "cl100k_base")


def test_a_request_an_adapter_cannot_translate_is_released(store: CounterStore) -> None:
    """Bedrock and Anthropic refuse, before sending, a tool call whose arguments are not JSON."""
    deployments = Deployments({"p-first": [InvalidRequestError("arguments are not JSON")]})  # type: ignore[list-item]
    service, admission = chat(store, deployments)

    with pytest.raises(InvalidRequestError):
        serve(service)

    assert committed_and_spent(admission) == {"budget": ("0", "0")}


class Vectors:
    """An embeddings provider that reports `input_tokens` (None: no count)."""

    def __init__(self, input_tokens: int | None) -> None:
        self.input_tokens = input_tokens

    def embed(self, call: EmbeddingCall) -> Embeddings:
        return Embeddings(((0.1, 0.2),), self.input_tokens)


EMBEDDINGS_MODEL = {
    "kind": "embeddings",
    "deployments": [{"provider": "openai", "model": "vectors"}],
    "context_window": 8191,
    "price": {"input": 1_000_000, "output": 0, "source": "test", "as_of": "2026-11-29"},
}


@pytest.mark.parametrize(("reported", "charged"), [(3, "0.000003"), (None, "0.000004")])
def test_embeddings_are_charged_the_provider_s_count_or_the_hold_without_one(
    store: CounterStore, reported: int | None, charged: str
) -> None:
    """'two words' holds 4 µUSD (cl100k: 2 tokens × factor 2); without a count the hold stays."""
    policy = policy_with([BUDGET], models={"vectors": {**EMBEDDINGS_MODEL, "input_token_factor": 2}})
    admission = AdmissionService(
        policy, store, count_tokens, Clock(datetime(2026, 11, 29, 18, 0, tzinfo=UTC)), MemorySettlementQueue()
    )
    service = EmbeddingsService({"openai": Vectors(reported)}, Router(policy, admission))

    exchange, _, _ = service.embed(SEARCH, EmbeddingRequest(model="vectors", input="two words"), "e1")

    assert exchange.bill is not None
    assert exchange.bill.basis == ("provider_usage" if reported else "reservation")
    assert committed_and_spent(admission) == {"budget": (charged, "0")}


class Recording(MemoryCounterStore):
    """The in-memory store, keeping every reservation and settlement it was given."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: datetime(2026, 11, 29, 18, 0, tzinfo=UTC))
        self.reservations: list[Reservation] = []
        self.settlements: list[Settlement] = []

    def reserve(self, reservation: Reservation) -> list[Refusal]:
        self.reservations.append(reservation)
        return super().reserve(reservation)

    def settle(self, settlement: Settlement) -> bool:
        self.settlements.append(settlement)
        return super().settle(settlement)


def test_each_hold_records_who_asked_and_each_settlement_how_its_hop_was_served() -> None:
    """What the ledger reads back from the reservation items: the released primary hold and
    the fallback's settled one, each with the deployments tried under it and its timings."""
    store = Recording()
    deployments = Deployments({"p-first": [ProviderError("down", status=500)], "p-second": [ProviderError("down")]})
    policy = policy_with([BUDGET], models=MODELS)
    admission = AdmissionService(
        policy, store, count_tokens, Clock(datetime(2026, 11, 29, 18, 0, tzinfo=UTC)), MemorySettlementQueue()
    )
    # planned, served from, primary released, backup settled, served until
    ticks = iter([10.0, 10.0, 10.4, 11.25, 11.25])
    router = Router(policy, admission, draw=lambda: 0.0, monotonic=lambda: next(ticks))
    service = ChatService(policy, dict.fromkeys(policy.providers, deployments), router)

    exchange = service.plan(SEARCH, request("primary", max_tokens=50, user="u-7"), "r1", {"tenant": "acme"})
    service.complete(exchange)

    first, fallback = store.reservations
    assert first.asked is not None
    assert (first.asked.principal_arn, first.asked.env, first.asked.user) == ("arn", "prod", "u-7")
    assert first.asked.metadata == (("tenant", "acme"),)
    assert first.asked.reserved == 50  # 50 output tokens at primary's 1 µUSD
    assert fallback.asked is not None
    assert (fallback.request_id, fallback.asked.reserved) == ("r1~2", 100)
    released, settled = store.settlements
    assert (released.outcome, released.billed_on, settled.outcome, settled.billed_on) == (
        "released",
        "released",
        "settled",
        "provider_usage",
    )
    assert released.call == CallRecord("openai/p-second", ("openai/p-first", "openai/p-second"), None, 400, None)
    assert settled.call is not None
    assert (settled.call.deployment, settled.call.latency_ms) == ("anthropic/b-only", 1250)
    assert settled.call.tried == ("openai/p-first", "openai/p-second", "anthropic/b-only")


class NoInputReported(Deployments):
    """A provider whose usage says the prompt had no tokens at all."""

    def complete(self, call: ProviderCall) -> Completion:
        return Completion("ok", "stop", Usage(0, 4))

    def stream(self, call: ProviderCall) -> Generator[StreamEvent, None, None]:
        yield TextDelta("one two ")
        yield Finished("stop")
        yield UsageReported(Usage(0, 3))


def test_a_stream_whose_usage_reports_no_input_is_charged_what_it_delivered_and_flagged() -> None:
    store = Recording()
    service, _ = chat(store, NoInputReported())
    exchange = service.plan(SEARCH, request("primary", max_tokens=50), "r1")

    *_, bill = service.stream(exchange)

    assert isinstance(bill, Bill)
    assert bill.basis == "delivered_text"
    assert bill.usage.input_tokens == exchange.admission.input_tokens  # the estimate, not 0
    (settled,) = store.settlements
    assert "usage_reported_no_input" in settled.flags


def test_an_answer_whose_usage_reports_no_input_is_charged_its_hold_and_flagged() -> None:
    store = Recording()
    service, _ = chat(store, NoInputReported())

    exchange, _ = serve(service)

    assert exchange.bill == Bill(Usage(exchange.admission.input_tokens, 50), 50, "reservation")
    (settled,) = store.settlements
    assert {"usage_reported_no_input", "usage_unknown"} <= set(settled.flags)


def test_a_stream_records_its_time_to_first_token_once_from_its_first_piece_of_output() -> None:
    store = Recording()
    policy = policy_with([BUDGET], models=MODELS)
    admission = AdmissionService(
        policy, store, count_tokens, Clock(datetime(2026, 11, 29, 18, 0, tzinfo=UTC)), MemorySettlementQueue()
    )
    ticks = iter([10.0, 10.25, 11.0])  # planned, "one " reached the gateway, settled
    router = Router(policy, admission, draw=lambda: 0.0, monotonic=lambda: next(ticks))
    service = ChatService(policy, dict.fromkeys(policy.providers, Deployments()), router, monotonic=lambda: 0.0)
    exchange = service.plan(SEARCH, request("primary", max_tokens=50), "r1")

    list(service.stream(exchange))  # three pieces of text: only the first is timed

    (settled,) = store.settlements
    assert settled.call is not None
    assert (settled.call.first_token_ms, settled.call.latency_ms) == (250, 1000)
