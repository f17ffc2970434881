"""Settings, read from the environment once at cold start and validated there."""

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from paymaster import names

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    policy_file: Path
    counters_table: str = Field(min_length=1)
    # The gateway reads the ledger's rollups for GET /v1/usage (and must be given it); the
    # settlement-retry function, which shares these settings, reads no ledger.
    ledger_table: str | None = Field(default=None, min_length=1)
    # Where settlements put the prompt audit records of teams that opt in; the gateway refuses to
    # start without it when the policy has such a team (composition.build_gateway).
    prompts_table: str | None = Field(default=None, min_length=1)
    # Settlements the counter store could not take now wait here for the settlement-retry function.
    settlement_queue_url: str = Field(min_length=1)
    # paymaster's EventBridge bus; None (tests, a gateway without one) publishes nothing.
    event_bus: str | None = Field(default=None, min_length=1)
    identity: Literal["request-context", "sigv4"] = "request-context"
    local_principals: Path | None = None
    region: str = names.LOCAL_REGION
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, gt=0)
    # In Lambda an execution environment serves one request at a time (set by the CDK app).
    one_request_at_a_time: bool = False
    # Local stack only: send a provider's traffic to a fake instead of its real endpoint.
    provider_endpoints: dict[str, str] = {}
    # Seconds to wait for the counter store's answer. DynamoDB answers in milliseconds, so a long
    # wait means trouble and the rule's on_store_error decides; the local stand-in serialises every
    # request, so under load its answers queue and the local stack waits longer.
    store_timeout_s: float = Field(default=2.0, gt=0)
    # The CloudWatch namespace of the gateway's metrics (EMF on stdout, docs/METRICS.md).
    metrics_namespace: str = Field(default=names.METRICS_NAMESPACE, min_length=1, max_length=255)

    @model_validator(mode="after")
    def _local_identity_has_credentials(self) -> Self:
        if self.identity == "sigv4" and self.local_principals is None:
            raise ValueError(f"{names.ENV_IDENTITY}=sigv4 needs {names.ENV_LOCAL_PRINCIPALS}")
        return self

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Self:
        raw: dict[str, object] = {
            "policy_file": environ.get(names.ENV_POLICY_FILE),
            "counters_table": environ.get(names.ENV_COUNTERS_TABLE),
            "ledger_table": environ.get(names.ENV_LEDGER_TABLE) or None,
            "prompts_table": environ.get(names.ENV_PROMPTS_TABLE) or None,
            "settlement_queue_url": environ.get(names.ENV_SETTLEMENT_QUEUE_URL),
            "event_bus": environ.get(names.ENV_EVENT_BUS) or None,
            "identity": environ.get(names.ENV_IDENTITY),
            "local_principals": environ.get(names.ENV_LOCAL_PRINCIPALS),
            "region": environ.get(names.ENV_REGION),
            "max_body_bytes": environ.get(names.ENV_MAX_BODY_BYTES),
            "one_request_at_a_time": environ.get(names.ENV_ONE_REQUEST_AT_A_TIME),
            "provider_endpoints": json.loads(environ.get(names.ENV_PROVIDER_ENDPOINTS) or "null"),
            "store_timeout_s": environ.get(names.ENV_STORE_TIMEOUT_S),
            "metrics_namespace": environ.get(names.ENV_METRICS_NAMESPACE),
        }
        return cls.model_validate({key: value for key, value in raw.items() if value is not None})


class LedgerSettings(BaseModel):
    """What the ledger functions read at cold start: the table they write and the bus they publish
    to. They read the counters only through their stream, which the event source delivers. The
    policy: the ledger function checks each counter's spend against its rule's alert thresholds
    (`composition.threshold_watch` refuses to start without it); the denials ledger needs none.
    The budget-alarm function reads the same three (and `NotifierSettings`)."""

    model_config = ConfigDict(frozen=True)

    ledger_table: str = Field(min_length=1)
    # paymaster's EventBridge bus; None (tests, a stack without one) publishes nothing.
    event_bus: str | None = Field(default=None, min_length=1)
    policy_file: Path | None = None
    region: str = names.LOCAL_REGION

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Self:
        raw = {
            "ledger_table": environ.get(names.ENV_LEDGER_TABLE),
            "event_bus": environ.get(names.ENV_EVENT_BUS) or None,
            "policy_file": environ.get(names.ENV_POLICY_FILE) or None,
            "region": environ.get(names.ENV_REGION),
        }
        return cls.model_validate({key: value for key, value in raw.items() if value is not None})


class ScheduleSettings(BaseModel):
    """What the forecast, digest and month-close functions read at cold start: the policy (its
    teams, budgets and alerts), the counters they read, the ledger they read and write reports
    and notice markers in, and the bus a month close publishes to. Their notices go to the
    teams' topics (`composition.notifier`, `NotifierSettings`)."""

    model_config = ConfigDict(frozen=True)

    policy_file: Path
    counters_table: str = Field(min_length=1)
    ledger_table: str = Field(min_length=1)
    event_bus: str | None = Field(default=None, min_length=1)
    region: str = names.LOCAL_REGION

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Self:
        raw = {
            "policy_file": environ.get(names.ENV_POLICY_FILE),
            "counters_table": environ.get(names.ENV_COUNTERS_TABLE),
            "ledger_table": environ.get(names.ENV_LEDGER_TABLE),
            "event_bus": environ.get(names.ENV_EVENT_BUS) or None,
            "region": environ.get(names.ENV_REGION),
        }
        return cls.model_validate({key: value for key, value in raw.items() if value is not None})


class NotifierSettings(BaseModel):
    """What a function that notifies teams reads at cold start: where the teams' topics are
    (`names.ENV_ALERT_TOPIC_ARN_PREFIX`, e.g. `arn:aws:sns:eu-west-1:123456789012:paymaster-alerts-`)."""

    model_config = ConfigDict(frozen=True)

    topic_arn_prefix: str = Field(pattern=r"^arn:[a-z-]+:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]*$")
    region: str = names.LOCAL_REGION

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Self:
        raw = {
            "topic_arn_prefix": environ.get(names.ENV_ALERT_TOPIC_ARN_PREFIX),
            "region": environ.get(names.ENV_REGION),
        }
        return cls.model_validate({key: value for key, value in raw.items() if value is not None})
