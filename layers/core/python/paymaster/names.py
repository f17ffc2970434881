"""Every name paymaster shares between the code, the CDK app and the tests.

Tables, attributes, environment variables, headers and event names are defined here once;
adapters, constructs (`infra/`), the local stack and test fixtures import them.
"""

import hashlib
import re
from typing import Final

# DynamoDB tables and items: `paymaster.schema`.

# EventBridge.
EVENT_SOURCE: Final = "paymaster"
COST_RECORDED: Final = "CostRecorded"
BUDGET_THRESHOLD_CROSSED: Final = "BudgetThresholdCrossed"
REQUEST_DENIED: Final = "RequestDenied"
RESERVATION_EXPIRED: Final = "ReservationExpired"
MONTH_CLOSED: Final = "MonthClosed"

# Environment variables read by the settings at cold start.
ENV_COUNTERS_TABLE: Final = "PAYMASTER_COUNTERS_TABLE"
ENV_LEDGER_TABLE: Final = "PAYMASTER_LEDGER_TABLE"
ENV_PROMPTS_TABLE: Final = "PAYMASTER_PROMPTS_TABLE"  # where settlements put prompt audit records
ENV_SETTLEMENT_QUEUE_URL: Final = "PAYMASTER_SETTLEMENT_QUEUE_URL"
ENV_EVENT_BUS: Final = "PAYMASTER_EVENT_BUS"
ENV_EVENTS_QUEUE_URL: Final = "PAYMASTER_EVENTS_QUEUE_URL"  # what `paymaster events tail` reads
ENV_POLICY_FILE: Final = "PAYMASTER_POLICY_FILE"
ENV_IDENTITY: Final = "PAYMASTER_IDENTITY"  # "request-context" (AWS) or "sigv4" (local)
ENV_LOCAL_PRINCIPALS: Final = "PAYMASTER_LOCAL_PRINCIPALS"
ENV_REGION: Final = "AWS_REGION"
ENV_TIKTOKEN_DIR: Final = "PAYMASTER_TIKTOKEN_DIR"
ENV_MAX_BODY_BYTES: Final = "PAYMASTER_MAX_BODY_BYTES"
ENV_ONE_REQUEST_AT_A_TIME: Final = "PAYMASTER_ONE_REQUEST_AT_A_TIME"
ENV_STORE_TIMEOUT_S: Final = "PAYMASTER_STORE_TIMEOUT_S"

# HTTP headers.
HEADER_REQUEST_CONTEXT: Final = "x-amzn-request-context"  # set by Lambda Web Adapter
HEADER_REQUEST_ID: Final = "x-request-id"
HEADER_DEPLOYMENT: Final = "x-paymaster-deployment"
HEADER_DOWNGRADED_FROM: Final = "x-paymaster-downgraded-from"
HEADER_MAX_TOKENS: Final = "x-paymaster-max-tokens"  # set when the gateway chose max_tokens
HEADER_TRIED: Final = "x-paymaster-tried"  # deployments that failed before the one that served
HEADER_COST: Final = "x-paymaster-cost-usd"  # what a non-streamed request was charged
HEADER_BILLED_ON: Final = "x-paymaster-billed-on"  # provider_usage | delivered_text | reservation

# SigV4 scope the gateway accepts.
SIGV4_SERVICE: Final = "execute-api"
LOCAL_REGION: Final = "us-east-1"
ENV_PROVIDER_ENDPOINTS: Final = "PAYMASTER_PROVIDER_ENDPOINTS"  # local only: {"provider": "url"}

HEADER_METADATA_PREFIX: Final = "x-paymaster-meta-"

# The settlement queue: deliveries of a settlement before it goes to the dead-letter queue, the
# same in AWS (infra's SettlementQueue) and in the local stack.
SETTLEMENT_MAX_RECEIVES: Final = 10

# The ledger function's event source on the counters table's stream, the same in AWS (infra's
# LedgerFunction) and in the local stack (paymaster_local.runner.StreamConsumer): records per
# batch, and retries of a batch that keeps failing before it is set aside on the failure queue.
LEDGER_BATCH_SIZE: Final = 100
LEDGER_RETRY_ATTEMPTS: Final = 10
# Local only: where the runner sets aside a stream record that kept failing (in AWS, the event
# source's on-failure destination).
ENV_LEDGER_FAILURE_QUEUE_URL: Final = "PAYMASTER_LEDGER_FAILURE_QUEUE_URL"

# The denials queue: RequestDenied events the denials ledger function records, delivered at most
# this many times before the dead-letter queue, the same in AWS (infra's DenialQueue) and in the
# local stack; locally the runner finds the queue in this variable.
DENIALS_MAX_RECEIVES: Final = 10
ENV_DENIALS_QUEUE_URL: Final = "PAYMASTER_DENIALS_QUEUE_URL"
# The alarm queue: BudgetThresholdCrossed events the budget-alarm function emails, delivered at
# most this many times before its dead-letter queue, the same in AWS (infra's BudgetAlarms) and
# in the local stack; locally the runner finds the queue in this variable.
ALARM_MAX_RECEIVES: Final = 5
ENV_ALARM_QUEUE_URL: Final = "PAYMASTER_ALARM_QUEUE_URL"
# SNS: one topic per team (budget alarms, forecasts, the daily digest), named by
# `alert_topic_name`; the functions that notify find a team's topic as this prefix (an ARN up to
# the team's part: `arn:aws:sns:<region>:<account>:paymaster-alerts-`) plus `alert_topic_suffix`.
# A prefix, not a team → ARN map, because Lambda's environment holds 4 KB and a company has
# hundreds of teams.
ENV_ALERT_TOPIC_ARN_PREFIX: Final = "PAYMASTER_ALERT_TOPIC_ARN_PREFIX"
ALERT_TOPIC_PREFIX: Final = "paymaster-alerts-"
_TOPIC_SAFE = re.compile(r"[A-Za-z0-9_-]+")


def alert_topic_suffix(team: str) -> str:
    """The team's part of its topic's name. SNS names take letters, digits, `-` and `_`; a team
    named with `.`, `:` or `/` (which policy names allow) gets them as `_` and a hash of its name,
    so that `a.b` and `a_b` never share a topic: `search` → `search`, `ml.core` → `ml_core-5d1c…`.
    """
    if _TOPIC_SAFE.fullmatch(team):
        return team
    digest = hashlib.sha256(team.encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9_-]", "_", team) + "-" + digest


def alert_topic_name(team: str, prefix: str = ALERT_TOPIC_PREFIX) -> str:
    """`paymaster-alerts-search`: at most 17 + 128 + 9 characters, inside SNS's 256."""
    return prefix + alert_topic_suffix(team)


# CloudWatch metrics, as the gateway writes them in Embedded Metric Format (docs/METRICS.md).
# Dashboards and alarms use these names; each request's metrics carry exactly these dimensions.
ENV_METRICS_NAMESPACE: Final = "POWERTOOLS_METRICS_NAMESPACE"  # Powertools' own variable
METRICS_NAMESPACE: Final = "paymaster"
DIMENSION_TEAM: Final = "team"
DIMENSION_APP: Final = "app"
DIMENSION_MODEL: Final = "model"
DIMENSION_ENV: Final = "env"
DIMENSION_REASON: Final = "reason"  # of a denial: the rule's name, or the error code
DIMENSION_PROVIDER: Final = "provider"  # of a provider error: the policy's provider name
DIMENSION_RULE: Final = "rule"  # of a projection: the budget rule's name
METRICS_REQUEST_ID: Final = "request_id"  # a property of each line, not a dimension
# The value of a dimension collapsed past the policy's metric stream budget. Policy names start
# with a letter or digit, so it never names a real app or model.
COLLAPSED: Final = "_all"
METRIC_REQUESTS: Final = "Requests"
METRIC_INPUT_TOKENS: Final = "InputTokens"
METRIC_OUTPUT_TOKENS: Final = "OutputTokens"
METRIC_CACHE_READ_TOKENS: Final = "CacheReadTokens"
METRIC_CACHE_WRITE_TOKENS: Final = "CacheWriteTokens"
METRIC_COST: Final = "CostMicroUsd"
METRIC_DENIALS: Final = "Denials"
METRIC_DOWNGRADES: Final = "Downgrades"
METRIC_FALLBACKS: Final = "Fallbacks"
METRIC_PROVIDER_ERRORS: Final = "ProviderErrors"
METRIC_LATENCY: Final = "Latency"
METRIC_TIME_TO_FIRST_TOKEN: Final = "TimeToFirstToken"  # noqa: S105 - a metric name, not a secret
# Every metric a request may carry under team, app, model and env.
REQUEST_METRICS: Final = (
    METRIC_REQUESTS,
    METRIC_INPUT_TOKENS,
    METRIC_OUTPUT_TOKENS,
    METRIC_CACHE_READ_TOKENS,
    METRIC_CACHE_WRITE_TOKENS,
    METRIC_COST,
    METRIC_DENIALS,
    METRIC_DOWNGRADES,
    METRIC_FALLBACKS,
    METRIC_PROVIDER_ERRORS,
    METRIC_LATENCY,
    METRIC_TIME_TO_FIRST_TOKEN,
)
# The dimension sets, each a CloudWatch metric stream per combination of values and metric:
# REQUEST_METRICS by team/app/model/env; Denials also by team/env/reason; ProviderErrors also by provider.
REQUEST_DIMENSIONS: Final = (DIMENSION_TEAM, DIMENSION_APP, DIMENSION_MODEL, DIMENSION_ENV)
DENIAL_DIMENSIONS: Final = (DIMENSION_TEAM, DIMENSION_ENV, DIMENSION_REASON)
PROVIDER_ERROR_DIMENSIONS: Final = (DIMENSION_PROVIDER,)
# The forecast function's projection of a team's budget (`domain.forecast.Projection.at_end`): what
# the team will have spent when the rule's window ends, in micro-USD, one value per (team, rule) per
# run. The team dashboards draw it beside the month-to-date spend (infra's dashboards.py).
METRIC_PROJECTED_SPEND: Final = "ProjectedSpendMicroUsd"
PROJECTION_DIMENSIONS: Final = (DIMENSION_TEAM, DIMENSION_RULE)
