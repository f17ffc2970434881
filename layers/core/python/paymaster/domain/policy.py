"""The policy file's model: teams and their IAM principals, providers, virtual models, prices.

Validation happens once, when the file is loaded (at cold start, or by `paymaster policy
validate`); everything after that trusts the model. Unknown keys are errors, so a typo in a cap
never silently disables it.
"""

from collections.abc import Collection, Mapping, Sequence, Set
from datetime import date, time
from decimal import Decimal
from functools import cached_property
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, EmailStr, Field, model_validator

from paymaster.domain.errors import InvalidRequestError, ModelNotFoundError, UnknownPrincipalError
from paymaster.domain.identity import Caller, PrincipalKey, principal_key
from paymaster.domain.money import usd
from paymaster.domain.windows import Period

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")]
MicroUsdPerMillionTokens = Annotated[int, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Strict):
    """Micro-USD per million tokens (1 USD = 1_000_000). Every model must have one.

    Example: $3 per million input tokens is `input: 3_000_000`.
    """

    input: MicroUsdPerMillionTokens
    output: MicroUsdPerMillionTokens
    cache_read: MicroUsdPerMillionTokens | None = None
    cache_write: MicroUsdPerMillionTokens | None = None
    source: str = Field(min_length=1, description="Where the price was read, e.g. the pricing page URL.")
    as_of: date


class Timeouts(_Strict):
    """Seconds; all below the Lambda timeout so the gateway always answers itself.

    `connect_s` to open a connection; `first_byte_s` for the answer to start, and for any pause
    inside a stream; `total_s` for the whole call, a stream's last byte included.
    """

    connect_s: float = Field(default=3.0, gt=0)
    first_byte_s: float = Field(default=60.0, gt=0)
    total_s: float = Field(default=240.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.connect_s <= self.total_s or not self.first_byte_s <= self.total_s:
            raise ValueError("`total_s` must be at least `connect_s` and `first_byte_s`")
        return self


class Provider(_Strict):
    kind: Literal["openai", "bedrock", "anthropic"]
    # openai: the API root, e.g. https://api.openai.com/v1; anthropic: without /v1, https://api.anthropic.com
    base_url: str | None = None
    region: str | None = None  # bedrock
    api_key_secret: str | None = None  # Secrets Manager secret name holding the API key
    timeouts: Timeouts = Timeouts()

    @model_validator(mode="after")
    def _endpoint_given(self) -> Self:
        if self.kind == "bedrock" and not self.region:
            raise ValueError("a bedrock provider needs `region`")
        if self.kind in ("openai", "anthropic") and not self.base_url:
            raise ValueError(f"an {self.kind} provider needs `base_url`")
        return self


class Deployment(_Strict):
    """One place a virtual model is served. Deployments of one model share its price.

    Requests go to the lowest `priority` first, spread across its deployments by `weight`
    (`weight: 0` drains a deployment); higher priorities serve only when every lower one failed.
    """

    provider: Name  # a key of `providers`
    model: str = Field(min_length=1)  # the provider's own model id
    weight: int = Field(default=1, ge=0)
    priority: int = Field(default=0, ge=0)

    @property
    def label(self) -> str:
        """What the `x-paymaster-deployment` header says: `<provider>/<model id>`."""
        return f"{self.provider}/{self.model}"


FallbackReason = Literal["throttled", "unavailable", "timeout"]
ModelKind = Literal["chat", "embeddings"]
EMBEDDING_PROVIDER_KINDS = frozenset({"openai", "bedrock"})  # Anthropic has no embeddings API


class Model(_Strict):
    """A virtual model: what callers name in `model`, served by its deployments.

    When a call fails for one of `fallback_on` before the provider accepted it, the next
    deployment is tried, then each model of `fallbacks` in order (their own deployments, price
    and limits; not their fallbacks). A fallback at another price reserves at that price first.
    """

    kind: ModelKind = "chat"
    deployments: list[Deployment] = Field(min_length=1)
    fallbacks: list[Name] = []
    fallback_on: list[FallbackReason] = ["throttled", "unavailable", "timeout"]
    price: Price
    max_output_tokens: int = Field(default=1, gt=0)  # chat models must say; embeddings produce none
    context_window: int = Field(gt=0)
    tokenizer: Literal["cl100k_base", "o200k_base"] = "cl100k_base"
    # tiktoken's count × this factor must be an upper bound of what the provider will count.
    # 1 for OpenAI models (same tokenizer); above 1 for others, whose tokenizers differ.
    input_token_factor: Decimal = Field(default=Decimal(1), ge=1, le=4)

    @model_validator(mode="before")
    @classmethod
    def _chat_output_declared(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("kind", "chat") == "chat" and "max_output_tokens" not in data:
            raise ValueError("a chat model needs `max_output_tokens`")
        return data

    @model_validator(mode="after")
    def _servable(self) -> Self:
        if not any(deployment.weight for deployment in self.deployments):
            raise ValueError("at least one deployment needs a weight above 0")
        if self.kind == "embeddings" and self.price.output:
            raise ValueError("an embeddings model produces no output tokens: its `price.output` is 0")
        return self


class Principal(_Strict):
    name: Name  # also the local AWS profile name
    arn: str

    @model_validator(mode="after")
    def _arn_is_a_principal(self) -> Self:
        principal_key(self.arn)
        return self

    @property
    def key(self) -> PrincipalKey:
        return principal_key(self.arn)


class App(_Strict):
    env: Name = "prod"
    principals: list[Principal] = Field(min_length=1)


# The prompt audit record is an item of the prompts table, written inside the settlement's
# transaction: at most 128 KiB of content keeps it far under DynamoDB's 400 KB item and its queued
# settlement under SQS's 256 KiB message (docs/LEDGER.md, "Prompt audit record").
MIN_AUDIT_BYTES = 1_024
MAX_AUDIT_BYTES = 131_072
# No longer than the ledger keeps the entry that says who called which model, when.
MAX_AUDIT_RETENTION_DAYS = 400


class Audit(_Strict):
    """What a team's calls leave beyond the ledger. Off unless the team opts in.

    `prompts: true` keeps, for each settled call, the request's messages and tools (an embedding's
    inputs) and the completion as delivered, in the prompts table: cut to `max_bytes` of UTF-8
    together, deleted `retention_days` after admission. Example: `audit: {prompts: true,
    max_bytes: 16384, retention_days: 30}` keeps at most 16 KiB of each call for a month.
    """

    prompts: bool = False
    max_bytes: int = Field(default=32_768, ge=MIN_AUDIT_BYTES, le=MAX_AUDIT_BYTES)
    retention_days: int = Field(default=30, ge=1, le=MAX_AUDIT_RETENTION_DAYS)


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name like Europe/Berlin)") from None
    return value


TimeZone = Annotated[str, BeforeValidator(_known_zone)]


class TeamAlerts(_Strict):
    """Who hears about a team's budgets, and when.

    `emails` subscribe to the team's SNS topic (each address confirms its subscription once, or
    receives nothing): budget alarms, forecasts and the daily digest. `time_zone` is the team's
    day and month for the digest and the month close (budgets keep their own `time_zone`).
    `digest_at` is the local time of the daily digest; `null` sends none. Example: `alerts:
    {emails: [lead@example.com], time_zone: Europe/Berlin, digest_at: "08:30"}`.
    """

    emails: list[EmailStr] = []
    time_zone: TimeZone = "UTC"
    digest_at: time | None = time(9, 0)

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


class Team(_Strict):
    apps: dict[Name, App] = Field(min_length=1)
    models: list[Name] | None = None  # the virtual models this team may use; None = all
    audit: Audit = Audit()
    alerts: TeamAlerts = TeamAlerts()


def _as_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


Values = Annotated[list[str], BeforeValidator(_as_list), Field(min_length=1)]

Unit = Literal[
    "requests_per_minute",
    "requests_per_hour",
    "requests_per_day",
    "tokens_per_minute",
    "tokens_per_hour",
    "tokens_per_day",
    "tokens_per_month",
    "cost_per_day",
    "cost_per_week",
    "cost_per_month",
]
Measure = Literal["requests", "tokens", "cost"]
Dimension = Literal["team", "app", "user", "model", "env"]


def unit_period(unit: Unit) -> Period:
    """The window a unit counts in: `cost_per_month` → `month`."""
    period = unit.rsplit("_", 1)[1]
    assert period in ("minute", "hour", "day", "week", "month")
    return period  # type: ignore[return-value]


BUDGET_UNITS = frozenset({"tokens_per_month", "cost_per_day", "cost_per_week", "cost_per_month"})


class When(_Strict):
    """Which requests a rule counts. Every key given must match (a list matches any of its values);
    an empty `when` matches every request. `metadata` keys come from `x-paymaster-meta-<key>`."""

    team: Values | None = None
    app: Values | None = None
    user: Values | None = None
    model: Values | None = None
    env: Values | None = None
    metadata: dict[str, Values] = {}

    def can_count(self, team: str, env: str, apps: Set[str]) -> bool:
        """Whether a rule with this `when` counts some request of `team` from one of `apps` (all
        in `env`); its other keys (user, model, metadata) can match any request."""
        return (
            (self.team is None or team in self.team)
            and (self.env is None or env in self.env)
            and (self.app is None or not apps.isdisjoint(self.app))
        )


class Action(_Strict):
    """One step of a budget's ladder, at a percentage of the limit."""

    at: int = Field(ge=1, le=100)
    alert: bool = False
    downgrade_to: Name | None = None
    block: bool = False

    @model_validator(mode="after")
    def _one_thing(self) -> Self:
        if sum((self.alert, self.downgrade_to is not None, self.block)) != 1:
            raise ValueError("an action does exactly one of: alert: true, downgrade_to: <model>, block: true")
        return self


class Rule(_Strict):
    """A limit on what the matching requests may use in each window.

    `limit` is USD for `cost_*` units (exact to the micro-dollar), a count otherwise. `per` splits
    the limit into one bucket per value of those dimensions (`per: [team, user]`: every user of
    every team gets the whole limit); without `per`, all matching requests share one bucket.
    A budget (`tokens_per_month`, `cost_*`) blocks at 100 % unless a `block` action says earlier.
    """

    name: Name
    when: When = When()
    limit: Decimal = Field(gt=0)
    unit: Unit
    per: list[Dimension] = []
    time_zone: TimeZone = "UTC"
    mode: Literal["enforce", "shadow"] = "enforce"
    on_store_error: Literal["closed", "open"] | None = None
    actions: list[Action] = []

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.measure != "cost" and self.limit != self.limit.to_integral_value():
            raise ValueError(f"a {self.unit} limit is a whole number")
        if self.measure == "cost":
            usd(self.limit)
        if self.actions and not self.is_budget:
            raise ValueError("actions (alerts, downgrades) apply to budgets: tokens_per_month and cost_* units")
        if sum(action.block for action in self.actions) > 1:
            raise ValueError("at most one block action")
        return self

    @cached_property
    def measure(self) -> Measure:
        measure = self.unit.split("_", 1)[0]
        assert measure in ("requests", "tokens", "cost")
        return measure  # type: ignore[return-value]

    @cached_property
    def period(self) -> Period:
        return unit_period(self.unit)

    @cached_property
    def is_budget(self) -> bool:
        return self.unit in BUDGET_UNITS

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @cached_property
    def limit_units(self) -> int:
        """The limit in counter units: micro-USD for cost, tokens or requests otherwise."""
        return int(usd(self.limit)) if self.measure == "cost" else int(self.limit)

    @cached_property
    def cap(self) -> int:
        """Where admission stops: the limit, or the earlier `block` action's share of it."""
        block_at = min((action.at for action in self.actions if action.block), default=100)
        return self.limit_units * block_at // 100

    @cached_property
    def fails_closed(self) -> bool:
        """Without the counter store: budgets refuse (503) unless told `open`; rate limits admit."""
        if self.on_store_error is not None:
            return self.on_store_error == "closed"
        return self.is_budget


# CloudWatch bills each metric stream ($0.30 a month at the first tier): 2,000 streams cost at
# most $600 a month, and only the streams that receive data are billed (docs/METRICS.md).
DEFAULT_MAX_METRIC_STREAMS = 2_000


class MetricsSettings(_Strict):
    """`max_streams`: the most CloudWatch metric streams the policy may yield; past it the `app`
    dimension collapses, then `model` (`domain.cardinality`)."""

    max_streams: int = Field(default=DEFAULT_MAX_METRIC_STREAMS, gt=0)


class Policy(_Strict):
    version: Literal[1]
    providers: dict[Name, Provider] = Field(min_length=1)
    models: dict[Name, Model] = Field(min_length=1)
    teams: dict[Name, Team] = Field(min_length=1)
    rules: list[Rule] = []
    metrics: MetricsSettings = MetricsSettings()

    @model_validator(mode="after")
    def _references_resolve(self) -> Self:
        for model_name, model in self.models.items():
            for deployment in model.deployments:
                if deployment.provider not in self.providers:
                    raise ValueError(f"model {model_name!r} names unknown provider {deployment.provider!r}")
            for fallback in model.fallbacks:
                if fallback not in self.models or fallback == model_name:
                    raise ValueError(f"model {model_name!r} falls back to unknown model {fallback!r}")
                if self.models[fallback].kind != model.kind:
                    raise ValueError(
                        f"model {model_name!r} ({model.kind}) falls back to {fallback!r}, not {model.kind}"
                    )
        for team_name, team in self.teams.items():
            for model_name in team.models or ():
                if model_name not in self.models:
                    raise ValueError(f"team {team_name!r} allows unknown model {model_name!r}")
        names: dict[str, str] = {}
        keys: dict[PrincipalKey, str] = {}
        for team_name, app_name, principal in self._principals():
            where = f"{team_name}/{app_name}"
            if principal.name in names:
                raise ValueError(f"principal name {principal.name!r} is used by {names[principal.name]} and {where}")
            if principal.key in keys:
                raise ValueError(f"IAM principal {principal.key} is claimed by {keys[principal.key]} and {where}")
            names[principal.name] = keys[principal.key] = where
        return self

    @model_validator(mode="after")
    def _rules_resolve(self) -> Self:
        # Two teams may each have an app of the same name: collect over (team, app), not by name.
        places = [
            (team_name, app_name, app.env)
            for team_name, team in self.teams.items()
            for app_name, app in team.apps.items()
        ]
        known = {
            "team": self.teams.keys(),
            "app": {app for _, app, _ in places},
            "model": self.models.keys(),
            "env": {env for _, _, env in places},
        }
        rule_names: set[str] = set()
        for rule in self.rules:
            if rule.name in rule_names:
                raise ValueError(f"two rules are named {rule.name!r}")
            rule_names.add(rule.name)
            _when_resolves(rule, known, places)
            for action in rule.actions:
                if action.downgrade_to is not None and action.downgrade_to not in self.models:
                    raise ValueError(f"rule {rule.name!r} downgrades to unknown model {action.downgrade_to!r}")
                if action.downgrade_to is not None and self.models[action.downgrade_to].kind != "chat":
                    raise ValueError(f"rule {rule.name!r} downgrades to {action.downgrade_to!r}, not a chat model")
        return self

    @model_validator(mode="after")
    def _embeddings_servable(self) -> Self:
        for model_name, model in self.models.items():
            if model.kind != "embeddings":
                continue
            for deployment in model.deployments:
                kind = self.providers[deployment.provider].kind
                if kind not in EMBEDDING_PROVIDER_KINDS:
                    raise ValueError(
                        f"embeddings model {model_name!r} is deployed on {deployment.provider!r}, a {kind} provider, "
                        f"which has no embeddings API (use {' or '.join(sorted(EMBEDDING_PROVIDER_KINDS))})"
                    )
        return self

    def _principals(self) -> list[tuple[str, str, Principal]]:
        return [
            (team_name, app_name, principal)
            for team_name, team in self.teams.items()
            for app_name, app in team.apps.items()
            for principal in app.principals
        ]

    @cached_property
    def _callers(self) -> dict[PrincipalKey, tuple[str, str, str, str]]:
        return {
            principal.key: (team_name, app_name, self.teams[team_name].apps[app_name].env, principal.name)
            for team_name, app_name, principal in self._principals()
        }

    def caller(self, arn: str) -> Caller:
        """The team, app and env that claim this IAM principal, or UnknownPrincipalError."""
        key = principal_key(arn)
        try:
            team, app, env, name = self._callers[key]
        except KeyError:
            raise UnknownPrincipalError(f"no team in the policy claims the IAM principal {key}") from None
        return Caller(team=team, app=app, env=env, principal=name, arn=arn)

    def principals(self) -> list[Principal]:
        return [principal for _, _, principal in self._principals()]

    def models_for(self, team: str) -> list[str]:
        allowed = self.teams[team].models
        return list(self.models) if allowed is None else list(allowed)

    def model_for(self, team: str, name: str, kind: ModelKind = "chat") -> Model:
        """The virtual model `name` if it exists, is a `kind` model and `team` may use it; else
        ModelNotFoundError (unknown or not allowed) or InvalidRequestError (the wrong kind)."""
        if name not in self.models or name not in self.models_for(team):
            raise ModelNotFoundError(f"The model `{name}` does not exist or your team may not use it.", param="model")
        model = self.models[name]
        if model.kind != kind:
            raise InvalidRequestError(
                f"The model `{name}` is a{'n' if model.kind == 'embeddings' else ''} {model.kind} model; "
                f"this endpoint serves {kind} models.",
                param="model",
            )
        return model


def _when_resolves(rule: Rule, known: Mapping[str, Collection[str]], places: Sequence[tuple[str, str, str]]) -> None:
    """A rule whose `when` names a team, app, model or env the policy does not have (`known`), or
    whose team, app and env no app of the policy has together (`places`: team, app, env), would
    never count a request: a typo that silently lifts a cap. Refused instead."""
    for dimension, values in known.items():
        unknown = [value for value in getattr(rule.when, dimension) or () if value not in values]
        if unknown:
            raise ValueError(
                f"rule {rule.name!r} counts {dimension} {', '.join(map(repr, unknown))}, which the policy does not "
                f"have, so it would never apply (the policy's: {', '.join(sorted(values))})"
            )
    if not any(rule.when.can_count(team, env, {app}) for team, app, env in places):
        raise ValueError(f"rule {rule.name!r} counts no app of the policy (its team, app and env exclude each other)")
