"""Prompt audit records from the use cases: only for a team that opts in, one per settled hold,
with what the caller sent and what it got — streamed, cut off or in one piece — on the in-memory
store (the DynamoDB store's transaction: tests/adapters/test_prompt_records.py)."""

import json
from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from paymaster.adapters.memory import MemoryCounterStore, MemorySettlementQueue
from paymaster.adapters.tokenizer import count_tokens
from paymaster.domain.audit import PromptRecord
from paymaster.domain.chat import (
    ChatRequest,
    Completion,
    Finished,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageReported,
)
from paymaster.domain.embeddings import EmbeddingRequest
from paymaster.domain.errors import ProviderError, StoreUnavailableError
from paymaster.ports import ProviderCall, Settlement
from paymaster.services.admission import AdmissionService
from paymaster.services.chat import ChatService
from paymaster.services.embeddings import EmbeddingsService
from paymaster.services.routing import Router
from paymaster.services.settlements import SettlementRetry
from tests.policies import policy_with
from tests.services.test_admission import SEARCH, Clock
from tests.services.test_chat_routing import EMBEDDINGS_MODEL, MODELS, Deployments, Vectors

NOW = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)
BUDGET = {"name": "budget", "limit": "0.001000", "unit": "cost_per_month"}
KEEP = {"search": {"prompts": True, "max_bytes": 4096, "retention_days": 14}}
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
REQUEST = ChatRequest.model_validate(
    {
        "model": "fixed-cost",
        "messages": [{"role": "user", "content": "Où est la tour Eiffel ?"}],
        "tools": [TOOL],
        "max_tokens": 50,
        "user": "u-7",
    }
)


class Answering:
    """Answers with text and a tool call, in one piece or as a stream of pieces."""

    def complete(self, call: ProviderCall) -> Completion:
        return Completion("À Paris.", "tool_calls", Usage(30, 4), "chatcmpl-1", (ToolCall("c1", "lookup", "{}"),))

    def stream(self, call: ProviderCall) -> Generator[StreamEvent, None, None]:
        yield TextDelta("À ")
        yield TextDelta("Paris.")
        yield ToolCallDelta(0, "c1", "lookup", '{"q"')
        yield ToolCallDelta(0, None, None, ':"x"}')
        yield Finished("tool_calls")
        yield UsageReported(Usage(30, 6))


class Recording(MemoryCounterStore):
    """The in-memory store, keeping every settlement it was given."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: NOW)
        self.settlements: list[Settlement] = []

    def settle(self, settlement: Settlement) -> bool:
        self.settlements.append(settlement)
        return super().settle(settlement)


def chat(
    store: MemoryCounterStore, provider: Any = None, audit: dict[str, Any] | None = None, **models: Any
) -> ChatService:
    policy = policy_with([BUDGET], models=models, audit=KEEP if audit is None else audit)
    admission = AdmissionService(policy, store, count_tokens, Clock(NOW), MemorySettlementQueue())
    providers = dict.fromkeys(policy.providers, provider or Answering())
    return ChatService(policy, providers, Router(policy, admission, draw=lambda: 0.0))


def only(store: MemoryCounterStore) -> PromptRecord:
    (record,) = store.prompts.values()
    return record


def test_a_team_that_did_not_opt_in_leaves_no_prompt_record_and_the_same_settlement() -> None:
    store = Recording()
    service = chat(store, audit={})

    service.complete(service.plan(SEARCH, REQUEST, "r1"))

    (settlement,) = store.settlements
    assert settlement.audit is None
    assert store.prompts == {}


def test_a_complete_chat_keeps_who_asked_what_was_sent_and_what_came_back() -> None:
    store = MemoryCounterStore(clock=lambda: NOW)
    service = chat(store)

    service.complete(service.plan(SEARCH, REQUEST, "r1"))

    record = only(store)
    assert (record.request_id, record.hop, record.admitted_at) == ("r1", 0, NOW)
    assert (record.team, record.app, record.env, record.principal, record.user) == (
        "search", "ranker", "prod", SEARCH.arn, "u-7",
    )  # fmt: skip
    assert (record.model, record.deployment) == ("fixed-cost", "openai/fixed-cost")
    assert json.loads(record.prompt) == {
        "messages": [{"role": "user", "content": "Où est la tour Eiffel ?"}],
        "tools": [TOOL],
    }
    assert record.completion is not None
    assert json.loads(record.completion) == {
        "content": "À Paris.",
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}],
    }
    assert record.truncated is False
    assert record.expires_at == NOW + timedelta(days=14)


def test_a_streamed_chat_keeps_what_was_delivered_to_its_end() -> None:
    store = MemoryCounterStore(clock=lambda: NOW)
    service = chat(store)

    list(service.stream(service.plan(SEARCH, REQUEST, "r1")))

    assert only(store).completion == (
        '{"content":"À Paris.","tool_calls":[{"id":"c1","type":"function",'
        '"function":{"name":"lookup","arguments":"{\\"q\\":\\"x\\"}"}}]}'
    )


def test_a_stream_the_client_left_keeps_what_was_delivered_until_then() -> None:
    store = MemoryCounterStore(clock=lambda: NOW)
    service = chat(store)
    events = service.stream(service.plan(SEARCH, REQUEST, "r1"))
    next(events), next(events)

    events.close()  # what the HTTP layer does when the client goes away

    assert only(store).completion == '{"content":"À Paris."}'


def test_a_stream_the_provider_cut_keeps_what_was_delivered_before_the_cut() -> None:
    class Cut(Answering):
        def stream(self, call: ProviderCall) -> Generator[StreamEvent, None, None]:
            yield TextDelta("À ")
            raise ProviderError("the provider's stream broke")

    store = MemoryCounterStore(clock=lambda: NOW)
    service = chat(store, Cut())

    with pytest.raises(ProviderError):
        list(service.stream(service.plan(SEARCH, REQUEST, "r1")))

    assert only(store).completion == '{"content":"À "}'


def test_an_embedding_keeps_its_inputs_and_no_completion() -> None:
    store = MemoryCounterStore(clock=lambda: NOW)
    policy = policy_with([BUDGET], models={"vectors": EMBEDDINGS_MODEL}, audit=KEEP)
    admission = AdmissionService(policy, store, count_tokens, Clock(NOW), MemorySettlementQueue())
    service = EmbeddingsService({"openai": Vectors(3)}, Router(policy, admission))

    service.embed(SEARCH, EmbeddingRequest(model="vectors", input=["naïve", "café"]), "e1")

    record = only(store)
    assert json.loads(record.prompt) == {"input": ["naïve", "café"]}
    assert (record.completion, record.model, record.deployment) == (None, "vectors", "openai/vectors")


def test_a_fallback_keeps_one_record_per_hold_and_only_the_one_that_served_has_an_answer() -> None:
    store = MemoryCounterStore(clock=lambda: NOW)
    deployments = Deployments(
        {"p-first": [ProviderError("internal", status=500)], "p-second": [ProviderError("internal", status=500)]}
    )
    service = chat(store, deployments, **MODELS)
    primary = REQUEST.model_copy(update={"model": "primary"})

    service.complete(service.plan(SEARCH, primary, "r1"))

    released, served = store.prompts[("r1", 0)], store.prompts[("r1", 2)]
    assert (released.model, released.deployment, released.completion) == ("primary", "openai/p-second", None)
    assert (served.model, served.deployment, served.completion) == ("backup", "anthropic/b-only", '{"content":"ok"}')
    assert released.prompt == served.prompt


def test_a_settlement_queued_while_the_store_is_down_carries_its_record_and_lands_it_once() -> None:
    store = MemoryCounterStore(clock=lambda: NOW)
    queue = MemorySettlementQueue()
    policy = policy_with([BUDGET], audit=KEEP)
    admission = AdmissionService(policy, store, count_tokens, Clock(NOW), queue)
    service = ChatService(policy, dict.fromkeys(policy.providers, Answering()), Router(policy, admission))
    exchange = service.plan(SEARCH, REQUEST, "r1")
    store.fail_next("settle", StoreUnavailableError("the counter store is unreachable"))

    service.complete(exchange)

    assert store.prompts == {}
    (queued,) = queue.take()
    assert queued.audit is not None
    assert SettlementRetry(store).apply(queued) is True
    assert SettlementRetry(store).apply(queued) is False  # delivered twice
    assert list(store.prompts.values()) == [queued.audit]
