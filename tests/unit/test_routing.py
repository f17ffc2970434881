"""Which deployments serve a virtual model, in which order, and which failures move on."""

import random
from collections import Counter
from collections.abc import Iterator
from itertools import cycle
from typing import Any

import pytest
from pydantic import ValidationError

from paymaster.domain.errors import (
    ProviderError,
    ProviderRejectedError,
    ProviderResponseError,
    ProviderThrottledError,
    ProviderTimeoutError,
)
from paymaster.domain.policy import Model, Policy
from paymaster.domain.routing import deployment_order, failure_reason, may_fall_back, route
from tests.policies import FIXED_COST_MODEL, demo_raw


def model(deployments: list[dict[str, Any]], **extra: Any) -> Model:
    return Model.model_validate({**FIXED_COST_MODEL, "deployments": deployments, **extra})


def draws(*values: float) -> Iterator[float]:
    return cycle(values)


def test_lowest_priority_first_then_weighted_within_a_priority() -> None:
    chosen = model(
        [
            {"provider": "openai", "model": "a", "weight": 3},
            {"provider": "openai", "model": "b", "weight": 1},
            {"provider": "openai", "model": "c", "priority": 1},
        ]
    )
    # draw × total weight: 0.80 × 4 = 3.2 falls past a (3) into b; then a is all that is left.
    values = draws(0.80)
    assert [d.model for d in deployment_order(chosen, lambda: next(values))] == ["b", "a", "c"]
    values = draws(0.10)
    assert [d.model for d in deployment_order(chosen, lambda: next(values))] == ["a", "b", "c"]


def test_weights_spread_first_choices_in_proportion() -> None:
    rng = random.Random(7)
    chosen = model([{"provider": "openai", "model": "a", "weight": 3}, {"provider": "openai", "model": "b"}])
    firsts = Counter(deployment_order(chosen, rng.random)[0].model for _ in range(4000))
    assert 0.72 < firsts["a"] / 4000 < 0.78


def test_a_drained_deployment_is_never_tried() -> None:
    chosen = model([{"provider": "openai", "model": "a"}, {"provider": "openai", "model": "b", "weight": 0}])
    assert [d.model for d in deployment_order(chosen, lambda: 0.99)] == ["a"]


def test_a_model_with_every_deployment_drained_is_invalid() -> None:
    with pytest.raises(ValidationError, match="weight above 0"):
        model([{"provider": "openai", "model": "a", "weight": 0}])


def policy(models: dict[str, Any]) -> Policy:
    raw = demo_raw()
    raw["models"] |= models
    raw["rules"] = []
    return Policy.model_validate(raw)


def test_route_is_the_model_s_deployments_then_each_fallback_s_not_theirs() -> None:
    models = {
        "one": {**FIXED_COST_MODEL, "fallbacks": ["two"]},
        "two": {**FIXED_COST_MODEL, "deployments": [{"provider": "anthropic", "model": "t"}], "fallbacks": ["three"]},
        "three": {**FIXED_COST_MODEL, "deployments": [{"provider": "openai", "model": "never"}]},
    }
    hops = route(policy(models), "one", lambda: 0.0)
    assert [(hop.model_name, hop.deployment.label) for hop in hops] == [
        ("one", "openai/fixed-cost"),
        ("two", "anthropic/t"),
    ]


@pytest.mark.parametrize(
    ("fallbacks", "message"),
    [(["nope"], "falls back to unknown model 'nope'"), (["one"], "falls back to unknown model 'one'")],
)
def test_fallbacks_must_name_another_model(fallbacks: list[str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        policy({"one": {**FIXED_COST_MODEL, "fallbacks": fallbacks}})


def test_a_chat_model_cannot_fall_back_to_an_embeddings_model() -> None:
    embeddings = {
        "kind": "embeddings",
        "deployments": [{"provider": "openai", "model": "text-embedding-3-small"}],
        "context_window": 8191,
        "price": {"input": 20000, "output": 0, "source": "test", "as_of": "2026-11-29"},
    }
    with pytest.raises(ValidationError, match="not chat"):
        policy({"vectors": embeddings, "one": {**FIXED_COST_MODEL, "fallbacks": ["vectors"]}})


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ProviderThrottledError("slow down"), "throttled"),
        (ProviderError("429 from a server we do not know", status=429), "throttled"),
        (ProviderError("internal", status=500), "unavailable"),
        (ProviderError("connection refused"), "unavailable"),
        (ProviderTimeoutError("no first byte"), "timeout"),
        (ProviderRejectedError("bad request", status=400), None),
        (ProviderResponseError("stream broke", status=200), None),
        (ProviderTimeoutError("stalled mid-stream", accepted=True), None),
    ],
)
def test_failure_reasons(error: ProviderError, reason: str | None) -> None:
    assert failure_reason(error) == reason


def test_fallback_on_limits_which_failures_move_on() -> None:
    only_timeouts = model([{"provider": "openai", "model": "a"}], fallback_on=["timeout"])
    assert may_fall_back(ProviderTimeoutError("slow"), only_timeouts)
    assert not may_fall_back(ProviderThrottledError("429"), only_timeouts)
