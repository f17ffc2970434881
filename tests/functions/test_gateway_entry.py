"""The gateway as Lambda runs it: a REST API event, turned into HTTP by Lambda Web Adapter."""

import json
import os
import stat
from collections.abc import Callable, Generator
from typing import Any

import pytest
from starlette.testclient import TestClient

from paymaster import names
from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.adapters.policy_file import load_policy
from paymaster.composition import gateway_app
from paymaster.domain.chat import Completion, StreamEvent, TextDelta
from paymaster.domain.errors import ProviderError, ProviderRejectedError, ProviderTimeoutError
from paymaster.ports import ProviderCall
from paymaster_local.stack import GATEWAY_SERVER_FLAGS
from tests.functions.gateway import POLICY, REPO, RecordingProvider, as_lwa_request, lambda_entry
from tests.policies import policy_with


def test_rest_api_event_is_answered_for_the_assumed_role_s_team(
    client: TestClient, provider: RecordingProvider, event: dict[str, Any]
) -> None:
    response = client.request(**as_lwa_request(event))

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "1. paymaster"
    assert response.headers[names.HEADER_REQUEST_ID] == event["requestContext"]["requestId"]
    assert response.json()["id"] == f"chatcmpl-{event['requestContext']['requestId']}"
    (call,) = provider.calls
    assert call.deployment.model == "gpt-4o-mini"
    assert call.max_output_tokens == 64


def test_streamed_event_answers_with_server_sent_events(client: TestClient, event: dict[str, Any]) -> None:
    body = json.loads(event["body"]) | {"stream": True}
    event["body"] = json.dumps(body)

    response = client.request(**as_lwa_request(event))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    lines = [line for line in response.text.split("\n\n") if line]
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[1].removeprefix("data: "))["choices"][0]["delta"] == {"content": "1. paymaster"}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        (ProviderError("the provider answered 500", status=500), 502, "provider_error"),
        (ProviderTimeoutError("the provider did not answer in time"), 504, "provider_timeout"),
        (ProviderRejectedError("the provider answered 400: bad", status=400), 400, "provider_rejected_request"),
    ],
)
def test_provider_failure_is_an_openai_error_not_a_500(
    client: TestClient,
    provider: RecordingProvider,
    event: dict[str, Any],
    failure: ProviderError,
    status: int,
    code: str,
    stream: bool,
) -> None:
    provider.failure = failure
    event["body"] = json.dumps(json.loads(event["body"]) | {"stream": stream})

    response = client.request(**as_lwa_request(event))

    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_event_from_a_role_no_team_claims_is_refused(client: TestClient, event: dict[str, Any]) -> None:
    event["requestContext"]["identity"]["userArn"] = "arn:aws:sts::111111111111:assumed-role/intruder/s"

    response = client.request(**as_lwa_request(event))

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "unknown_principal"


def test_request_that_did_not_come_through_api_gateway_is_refused(client: TestClient, event: dict[str, Any]) -> None:
    request = as_lwa_request(event)
    del request["headers"][names.HEADER_REQUEST_CONTEXT]
    request["headers"]["authorization"] = "AWS4-HMAC-SHA256 Credential=whatever"

    response = client.request(**request)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_signature"


def test_composition_builds_the_lambda_app_from_its_environment(
    monkeypatch: pytest.MonkeyPatch, event: dict[str, Any], aws: dict[str, str]
) -> None:
    for name, value in aws.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(names.ENV_POLICY_FILE, str(POLICY))
    monkeypatch.setenv(names.ENV_IDENTITY, "request-context")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    event["httpMethod"], event["path"], event["body"] = "GET", "/v1/models", None

    response = TestClient(gateway_app()).request(**as_lwa_request(event))

    assert response.status_code == 200
    assert [model["id"] for model in response.json()["data"]] == [
        "gpt-4o-mini",
        "gpt-4o",
        "nova-lite",
        "text-embedding-3-small",
        "titan-embed-v2",
    ]


def test_lambda_handler_script_starts_the_composition_factory() -> None:
    run_sh = REPO / "functions" / "gateway" / "run.sh"

    assert run_sh.stat().st_mode & stat.S_IXUSR
    assert "--factory paymaster.composition:gateway_app" in run_sh.read_text()
    # The server stack the local stack measures is the one Lambda runs.
    assert " ".join(GATEWAY_SERVER_FLAGS) in run_sh.read_text()
    assert os.access(run_sh, os.X_OK)


@pytest.mark.parametrize(("on_store_error", "status"), [("closed", 503), ("open", 200)])
def test_unreachable_counter_store_follows_the_rule_s_on_store_error(
    provider: RecordingProvider,
    event: dict[str, Any],
    on_store_error: str,
    status: int,
    wire_to: Callable[[str], DynamoDBWire],
) -> None:
    policy = policy_with(
        [{"name": "budget", "when": {"team": "search"}, "limit": 100, "unit": "cost_per_month",
          "on_store_error": on_store_error}]
    )  # fmt: skip
    unreachable = DynamoDBCounterStore(wire_to("http://127.0.0.1:9"), "counters")

    response = lambda_entry(policy, unreachable, provider).request(**as_lwa_request(event))

    assert response.status_code == status
    if status == 503:
        assert response.json()["error"]["code"] == "counter_store_unavailable"
        assert "budget" in response.json()["error"]["message"]
        assert provider.calls == []
    else:
        assert len(provider.calls) == 1


def nested_object(depth: int) -> str:
    """`{"a":{"a":…1…}}` with `depth` objects."""
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("depth", [10_000, 100_000])
def test_a_body_nested_past_the_parser_s_limit_is_a_400(
    client: TestClient, provider: RecordingProvider, event: dict[str, Any], depth: int
) -> None:
    event["body"] = nested_object(depth)

    response = client.request(**as_lwa_request(event))

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "deeper than 64 levels" in response.json()["error"]["message"]
    assert provider.calls == []


@pytest.mark.parametrize(("depth", "status"), [(60, 200), (61, 400), (900, 400)])
def test_a_tool_schema_nested_deeper_than_the_gateway_allows_is_a_400_before_admission(
    client: TestClient, provider: RecordingProvider, event: dict[str, Any], depth: int, status: int
) -> None:
    # body → tools → tool → function: 4 levels before the schema's own objects (60 reach 64);
    # 900 passes the JSON parser and would fail later, re-encoded inside a deep call stack.
    body = json.loads(event["body"])
    tool = '{"type":"function","function":{"name":"f","parameters":' + nested_object(depth) + "}}"
    event["body"] = json.dumps(body)[:-1] + ', "tools": [' + tool + "]}"

    response = client.request(**as_lwa_request(event))

    assert response.status_code == status
    assert len(provider.calls) == (status == 200)


class BrokenProvider(RecordingProvider):
    """A provider adapter with a bug: it raises what no adapter should."""

    def complete(self, call: ProviderCall) -> Completion:
        raise RuntimeError("a bug after the call may have been sent")

    def stream(self, call: ProviderCall) -> Generator[StreamEvent, None, None]:
        yield TextDelta("1.")
        raise RuntimeError("a bug after the call was accepted")


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_an_unforeseen_failure_after_admission_says_what_it_charged(
    event: dict[str, Any], aws: dict[str, str], aws_url: str, wire_to: Callable[[str], DynamoDBWire], stream: bool
) -> None:
    store = DynamoDBCounterStore(wire_to(aws_url), aws[names.ENV_COUNTERS_TABLE])
    event["body"] = json.dumps(json.loads(event["body"]) | {"stream": stream})

    response = lambda_entry(load_policy(POLICY), store, BrokenProvider()).request(**as_lwa_request(event))

    if stream:  # the status line was sent with the first piece: the failure and its charge follow it
        assert response.status_code == 200
        assert '"code":"internal_error"' in response.text
        assert ": x-paymaster-billed-on: delivered_text" in response.text
        return
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert response.headers[names.HEADER_BILLED_ON] == "reservation"
    assert float(response.headers[names.HEADER_COST]) > 0
