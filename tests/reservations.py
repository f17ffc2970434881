"""Reservations and settlements for counter-store tests, with holds planned as admission plans them."""

from datetime import UTC, datetime, timedelta
from typing import Any

from paymaster.domain.limits import Hold, RequestFacts, plan_holds
from paymaster.ports import CounterChange, Reservation, Settlement
from tests.policies import policy_with

NOW = datetime(2026, 11, 29, 18, 25, tzinfo=UTC)
FACTS = RequestFacts(team="search", app="ranker", env="prod", model="fixed-cost")
BUDGET = {"name": "budget", "limit": "0.000100", "unit": "cost_per_month"}  # 100 µUSD
RPM = {"name": "rpm", "limit": 5, "unit": "requests_per_minute"}


def holds(*rules: dict[str, Any], output_tokens: int = 10) -> tuple[Hold, ...]:
    """One hold per rule for a `fixed-cost` request: `output_tokens` µUSD on a budget, 1 on a rate."""
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


def release(request_id: str, held: tuple[Hold, ...], *, fence: bool = False) -> Settlement:
    """Every hold returned, as admission releases a request the provider never saw."""
    changes = tuple(CounterChange(hold.pk, hold.sk, -hold.amount, 0) for hold in held)
    return Settlement(request_id, changes, "released", 0, None, fence=fence)
