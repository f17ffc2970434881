"""Every way a call can fail before the provider saw it is a provider failure: the route moves on,
nothing is charged, and the caller gets an OpenAI-shaped 502 naming the deployment — never a 500.

The OpenAI deployments are the real adapter over a transport that counts what reached it; Bedrock
(gpt-4o-mini's fallback, nova-lite) is a recording provider. A budget on the caller's team shows
what was charged.
"""

import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from starlette.testclient import TestClient

from paymaster import names
from paymaster.adapters import secrets as secrets_module
from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.adapters.providers import openai_compatible
from paymaster.adapters.providers.openai_compatible import OpenAICompatibleProvider
from paymaster.adapters.secrets import SecretCache, api_key
from paymaster.domain.policy import Timeouts
from paymaster.ports import ChatProvider
from tests.functions.gateway import RecordingProvider, as_lwa_request, lambda_entry
from tests.policies import policy_with

SECRET = "paymaster/providers/openai"
BUDGET = {"name": "search-budget", "when": {"team": "search"}, "limit": 10, "unit": "cost_per_month"}
COMPLETION = {
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 1},
}


class CountingUpstream:
    """OpenAI's side of the wire: answers every call, and counts them."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return httpx.Response(200, json=COMPLETION)


class FailingSecrets:
    """A Secrets Manager client that fails as `error` says."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def get_secret_value(self, **_: Any) -> dict[str, Any]:
        raise self.error


def aws_secrets(aws_url: str) -> Any:
    return boto3.client(
        "secretsmanager",
        endpoint_url=aws_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


@pytest.fixture
def upstream() -> CountingUpstream:
    return CountingUpstream()


@pytest.fixture
def gateway(
    aws: dict[str, str], aws_url: str, wire_to: Callable[[str], DynamoDBWire], upstream: CountingUpstream
) -> Callable[..., TestClient]:
    """The gateway with OpenAI's key read through `secrets_client` (moto's by default)."""

    def build(secrets_client: Any = None, clock: Callable[[], float] = time.monotonic) -> TestClient:
        policy = policy_with([BUDGET])
        keys = SecretCache(lambda: secrets_client or aws_secrets(aws_url), clock=clock)
        openai = OpenAICompatibleProvider(
            httpx.MockTransport(upstream), "https://api.openai.com/v1", api_key(keys, "openai", SECRET), Timeouts()
        )
        providers: dict[str, ChatProvider] = dict.fromkeys(policy.providers, RecordingProvider())
        providers["openai"] = openai
        store = DynamoDBCounterStore(wire_to(aws_url), aws[names.ENV_COUNTERS_TABLE])
        return lambda_entry(policy, store, providers)

    return build


def spent_and_reserved(client: TestClient, event: dict[str, Any]) -> tuple[Decimal, Decimal]:
    usage = dict(event, httpMethod="GET", path="/v1/usage", body=None)
    rules = client.request(**as_lwa_request(usage)).json()["rules"]
    (rule,) = [rule for rule in rules if rule["rule"] == BUDGET["name"]]
    return Decimal(rule["used"]), Decimal(rule["reserved"])


def ask(client: TestClient, event: dict[str, Any], model: str, *, stream: bool) -> httpx.Response:
    """One request, with a request id of its own as API Gateway gives each."""
    context = dict(event["requestContext"], requestId=uuid.uuid4().hex)
    event = dict(event, requestContext=context, body=f'{{"model": "{model}", "stream": {str(stream).lower()}, '
                 '"messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}')  # fmt: skip
    return client.request(**as_lwa_request(event))


def no_secret(aws_url: str) -> None:
    aws_secrets(aws_url).delete_secret(SecretId=SECRET, ForceDeleteWithoutRecovery=True)


def empty_secret(aws_url: str) -> None:
    aws_secrets(aws_url).put_secret_value(SecretId=SECRET, SecretString=" \n")


WAYS_TO_LACK_A_KEY = {
    "missing": (no_secret, None),
    "empty": (empty_secret, None),
    "not readable by the role": (
        None,
        ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetSecretValue"),
    ),
    "Secrets Manager unreachable": (None, EndpointConnectionError(endpoint_url="https://secretsmanager")),
}


@pytest.fixture(params=WAYS_TO_LACK_A_KEY)
def keyless(request: pytest.FixtureRequest, gateway: Callable[..., TestClient], aws_url: str) -> TestClient:
    """The gateway without a usable OpenAI key, in each of the ways a fresh account can lack one."""
    change_secret, failing_client = WAYS_TO_LACK_A_KEY[request.param]
    if change_secret:
        change_secret(aws_url)
    return gateway(FailingSecrets(failing_client) if failing_client else None)


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_without_a_usable_key_the_call_falls_back_and_only_the_fallback_is_charged(
    keyless: TestClient, event: dict[str, Any], upstream: CountingUpstream, stream: bool
) -> None:
    client = keyless
    response = ask(client, event, "gpt-4o-mini", stream=stream)

    assert response.status_code == 200
    assert response.headers[names.HEADER_DEPLOYMENT] == "bedrock-us-east-1/us.amazon.nova-lite-v1:0"
    assert response.headers[names.HEADER_TRIED] == "openai/gpt-4o-mini"
    assert upstream.calls == 0
    # Nova Lite's answer (21 in, 4 out) at its price, rounded up once: 21 × 0.06 + 4 × 0.24 → 3 µUSD.
    assert spent_and_reserved(client, event) == (Decimal("0.000003"), Decimal(0))


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_without_a_usable_key_and_no_fallback_the_caller_gets_a_502_and_nothing_is_charged(
    keyless: TestClient, event: dict[str, Any], upstream: CountingUpstream, stream: bool
) -> None:
    client = keyless
    response = ask(client, event, "gpt-4o", stream=stream)  # gpt-4o has no fallback

    assert response.status_code == 502
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "provider_key_unavailable")
    assert error["message"].startswith("Deployment `openai/gpt-4o` failed: The gateway has no usable API key")
    assert "provider `openai`" in error["message"]
    assert upstream.calls == 0
    assert spent_and_reserved(client, event) == (Decimal(0), Decimal(0))


def test_a_missing_secret_is_asked_for_again_only_after_a_while(
    gateway: Callable[..., TestClient],
    aws_url: str,
    event: dict[str, Any],
    upstream: CountingUpstream,
) -> None:
    now = [1000.0]
    no_secret(aws_url)
    client = gateway(None, lambda: now[0])
    assert ask(client, event, "gpt-4o", stream=False).status_code == 502

    aws_secrets(aws_url).create_secret(Name=SECRET, SecretString="sk-now-set")
    assert ask(client, event, "gpt-4o", stream=False).status_code == 502  # still the remembered failure
    now[0] += secrets_module.FAILURE_TTL_S

    assert ask(client, event, "gpt-4o", stream=False).status_code == 200
    assert upstream.calls == 1


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_a_request_the_adapter_fails_to_build_is_a_502_that_charges_nothing(
    gateway: Callable[..., TestClient],
    event: dict[str, Any],
    upstream: CountingUpstream,
    monkeypatch: pytest.MonkeyPatch,
    stream: bool,
) -> None:
    def broken(*_: Any, **__: Any) -> dict[str, Any]:
        raise KeyError("a bug in the translation")

    monkeypatch.setattr(openai_compatible, "to_wire", broken)
    client = gateway(None)

    response = ask(client, event, "gpt-4o", stream=stream)

    assert response.status_code == 502
    assert response.json()["error"]["message"] == (
        "Deployment `openai/gpt-4o` failed: The gateway could not prepare the call to `openai/gpt-4o` (KeyError)."
    )
    assert upstream.calls == 0
    assert spent_and_reserved(client, event) == (Decimal(0), Decimal(0))


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_a_provider_that_cannot_be_reached_is_a_502_that_charges_nothing(
    aws: dict[str, str], aws_url: str, wire_to: Callable[[str], DynamoDBWire], event: dict[str, Any], stream: bool
) -> None:
    policy = policy_with([BUDGET])
    unreachable = OpenAICompatibleProvider(httpx.HTTPTransport(), "http://127.0.0.1:9/v1", lambda: "sk", Timeouts())
    store = DynamoDBCounterStore(wire_to(aws_url), aws[names.ENV_COUNTERS_TABLE])
    client = lambda_entry(
        policy, store, {**dict.fromkeys(policy.providers, RecordingProvider()), "openai": unreachable}
    )

    response = ask(client, event, "gpt-4o", stream=stream)

    assert response.status_code == 502
    assert response.json()["error"]["message"].startswith("Deployment `openai/gpt-4o` failed: the provider could not")
    assert spent_and_reserved(client, event) == (Decimal(0), Decimal(0))
