"""The one place that builds adapters and wires them to the use cases, once per container.

`gateway_app` is the ASGI factory both uvicorn (locally) and Lambda Web Adapter (`functions/
gateway/run.sh`) start: `uvicorn --factory paymaster.composition:gateway_app`.
"""

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, partial

import httpx
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from starlette.applications import Starlette

from paymaster import names
from paymaster.adapters import aws_environment
from paymaster.adapters.aws_environment import BEDROCK_RUNTIME, DYNAMODB, SECRETS_MANAGER, DeferredClient
from paymaster.adapters.bedrock_runtime import BedrockRuntimeWire
from paymaster.adapters.dynamodb_alarms import DynamoDBAlarmMarks
from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_ledger import DynamoDBLedger
from paymaster.adapters.dynamodb_reports import DynamoDBReports
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.adapters.emf_metrics import EmfMetrics, EmfProjections
from paymaster.adapters.event_bus import EventBridgePublisher, EventBridgeWire, NoEventBus
from paymaster.adapters.policy_file import load_policy
from paymaster.adapters.providers.anthropic import AnthropicProvider
from paymaster.adapters.providers.bedrock import BedrockProvider
from paymaster.adapters.providers.bedrock_embeddings import BedrockEmbeddingsProvider, family_of
from paymaster.adapters.providers.openai_compatible import OpenAICompatibleProvider
from paymaster.adapters.providers.openai_embeddings import OpenAIEmbeddingsProvider
from paymaster.adapters.request_context import RequestContextAuthenticator
from paymaster.adapters.secrets import SecretCache, SecretsManagerWire
from paymaster.adapters.secrets import api_key as provider_api_key
from paymaster.adapters.settings import LedgerSettings, NotifierSettings, ScheduleSettings, Settings
from paymaster.adapters.settlement_queue import SqsSettlementQueue
from paymaster.adapters.sns_notifier import SnsNotifier
from paymaster.adapters.tokenizer import WarmingTokenCounter
from paymaster.api.app import create_app
from paymaster.domain.cardinality import metric_dimensions
from paymaster.domain.policy import Policy, Provider
from paymaster.ports import Authenticator, ChatProvider, EmbeddingProvider, EventPublisher, MetricsSink, Notifier
from paymaster.services.admission import AdmissionService
from paymaster.services.alarms import BudgetAlarms, ThresholdWatch
from paymaster.services.chat import ChatService
from paymaster.services.denials import DENIAL_EVENT_WAIT_S, DenialEvents
from paymaster.services.digest import Digest
from paymaster.services.embeddings import EmbeddingsService
from paymaster.services.forecast import Forecast
from paymaster.services.identify import IdentifyService
from paymaster.services.ledger import LedgerRecorder
from paymaster.services.ledger_denials import DenialRecorder
from paymaster.services.month_close import MonthClose
from paymaster.services.routing import Router
from paymaster.services.settlements import SettlementRetry
from paymaster.services.usage import UsageService

# One Bedrock client per provider serves chat and embeddings, over at most this many connections;
# an embeddings request fans out across as many.
BEDROCK_POOL_CONNECTIONS = 10
# Seconds the ledger function waits for DynamoDB's and EventBridge's answers: nobody waits on
# it, and a batch that times out is delivered again, so it may wait longer than the gateway does.
LEDGER_TIMEOUT_S = 5.0


def gateway_app() -> Starlette:
    return build_gateway(Settings.from_environ(os.environ))


def build_gateway(settings: Settings) -> Starlette:
    if settings.ledger_table is None:
        raise ValueError(f"the gateway needs {names.ENV_LEDGER_TABLE}: GET /v1/usage reads the team's spend from it")
    policy = load_policy(settings.policy_file)
    auditing = sorted(name for name, team in policy.teams.items() if team.audit.prompts)
    if auditing and settings.prompts_table is None:
        raise ValueError(
            f"team(s) {', '.join(auditing)} keep prompts (audit.prompts) but {names.ENV_PROMPTS_TABLE} is not set"
        )
    admission = build_admission(policy, settings)
    # Built once per container; it only reads the rollups (the role may read nothing else).
    spend = DynamoDBLedger(_dynamodb(settings.region, settings.store_timeout_s), settings.ledger_table)
    denials = DenialEvents(
        build_event_publisher(
            settings.event_bus, settings.region, timeout=DENIAL_EVENT_TIMEOUT, max_attempts=2, entry_attempts=1
        )
    )
    router = Router(policy, admission, denials=denials, metrics=build_metrics(policy, settings))
    chat_providers, embedding_providers = build_providers(policy, settings)
    return create_app(
        identify=IdentifyService(build_authenticator(settings), policy),
        chat=ChatService(policy, chat_providers, router),
        embeddings=EmbeddingsService(embedding_providers, router),
        usage=UsageService(admission, spend, _now),
        max_body_bytes=settings.max_body_bytes,
        one_request_at_a_time=settings.one_request_at_a_time,
    )


def build_metrics(policy: Policy, settings: Settings) -> MetricsSink | None:
    """EMF on stdout, with the dimensions the policy's metric stream budget allows; None when
    Powertools' own switch (POWERTOOLS_METRICS_DISABLED, or POWERTOOLS_DEV) turns metrics off."""
    if is_metrics_disabled():
        return None
    return EmfMetrics(metric_dimensions(policy), settings.metrics_namespace)


def build_admission(policy: Policy, settings: Settings) -> AdmissionService:
    return AdmissionService(
        policy,
        build_store(settings),
        # Loads an encoding in the background when first needed, counting an upper bound meanwhile.
        WarmingTokenCounter(),
        _now,
        build_settlement_queue(settings),
    )


def _now() -> datetime:
    return datetime.now(UTC)


@cache
def settlement_retry() -> SettlementRetry:
    """The settlement-retry function's use case (`functions/settlement_retry`), once per container."""
    return SettlementRetry(build_store(Settings.from_environ(os.environ)))


@cache
def sweeper() -> AdmissionService:
    """The sweeper function's use case (`functions/sweeper`, `AdmissionService.sweep`), once per
    container: the policy and the counter store, as the gateway builds them. A sweep settles
    directly and never queues (a sweep the store cannot take is the next minute's), so the
    settlement queue's client is never made."""
    settings = Settings.from_environ(os.environ)
    return build_admission(load_policy(settings.policy_file), settings)


@cache
def notifier() -> Notifier:
    """Notices to the teams' SNS topics, for the budget-alarm and scheduled functions, once per
    container."""
    settings = NotifierSettings.from_environ(os.environ)
    client = aws_environment.botocore_session().create_client("sns", region_name=settings.region)
    return SnsNotifier(client, settings.topic_arn_prefix)


def build_settlement_queue(settings: Settings) -> SqsSettlementQueue:
    """The SQS client is made the first time the store cannot take a settlement, not at start."""
    return SqsSettlementQueue(
        lambda: aws_environment.botocore_session().create_client("sqs", region_name=settings.region),
        settings.settlement_queue_url,
    )


# A refusal waits for its RequestDenied (services/denials.py) at most DENIAL_EVENT_WAIT_S: the
# first attempt fits in it; one retry of the call may still land after the 429; an entry PutEvents
# failed is not sent again, as the wait would be over before it could land.
DENIAL_EVENT_TIMEOUT = httpx.Timeout(DENIAL_EVENT_WAIT_S / 2, connect=DENIAL_EVENT_WAIT_S / 4)


def build_event_publisher(
    bus_name: str | None, region: str, *, timeout: httpx.Timeout, max_attempts: int, entry_attempts: int
) -> EventPublisher:
    """The bus named, or none (None). `max_attempts` sends of a whole call (throttled, 5xx, no
    answer); `entry_attempts` sends of an entry PutEvents failed in a call that answered."""
    if bus_name is None:
        return NoEventBus()
    wire = EventBridgeWire(
        httpx.HTTPTransport(verify=_tls(), limits=httpx.Limits(max_keepalive_connections=4)),
        endpoint_url=aws_environment.endpoint_url(aws_environment.EVENTS, region, os.environ),
        region=region,
        credentials=aws_environment.credentials(region, os.environ),
        timeout=timeout,
        max_attempts=max_attempts,
    )
    return EventBridgePublisher(wire, bus_name, entry_attempts=entry_attempts)


def build_store(settings: Settings) -> DynamoDBCounterStore:
    return DynamoDBCounterStore(
        _dynamodb(settings.region, settings.store_timeout_s),
        settings.counters_table,
        prompts_table=settings.prompts_table,
    )


@cache
def ledger_recorder() -> LedgerRecorder:
    """The ledger function's use case (`functions/ledger`), once per container."""
    settings = LedgerSettings.from_environ(os.environ)
    # A call is sent up to 3 times, an entry PutEvents failed up to 4 (≤ 0.7 s of backoff): what
    # still fails is reported, and the stream delivers its record again.
    bus = build_event_publisher(
        settings.event_bus,
        settings.region,
        timeout=httpx.Timeout(LEDGER_TIMEOUT_S, connect=1.0),
        max_attempts=3,
        entry_attempts=4,
    )
    return LedgerRecorder(DynamoDBLedger(_dynamodb(settings.region, LEDGER_TIMEOUT_S), settings.ledger_table), bus)


def _alarm_marks(settings: LedgerSettings) -> DynamoDBAlarmMarks:
    return DynamoDBAlarmMarks(_dynamodb(settings.region, LEDGER_TIMEOUT_S), settings.ledger_table)


def _alarm_policy(settings: LedgerSettings, function: str) -> Policy:
    if settings.policy_file is None:
        raise ValueError(f"the {function} needs {names.ENV_POLICY_FILE}: budget alarms follow the rules' thresholds")
    return load_policy(settings.policy_file)


@cache
def threshold_watch() -> ThresholdWatch:
    """The ledger function's other use case: the crossings of each counter's change, once per container."""
    settings = LedgerSettings.from_environ(os.environ)
    return ThresholdWatch(_alarm_policy(settings, "ledger function"), _alarm_marks(settings))


@cache
def budget_alarms() -> BudgetAlarms:
    """The budget-alarm function's use case (`functions/budget_alarm`), once per container."""
    settings = LedgerSettings.from_environ(os.environ)
    ledger = DynamoDBLedger(_dynamodb(settings.region, LEDGER_TIMEOUT_S), settings.ledger_table)
    return BudgetAlarms(_alarm_policy(settings, "budget-alarm function"), _alarm_marks(settings), notifier(), ledger)


@cache
def denial_recorder() -> DenialRecorder:
    """The denials ledger function's use case (`functions/ledger_denials`), once per container."""
    settings = LedgerSettings.from_environ(os.environ)
    return DenialRecorder(DynamoDBLedger(_dynamodb(settings.region, LEDGER_TIMEOUT_S), settings.ledger_table))


def _dynamodb(region: str, timeout_s: float) -> DynamoDBWire:
    # Found as boto3 would find them, without importing it where the environment decides.
    credentials = aws_environment.credentials(region, os.environ)
    endpoint = aws_environment.endpoint_url(DYNAMODB, region, os.environ)
    pool = httpx.HTTPTransport(verify=_tls(), limits=httpx.Limits(max_keepalive_connections=20))
    return DynamoDBWire(
        pool,
        endpoint_url=endpoint,
        region=region,
        credentials=credentials,
        timeout=httpx.Timeout(timeout_s, connect=min(1.0, timeout_s)),
    )


def build_authenticator(settings: Settings) -> Authenticator:
    if settings.identity == "sigv4":
        # Local only; botocore's signer costs a Lambda cold start 0.15 s it never uses.
        from paymaster.adapters.sigv4 import SigV4Authenticator, load_local_credentials  # noqa: PLC0415

        assert settings.local_principals is not None  # the settings validator guarantees it
        return SigV4Authenticator(load_local_credentials(settings.local_principals), region=settings.region)
    return RequestContextAuthenticator()


def build_providers(
    policy: Policy, settings: Settings
) -> tuple[Mapping[str, ChatProvider], Mapping[str, EmbeddingProvider]]:
    """Each provider's chat and (OpenAI, Bedrock) embeddings adapters, sharing one connection
    pool, one Bedrock client per Bedrock provider (made at its first call) and one secrets cache."""
    pool = httpx.HTTPTransport(verify=_tls(), limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))

    def secrets_manager() -> SecretsManagerWire:
        endpoint = aws_environment.endpoint_url(SECRETS_MANAGER, settings.region, os.environ)
        credentials = aws_environment.credentials(settings.region, os.environ)
        return SecretsManagerWire(pool, endpoint_url=endpoint, region=settings.region, credentials=credentials)

    secrets = SecretCache(secrets_manager)

    for model_name, model in policy.models.items():
        for deployment in model.deployments:
            bedrock = policy.providers[deployment.provider].kind == "bedrock"
            if model.kind == "embeddings" and bedrock and family_of(deployment.model) is None:
                raise ValueError(
                    f"embeddings model {model_name!r}: Bedrock model {deployment.model!r} is not an embeddings "
                    "family paymaster speaks (Amazon Titan Text Embeddings, Cohere Embed)"
                )
    chat: dict[str, ChatProvider] = {}
    embeddings: dict[str, EmbeddingProvider] = {}
    for name, config in policy.providers.items():
        endpoint = settings.provider_endpoints.get(name)
        if config.kind == "bedrock":
            client = DeferredClient(partial(_bedrock_client, config, endpoint, settings.region))
            chat[name] = BedrockProvider(client)
            embeddings[name] = BedrockEmbeddingsProvider(client, max_concurrency=BEDROCK_POOL_CONNECTIONS)
            continue
        base_url = endpoint or str(config.base_url)
        api_key = provider_api_key(secrets, name, config.api_key_secret)
        if config.kind == "anthropic":
            chat[name] = AnthropicProvider(pool, base_url=base_url, api_key=api_key, timeouts=config.timeouts)
            continue
        chat[name] = OpenAICompatibleProvider(pool, base_url=base_url, api_key=api_key, timeouts=config.timeouts)
        embeddings[name] = OpenAIEmbeddingsProvider(pool, base_url=base_url, api_key=api_key, timeouts=config.timeouts)
    return chat, embeddings


@cache
def _tls() -> ssl.SSLContext:
    """One trust store for every connection pool: each one httpx loads costs a cold start 20 ms."""
    return httpx.create_ssl_context()


def _bedrock_client(config: Provider, endpoint: str | None, home_region: str) -> BedrockRuntimeWire:
    """Built at the provider's first call, not at cold start (adapters/aws_environment.py).

    `endpoint` is the local stack's override; otherwise the one boto3 would call in the provider's
    region. Credentials are the gateway's own (its region's, as for its other AWS clients)."""
    assert config.region is not None  # the policy validator guarantees it for Bedrock
    pool = httpx.HTTPTransport(
        verify=_tls(),
        limits=httpx.Limits(
            max_connections=BEDROCK_POOL_CONNECTIONS, max_keepalive_connections=BEDROCK_POOL_CONNECTIONS
        ),
    )
    return BedrockRuntimeWire(
        pool,
        endpoint_url=endpoint or aws_environment.endpoint_url(BEDROCK_RUNTIME, config.region, os.environ),
        region=config.region,
        credentials=aws_environment.credentials(home_region, os.environ),
        # Each read waits at most first_byte_s: the answer's start, and any pause in a stream. A
        # call that waits as long for one of the pool's connections was never sent. Nothing is
        # retried: the gateway decides about retries and fallbacks.
        timeout=httpx.Timeout(config.timeouts.first_byte_s, connect=config.timeouts.connect_s),
    )


# Seconds the scheduled functions wait for DynamoDB's and EventBridge's answers: nobody waits on
# them, and a run that fails is retried (Lambda's async retries, then the dead-letter queue).
SCHEDULE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class _ScheduleStores:
    """What every scheduled function reads and writes, over one DynamoDB client."""

    settings: ScheduleSettings
    policy: Policy
    ledger: DynamoDBLedger
    reports: DynamoDBReports
    counters: DynamoDBCounterStore


def _schedule_stores() -> _ScheduleStores:
    settings = ScheduleSettings.from_environ(os.environ)
    dynamodb = _dynamodb(settings.region, SCHEDULE_TIMEOUT_S)
    return _ScheduleStores(
        settings,
        load_policy(settings.policy_file),
        DynamoDBLedger(dynamodb, settings.ledger_table),
        DynamoDBReports(dynamodb, settings.ledger_table),
        DynamoDBCounterStore(dynamodb, settings.counters_table),
    )


@cache
def month_close() -> MonthClose:
    """The month-close function's use case (`functions/month_close`), once per container."""
    stores = _schedule_stores()
    bus = build_event_publisher(
        stores.settings.event_bus,
        stores.settings.region,
        timeout=httpx.Timeout(SCHEDULE_TIMEOUT_S, connect=1.0),
        max_attempts=3,
        entry_attempts=4,
    )
    return MonthClose(stores.policy, stores.ledger, stores.reports, stores.counters, bus)


@cache
def forecast() -> Forecast:
    """The forecast function's use case (`functions/forecast`), once per container."""
    stores = _schedule_stores()
    return Forecast(
        stores.policy,
        stores.counters,
        stores.ledger,
        stores.reports,
        notifier(),
        metrics=EmfProjections(names.METRICS_NAMESPACE),
    )


@cache
def digest() -> Digest:
    """The daily digest function's use case (`functions/digest`), once per container."""
    stores = _schedule_stores()
    return Digest(
        stores.policy,
        entries=stores.ledger,
        spend=stores.ledger,
        counters=stores.counters,
        reports=stores.reports,
        notifier=notifier(),
    )
