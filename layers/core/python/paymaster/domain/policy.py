"""The policy file's model: teams and their IAM principals, providers, virtual models, prices.

Validation happens once, when the file is loaded (at cold start, or by `paymaster policy
validate`); everything after that trusts the model. Unknown keys are errors, so a typo in a cap
never silently disables it.
"""

from datetime import date
from functools import cached_property
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from paymaster.domain.errors import ModelNotFoundError, UnknownPrincipalError
from paymaster.domain.identity import Caller, PrincipalKey, principal_key

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
    """Seconds; all below the Lambda timeout so the gateway always answers itself."""

    connect_s: float = Field(default=3.0, gt=0)
    first_byte_s: float = Field(default=60.0, gt=0)
    total_s: float = Field(default=240.0, gt=0)


class Provider(_Strict):
    kind: Literal["openai", "bedrock"]
    base_url: str | None = None  # openai: the API root, e.g. https://api.openai.com/v1
    region: str | None = None  # bedrock
    api_key_secret: str | None = None  # Secrets Manager secret name holding the API key
    timeouts: Timeouts = Timeouts()

    @model_validator(mode="after")
    def _endpoint_given(self) -> Self:
        if self.kind == "bedrock" and not self.region:
            raise ValueError("a bedrock provider needs `region`")
        if self.kind == "openai" and not self.base_url:
            raise ValueError("an openai provider needs `base_url`")
        return self


class Deployment(_Strict):
    provider: Name  # a key of `providers`
    model: str = Field(min_length=1)  # the provider's own model id


class Model(_Strict):
    deployments: list[Deployment] = Field(min_length=1)
    price: Price
    max_output_tokens: int = Field(gt=0)
    context_window: int = Field(gt=0)
    tokenizer: Literal["cl100k_base", "o200k_base"] = "cl100k_base"


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


class Team(_Strict):
    apps: dict[Name, App] = Field(min_length=1)
    models: list[Name] | None = None  # the virtual models this team may use; None = all


class Policy(_Strict):
    version: Literal[1]
    providers: dict[Name, Provider] = Field(min_length=1)
    models: dict[Name, Model] = Field(min_length=1)
    teams: dict[Name, Team] = Field(min_length=1)

    @model_validator(mode="after")
    def _references_resolve(self) -> Self:
        for model_name, model in self.models.items():
            for deployment in model.deployments:
                if deployment.provider not in self.providers:
                    raise ValueError(f"model {model_name!r} names unknown provider {deployment.provider!r}")
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

    def model_for(self, team: str, name: str) -> Model:
        """The virtual model `name` if it exists and `team` may use it, else ModelNotFoundError."""
        if name not in self.models or name not in self.models_for(team):
            raise ModelNotFoundError(f"The model `{name}` does not exist or your team may not use it.", param="model")
        return self.models[name]
