"""Each request's CloudWatch metrics, as the gateway writes them (EMF, docs/METRICS.md): served,
streamed, refused, downgraded, fallen back, failed, embedded — on the in-memory counter store,
with a monotonic clock that moves only when a provider takes time."""

import io
import threading
from collections.abc import Generator
from datetime import UTC, datetime
from typing import Any

import pytest

from paymaster import names
from paymaster.adapters.emf_metrics import EmfMetrics
from paymaster.adapters.memory import MemoryCounterStore, MemorySettlementQueue
from paymaster.adapters.tokenizer import count_tokens
from paymaster.api import openai_wire
from paymaster.domain.cardinality import metric_dimensions
from paymaster.domain.chat import Completion, Finished, StreamEvent, TextDelta, Usage, UsageReported
from paymaster.domain.embeddings import EmbeddingRequest, Embeddings
from paymaster.domain.errors import (
    BudgetExhaustedError,
    ProviderError,
    ProviderRejectedError,
    StoreUnavailableError,
)
from paymaster.domain.metering import Bill
from paymaster.domain.policy import MetricsSettings, Policy
from paymaster.ports import EmbeddingCall, ProviderCall, RequestMetrics
from paymaster.services.admission import AdmissionService
from paymaster.services.chat import ChatService
from paymaster.services.embeddings import EmbeddingsService
from paymaster.services.routing import Router
from tests.emf import Series, documents, series
from tests.policies import FIXED_COST_MODEL, policy_with
from tests.services.test_admission import SEARCH, Clock, request
from tests.services.test_chat_routing import MODELS

REQUEST_DIMENSIONS = ("team", "app", "model", "env")
MODELS_HERE: dict[str, Any] = MODELS | {
    # Half primary's output price: where a budget past its threshold sends a request.
    "cheap": {
        **FIXED_COST_MODEL,
        "deployments": [{"provider": "openai", "model": "c-only"}],
        "price": {**FIXED_COST_MODEL["price"], "output": 500_000},
    },
    "embed": {
        "kind": "embeddings",
        "deployments": [{"provider": "openai", "model": "e-only"}],
        "context_window": 8000,
        "price": {"input": 1_000_000, "output": 0, "source": "test", "as_of": "2026-11-29"},
    },
}


class Monotonic:
    """The router's clock: still unless a provider advances it."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms / 1000


class Providers:
    """Every provider of the policy: fails a deployment (by model id) with its scripted errors
    first; answers in 250 ms, streams its first token after 120 ms and the rest 80 ms later."""

    def __init__(self, clock: Monotonic, faults: dict[str, list[ProviderError]] | None = None) -> None:
        self.clock = clock
        self.faults = faults or {}
        self.cut_after_first_token: ProviderError | None = None

    def _fail(self, model: str) -> None:
        if self.faults.get(model):
            raise self.faults[model].pop(0)

    def complete(self, call: ProviderCall) -> Completion:
        self._fail(call.deployment.model)
        self.clock.advance(250)
        return Completion("ok", "stop", Usage(30, 4, cache_read_tokens=10))

    def stream(self, call: ProviderCall) -> Generator[StreamEvent, None, None]:
        self._fail(call.deployment.model)
        self.clock.advance(120)
        yield TextDelta("one ")
        if self.cut_after_first_token is not None:
            raise self.cut_after_first_token
        self.clock.advance(80)
        yield TextDelta("two")
        yield Finished("stop")
        yield UsageReported(Usage(30, 2))

    def embed(self, call: EmbeddingCall) -> Embeddings:
        self._fail(call.deployment.model)
        self.clock.advance(40)
        return Embeddings(((0.1, 0.2),), input_tokens=7)


class Gateway:
    """The chat and embeddings use cases with their metrics written to `out`."""

    def __init__(
        self,
        *,
        limit: str = "0.001000",
        actions: list[dict[str, Any]] | None = None,
        faults: dict[str, list[ProviderError]] | None = None,
        max_streams: int | None = None,
    ) -> None:
        policy = policy_with(
            [{"name": "budget", "limit": limit, "unit": "cost_per_month", "actions": actions or []}],
            models=MODELS_HERE,
        )
        if max_streams is not None:
            policy = policy.model_copy(update={"metrics": MetricsSettings(max_streams=max_streams)})
        self.policy: Policy = policy
        self.store = MemoryCounterStore()
        self.clock = Monotonic()
        self.providers = Providers(self.clock, faults)
        self.admission = AdmissionService(
            policy, self.store, count_tokens, Clock(datetime(2026, 11, 29, 18, 0, tzinfo=UTC)), MemorySettlementQueue()
        )
        self.out = io.StringIO()
        self.metrics = EmfMetrics(metric_dimensions(policy), names.METRICS_NAMESPACE, self.out)
        router = Router(policy, self.admission, metrics=self.metrics, draw=lambda: 0.0, monotonic=self.clock)
        providers = dict.fromkeys(policy.providers, self.providers)
        self.chat = ChatService(policy, providers, router, monotonic=self.clock)
        self.embeddings = EmbeddingsService(providers, router)

    def answer(self, model: str = "primary", max_tokens: int = 50) -> None:
        self.chat.answer(SEARCH, request(model, max_tokens=max_tokens), "r1")

    def documents(self) -> list[dict[str, Any]]:
        return documents(self.out.getvalue())


def by_request(document: dict[str, Any]) -> dict[str, Series]:
    """The request's own series (team, app, model, env), by metric name; none with other dimensions."""
    found = series(document)
    return {name: found[(name, dims)] for name, dims in found if dims == REQUEST_DIMENSIONS}


def values(document: dict[str, Any]) -> dict[str, tuple[str, float]]:
    """The request's metrics: name → (unit, value), each a single value."""
    found = {}
    for name, one in by_request(document).items():
        (value,) = one.values
        found[name] = (one.unit, value)
    return found


def test_a_served_chat_request_counts_its_tokens_cost_and_latency_under_team_app_model_env() -> None:
    gateway = Gateway()

    gateway.answer()

    (document,) = gateway.documents()
    assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "paymaster"
    assert document["request_id"] == "r1"  # a property, in no dimension set
    assert {dims for _, dims in series(document)} == {REQUEST_DIMENSIONS}
    assert {one.dimensions["model"] for one in by_request(document).values()} == {"primary"}
    assert by_request(document)["Requests"].dimensions == {
        "team": "search",
        "app": "ranker",
        "model": "primary",
        "env": "prod",
    }
    # 4 output tokens at 1 µUSD; input and cache reads at primary's input price, 0.
    assert values(document) == {
        "Requests": ("Count", 1),
        "InputTokens": ("Count", 30),
        "OutputTokens": ("Count", 4),
        "CacheReadTokens": ("Count", 10),
        "CostMicroUsd": ("None", 4),
        "Latency": ("Milliseconds", 250),
    }


def test_a_streamed_chat_request_adds_its_time_to_first_token_once_the_stream_is_settled() -> None:
    gateway = Gateway()
    exchange = gateway.chat.plan(SEARCH, request("primary", max_tokens=50), "r1")
    events = gateway.chat.stream(exchange)

    *_, bill = list(_until_bill(events))
    assert isinstance(bill, Bill)
    assert gateway.documents() == []  # the bill is out; the stream is not over yet
    assert next(events, None) is None

    (document,) = gateway.documents()
    assert values(document) == {
        "Requests": ("Count", 1),
        "InputTokens": ("Count", 30),
        "OutputTokens": ("Count", 2),
        "CostMicroUsd": ("None", 2),
        "Latency": ("Milliseconds", 200),
        "TimeToFirstToken": ("Milliseconds", 120),
    }


def test_a_streamed_answer_s_metrics_are_written_before_its_usage_chunk_and_done() -> None:
    gateway = Gateway()
    exchange = gateway.chat.plan(SEARCH, request("primary", max_tokens=50), "r1")
    lines = openai_wire.chunks(
        openai_wire.Envelope("chatcmpl-r1", "primary", 0), gateway.chat.stream(exchange), include_usage=True
    )

    written_before = [(line, len(gateway.documents())) for line in lines]

    usage_chunk, trailer, done = written_before[-3:]
    assert done == (b"data: [DONE]\n\n", 1)
    assert b'"choices":[]' in usage_chunk[0]
    assert usage_chunk[1] == trailer[1] == 1  # the line was out before the usage and the bill trailer
    assert written_before[1][1] == 0  # the first token went out before anything was settled


def _until_bill(events: Generator[StreamEvent | Bill, None, None]) -> Generator[StreamEvent | Bill, None, None]:
    for event in events:
        yield event
        if isinstance(event, Bill):
            return


def test_a_request_a_rule_refuses_counts_a_denial_by_the_rule_s_name_and_no_cost() -> None:
    gateway = Gateway(limit="0.000001")

    with pytest.raises(BudgetExhaustedError):
        gateway.answer(max_tokens=10)

    (document,) = gateway.documents()
    assert document["request_id"] == "r1"
    assert values(document) == {"Requests": ("Count", 1), "Denials": ("Count", 1)}
    by_reason = series(document)[("Denials", ("team", "env", "reason"))]
    assert by_reason == Series("Count", {"team": "search", "env": "prod", "reason": "budget"}, [1])
    assert set(series(document)) == {
        ("Requests", REQUEST_DIMENSIONS),
        ("Denials", REQUEST_DIMENSIONS),
        ("Denials", ("team", "env", "reason")),
    }


def test_a_closed_rule_without_its_store_counts_a_denial_for_the_store() -> None:
    gateway = Gateway()
    gateway.store.fail_next("reserve", StoreUnavailableError("the store is down"))

    with pytest.raises(StoreUnavailableError):
        gateway.answer()

    (document,) = gateway.documents()
    assert document["reason"] == "counter_store_unavailable"
    assert values(document) == {"Requests": ("Count", 1), "Denials": ("Count", 1)}


def test_a_downgraded_request_counts_under_the_cheaper_model_it_was_served_as() -> None:
    """A $0.001 budget, downgrading at 80 %: 700 µUSD held, 200 more of primary pass 800."""
    gateway = Gateway(actions=[{"at": 80, "downgrade_to": "cheap"}])
    gateway.admission.admit(SEARCH, request("primary", max_tokens=700), "held")

    gateway.answer(max_tokens=200)

    (document,) = gateway.documents()
    assert document["model"] == "cheap"
    assert values(document)["Downgrades"] == ("Count", 1)
    assert values(document)["CostMicroUsd"] == ("None", 2)  # 4 output tokens at 0.5 µUSD


def test_a_fallback_counts_once_and_each_failed_call_against_its_provider() -> None:
    """primary's two OpenAI deployments fail; its fallback `backup` (Anthropic) answers."""
    gateway = Gateway(faults={"p-first": [ProviderError("down", status=503)], "p-second": [ProviderError("down")]})

    gateway.answer()

    main, by_provider = gateway.documents()
    assert main["model"] == "backup"
    assert values(main)["Fallbacks"] == ("Count", 1)
    assert values(main)["ProviderErrors"] == ("Count", 2)
    assert values(main)["CostMicroUsd"] == ("None", 8)  # 4 output tokens at backup's 2 µUSD
    assert series(by_provider) == {("ProviderErrors", ("provider",)): Series("Count", {"provider": "openai"}, [2])}


def test_a_request_every_deployment_failed_counts_each_provider_on_its_own_line_and_costs_nothing() -> None:
    gateway = Gateway(
        faults={
            "p-first": [ProviderError("down", status=503)],
            "p-second": [ProviderError("down", status=502)],
            "b-only": [ProviderError("overloaded", status=529)],
        }
    )

    with pytest.raises(ProviderError):
        gateway.answer()

    main, *by_provider = gateway.documents()
    assert {doc["request_id"] for doc in [main, *by_provider]} == {"r1"}
    assert values(main) == {
        "Requests": ("Count", 1),
        "InputTokens": ("Count", 0),
        "OutputTokens": ("Count", 0),
        "CostMicroUsd": ("None", 0),
        "Fallbacks": ("Count", 1),
        "ProviderErrors": ("Count", 3),
        "Latency": ("Milliseconds", 0),
    }
    assert [(doc["provider"], doc["ProviderErrors"]) for doc in by_provider] == [("openai", [2]), ("anthropic", [1])]


def test_a_request_the_provider_rejects_as_invalid_is_not_the_provider_s_error() -> None:
    gateway = Gateway(faults={"p-first": [ProviderRejectedError("bad tool schema", status=400)]})

    with pytest.raises(ProviderRejectedError):
        gateway.answer()

    (document,) = gateway.documents()
    assert "ProviderErrors" not in values(document)


def test_a_stream_the_provider_breaks_after_its_first_token_counts_a_provider_error() -> None:
    gateway = Gateway()
    gateway.providers.cut_after_first_token = ProviderError("connection reset", accepted=True)
    exchange = gateway.chat.plan(SEARCH, request("primary", max_tokens=50), "r1")

    with pytest.raises(ProviderError):
        list(gateway.chat.stream(exchange))

    main, by_provider = gateway.documents()
    assert values(main)["ProviderErrors"] == ("Count", 1)
    assert values(main)["TimeToFirstToken"] == ("Milliseconds", 120)
    assert by_provider["provider"] == "openai"


def test_an_embeddings_request_counts_its_input_tokens_and_cost() -> None:
    gateway = Gateway()

    gateway.embeddings.embed(SEARCH, EmbeddingRequest(model="embed", input="hello world"), "e1")

    (document,) = gateway.documents()
    assert document["model"] == "embed"
    assert values(document) == {
        "Requests": ("Count", 1),
        "InputTokens": ("Count", 7),
        "OutputTokens": ("Count", 0),
        "CostMicroUsd": ("None", 7),
        "Latency": ("Milliseconds", 40),
    }


def test_past_the_policy_s_stream_budget_app_collapses_for_every_request() -> None:
    """The policy yields 12 metrics × 3 apps × 14 models + 3 envs × 2 denial reasons + 4
    providers = 514 streams; collapsing `app` leaves as many (each app has an env of its own),
    so `model` collapses too: 12 × 3 + 6 + 4 = 46."""
    gateway = Gateway(max_streams=513)

    gateway.answer()

    (document,) = gateway.documents()
    assert by_request(document)["Requests"].dimensions == {
        "team": "search",
        "app": "_all",
        "model": "_all",
        "env": "prod",
    }


def test_a_policy_past_its_stream_budget_is_logged_at_start_with_what_collapsed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    Gateway(max_streams=513)
    Gateway(max_streams=40)

    collapsed = [record for record in caplog.records if "collapsed" in record.getMessage()]
    assert [(r.levelname, r.streams, r.uncollapsed, r.budget) for r in collapsed] == [  # type: ignore[attr-defined]
        ("WARNING", 46, 514, 513),
        ("ERROR", 46, 514, 40),
    ]


def test_concurrent_requests_write_whole_lines_with_their_own_values() -> None:
    gateway = Gateway()
    requests = [
        RequestMetrics("search", "ranker", "prod", "primary", Bill(Usage(i, 0), i, "provider_usage"))
        for i in range(400)
    ]

    def emit_each(part: list[RequestMetrics]) -> None:
        for one in part:
            gateway.metrics.emit(one)

    threads = [threading.Thread(target=emit_each, args=(requests[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    written = gateway.documents()
    assert sorted(doc["InputTokens"][0] for doc in written) == list(range(400))
    assert all(doc["InputTokens"] == doc["CostMicroUsd"] for doc in written)


class Unserializable(EmfMetrics):
    def documents(self, request: RequestMetrics) -> list[dict[str, Any]]:
        raise ValueError("a metric value Powertools refuses")


def test_a_line_that_cannot_be_made_is_logged_and_the_answered_request_stands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Metrics are emitted in `serve`'s `finally`: a line Powertools refuses must not turn a
    settled, answered call into a 500."""
    gateway = Gateway()
    out = io.StringIO()
    gateway.metrics = Unserializable(metric_dimensions(gateway.policy), names.METRICS_NAMESPACE, out)
    router = Router(
        gateway.policy, gateway.admission, metrics=gateway.metrics, draw=lambda: 0.0, monotonic=gateway.clock
    )
    chat = ChatService(
        gateway.policy, dict.fromkeys(gateway.policy.providers, gateway.providers), router, monotonic=gateway.clock
    )

    exchange, _, _ = chat.answer(SEARCH, request("primary", max_tokens=50), "r1")

    assert exchange.bill is not None
    assert exchange.bill.cost == 4
    assert out.getvalue() == ""
    assert [record.getMessage() for record in caplog.records if record.levelname == "ERROR"] == [
        "metrics not written: the request's line could not be made"
    ]
