"""The one place that builds adapters and wires them to the use cases, once per container.

`gateway_app` is the ASGI factory both uvicorn (locally) and Lambda Web Adapter (`functions/
gateway/run.sh`) start: `uvicorn --factory paymaster.composition:gateway_app`.
"""

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache

import boto3
import httpx
from botocore.config import Config
from starlette.applications import Starlette

from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.adapters.policy_file import load_policy
from paymaster.adapters.providers.anthropic import AnthropicProvider
from paymaster.adapters.providers.bedrock import BedrockProvider
from paymaster.adapters.providers.openai_compatible import OpenAICompatibleProvider
from paymaster.adapters.request_context import RequestContextAuthenticator
from paymaster.adapters.secrets import SecretCache
from paymaster.adapters.settings import Settings
from paymaster.adapters.sigv4 import SigV4Authenticator, load_local_credentials
from paymaster.adapters.tokenizer import count_tokens
from paymaster.api.app import create_app
from paymaster.domain.policy import Policy, Provider
from paymaster.ports import Authenticator, ChatProvider
from paymaster.services.admission import AdmissionService
from paymaster.services.chat import ChatService
from paymaster.services.identify import IdentifyService


def gateway_app() -> Starlette:
    return build_gateway(Settings.from_environ(os.environ))


def build_gateway(settings: Settings) -> Starlette:
    policy = load_policy(settings.policy_file)
    admission = build_admission(policy, settings)
    return create_app(
        identify=IdentifyService(build_authenticator(settings), policy),
        chat=ChatService(policy, build_providers(policy, settings), admission),
        admission=admission,
        max_body_bytes=settings.max_body_bytes,
        one_request_at_a_time=settings.one_request_at_a_time,
    )


def build_admission(policy: Policy, settings: Settings) -> AdmissionService:
    session = boto3.Session(region_name=settings.region)
    credentials = session.get_credentials()
    if credentials is None:
        raise RuntimeError("no AWS credentials for DynamoDB (the Lambda role provides them in AWS)")
    # boto3 resolves the endpoint once (partition, FIPS, AWS_ENDPOINT_URL); requests go out thin.
    endpoint = session.client("dynamodb").meta.endpoint_url
    pool = httpx.HTTPTransport(limits=httpx.Limits(max_keepalive_connections=20))
    dynamodb = DynamoDBWire(pool, endpoint_url=endpoint, region=settings.region, credentials=credentials)
    return AdmissionService(
        policy,
        DynamoDBCounterStore(dynamodb, settings.counters_table),
        count_tokens,
        lambda: datetime.now(UTC),
    )


def build_authenticator(settings: Settings) -> Authenticator:
    if settings.identity == "sigv4":
        assert settings.local_principals is not None  # the settings validator guarantees it
        return SigV4Authenticator(load_local_credentials(settings.local_principals), region=settings.region)
    return RequestContextAuthenticator()


def build_providers(policy: Policy, settings: Settings) -> Mapping[str, ChatProvider]:
    pool = httpx.HTTPTransport(limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))

    @cache
    def secrets() -> SecretCache:
        return SecretCache(boto3.client("secretsmanager", region_name=settings.region))

    def provider(name: str, config: Provider) -> ChatProvider:
        endpoint = settings.provider_endpoints.get(name)
        if config.kind == "bedrock":
            client = boto3.client(
                "bedrock-runtime",
                region_name=config.region,
                endpoint_url=endpoint,
                config=Config(
                    connect_timeout=config.timeouts.connect_s,
                    read_timeout=config.timeouts.first_byte_s,
                    # The gateway decides about retries and fallbacks; botocore must not hide them.
                    retries={"mode": "standard", "max_attempts": 1},
                ),
            )
            return BedrockProvider(client)
        secret = config.api_key_secret
        base_url = endpoint or str(config.base_url)
        api_key = (lambda: secrets().get(secret)) if secret else (lambda: None)
        if config.kind == "anthropic":
            return AnthropicProvider(pool, base_url=base_url, api_key=api_key, timeouts=config.timeouts)
        return OpenAICompatibleProvider(pool, base_url=base_url, api_key=api_key, timeouts=config.timeouts)

    return {name: provider(name, config) for name, config in policy.providers.items()}
