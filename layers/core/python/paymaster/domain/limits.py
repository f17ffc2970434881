"""Which counters a request touches, how much it reserves on each, and why it may be refused.

Every matching rule applies. For each, the request reserves its *maximum* possible use in the
rule's unit before the provider is called:

    requests_*   1
    tokens_*     input tokens (an upper bound) + the output limit the gateway sends
    cost_*       that many tokens at the model's prices, in micro-USD, rounded up

and admission succeeds only if every counter stays within its cap (all or nothing). Settlement
replaces the reservation with the actual use. With that, the sum of actual use in a window never
passes the cap, however many requests race.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from paymaster import schema
from paymaster.domain.chat import Usage
from paymaster.domain.money import MicroUsd, format_usd, token_cost
from paymaster.domain.policy import Model, Rule, When
from paymaster.domain.windows import Window, window

# Below this many output tokens an answer is not worth giving: admission refuses instead of
# shrinking `max_tokens` further (a caller who asked for less gets at least what it asked for).
MIN_USEFUL_OUTPUT_TOKENS = 256

# How long a hold lives. Longer than any request can (Lambda's 15-minute maximum), so the sweeper
# never returns a hold that a running request will still settle.
RESERVATION_LIFETIME = timedelta(minutes=20)


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What rules match on. `user` and `metadata` are the caller's own claims, used for bucketing."""

    team: str
    app: str
    env: str
    model: str
    user: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    def value(self, dimension: str) -> str | None:
        return {"team": self.team, "app": self.app, "env": self.env, "model": self.model, "user": self.user}[dimension]


def matches(when: When, facts: RequestFacts) -> bool:
    for dimension in ("team", "app", "user", "model", "env"):
        allowed: list[str] | None = getattr(when, dimension)
        if allowed is not None and facts.value(dimension) not in allowed:
            return False
    return all(facts.metadata.get(key) in allowed for key, allowed in when.metadata.items())


def bucket(rule: Rule, facts: RequestFacts) -> str:
    """`team=search/user=alice` for `per: [team, user]`; `*` for one shared bucket.

    A request without a user shares the `user=-` bucket of its other dimensions.
    """
    if not rule.per:
        return "*"
    return "/".join(f"{dimension}={facts.value(dimension) or '-'}" for dimension in rule.per)


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation on one counter: `amount` in the rule's unit, admitted while
    `committed + amount <= cap`. `cap` None means count without checking (a shadow rule that
    would have refused)."""

    rule: Rule
    bucket: str
    window: Window
    amount: int
    cap: int | None

    @property
    def pk(self) -> str:
        return schema.counter_pk(self.rule.name, self.bucket)

    @property
    def sk(self) -> str:
        return self.window.id


def max_cost(model: Model, input_tokens: int, output_tokens: int) -> MicroUsd:
    """The most `input_tokens` + `output_tokens` can cost on `model`.

    Input is priced at the dearer of the input and cache-write prices, because the provider may
    bill part of the prompt as cache writes (Anthropic: 1.25 × input).
    """
    price = model.price
    dearest_input = max(price.input, price.cache_write or 0)
    return token_cost(Usage(input_tokens, output_tokens), input_price=dearest_input, output_price=price.output)


def actual_cost(model: Model, usage: Usage) -> MicroUsd:
    price = model.price
    return token_cost(
        usage,
        input_price=price.input,
        output_price=price.output,
        cache_read_price=price.cache_read,
        cache_write_price=price.cache_write,
    )


def reserve_amount(rule: Rule, model: Model, input_tokens: int, output_tokens: int) -> int:
    if rule.measure == "requests":
        return 1
    if rule.measure == "tokens":
        return input_tokens + output_tokens
    return max_cost(model, input_tokens, output_tokens)


def actual_amount(rule: Rule, model: Model, usage: Usage) -> int:
    if rule.measure == "requests":
        return 1
    if rule.measure == "tokens":
        return usage.input_tokens + usage.output_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    return actual_cost(model, usage)


def downgrade_threshold(rule: Rule) -> tuple[int, str] | None:
    """(counter level, model) of the rule's earliest downgrade action, if any."""
    downgrades = sorted((action.at, action.downgrade_to) for action in rule.actions if action.downgrade_to)
    if not downgrades:
        return None
    at, model = downgrades[0]
    assert model is not None
    return rule.limit_units * at // 100, model


def plan_holds(
    rules: Sequence[Rule],
    facts: RequestFacts,
    model: Model,
    *,
    input_tokens: int,
    output_tokens: int,
    now: datetime,
    check_downgrades: bool,
    unchecked: frozenset[str] = frozenset(),
) -> list[Hold]:
    """One hold per matching rule. With `check_downgrades`, a budget with a downgrade action is
    capped at its downgrade threshold, so a refusal there means "use the cheaper model".
    Rules named in `unchecked` (shadow rules that would refuse) are counted without a cap."""
    holds = []
    for rule in rules:
        if not matches(rule.when, facts):
            continue
        cap: int | None = rule.cap
        threshold = downgrade_threshold(rule) if check_downgrades and rule.mode == "enforce" else None
        if threshold is not None:
            cap = min(rule.cap, threshold[0])
        if rule.name in unchecked:
            cap = None
        holds.append(
            Hold(
                rule=rule,
                bucket=bucket(rule, facts),
                window=window(rule.period, rule.zone, now),
                amount=reserve_amount(rule, model, input_tokens, output_tokens),
                cap=cap,
            )
        )
    return holds


@dataclass(frozen=True, slots=True)
class Refusal:
    """A hold that did not fit: `used` is the counter's committed value when it was checked."""

    hold: Hold
    used: int

    @property
    def rule(self) -> Rule:
        return self.hold.rule

    @property
    def kind(self) -> Literal["budget", "rate_limit"]:
        return "budget" if self.rule.is_budget else "rate_limit"

    @property
    def remaining(self) -> int:
        return max(0, self.rule.cap - self.used)


def tightest(refusals: Sequence[Refusal]) -> Refusal:
    """The refusal the caller is told about: the one that lasts longest (a spent monthly budget
    says more than a per-minute limit that resets in seconds); then the least remaining."""
    return max(refusals, key=lambda refusal: (refusal.hold.window.end, -refusal.remaining))


def affordable_output_tokens(refusals: Sequence[Refusal], model: Model, input_tokens: int) -> int:
    """The largest output limit every refused token or cost counter could still take."""
    affordable = model.max_output_tokens
    for refusal in refusals:
        room = refusal.remaining
        if refusal.rule.measure == "requests":
            return 0
        if refusal.rule.measure == "tokens":
            affordable = min(affordable, room - input_tokens)
            continue
        price = model.price
        input_part = input_tokens * max(price.input, price.cache_write or 0)
        budget = room * 1_000_000 - input_part
        if budget < 0:
            return 0
        if price.output:
            affordable = min(affordable, budget // price.output)
    return max(0, affordable)


def amount_text(rule: Rule, amount: int) -> str:
    """An amount in the rule's unit as people read it: USD for cost (`"12.5"`), a count otherwise."""
    return format_usd(amount) if rule.measure == "cost" else str(amount)
