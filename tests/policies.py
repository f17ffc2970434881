"""Policies for tests: the demo's teams, providers and models, with the rules a test needs."""

from pathlib import Path
from typing import Any

import yaml

from paymaster.domain.policy import Policy

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "policy" / "demo.yaml"

# One µUSD per output token and nothing for input: a request's cost is exactly its output tokens,
# so the fake provider's answer (max_tokens words when the prompt is longer) costs what it reserved.
FIXED_COST_MODEL = {
    "deployments": [{"provider": "openai", "model": "fixed-cost"}],
    "max_output_tokens": 1000,
    "context_window": 8000,
    "price": {"input": 0, "output": 1_000_000, "source": "test", "as_of": "2026-11-29"},
}


def demo_raw() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(DEMO.read_text())
    return raw


def policy_with(
    rules: list[dict[str, Any]], *, models: dict[str, Any] | None = None, audit: dict[str, dict[str, Any]] | None = None
) -> Policy:
    """The demo's teams, free to use every model, under `rules`; `audit`: a team's `audit` block by team."""
    raw = demo_raw()
    raw["rules"] = rules
    raw["models"] |= {"fixed-cost": FIXED_COST_MODEL} | (models or {})
    for team in raw["teams"].values():
        team.pop("models", None)
    for team_name, block in (audit or {}).items():
        raw["teams"][team_name]["audit"] = block
    return Policy.model_validate(raw)
