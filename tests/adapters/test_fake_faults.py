"""Scripted faults of the fake providers, as the real clients see them, and the control API."""

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import httpx
import openai
import pytest
import urllib3.exceptions
from botocore.eventstream import ChecksumMismatch
from openai import OpenAI

from paymaster_local.fakes import create_fake_providers_app, serve_in_thread
from tests.adapters.test_fake_bedrock import bedrock_client

CHUNK_DELAY_S = 0.01
DELAY_S = 0.3  # first-byte delays and stalls that the client waits out
SHORT_TIMEOUT_S = 0.25  # a client read timeout, against delays and stalls of twice as long
OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-sonnet-4-20250514"
BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
TITAN = "amazon.titan-embed-text-v2:0"
PROMPT = "one two three four"  # the reply "Echo: one two three four" is 5 deltas
DELTAS = ["Echo:", " one", " two", " three", " four"]
BEDROCK_MESSAGES = [{"role": "user", "content": [{"text": PROMPT}]}]

SSE_REQUESTS: dict[str, tuple[str, dict[str, str], dict[str, Any]]] = {
    "openai": (
        "/v1/chat/completions",
        {"Authorization": "Bearer x"},
        {"model": OPENAI_MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64},
    ),
    "anthropic": (
        "/v1/messages",
        {"x-api-key": "x"},
        {"model": ANTHROPIC_MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64},
    ),
}
MODELS = {"openai": OPENAI_MODEL, "anthropic": ANTHROPIC_MODEL}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_in_thread(create_fake_providers_app(chunk_delay_s=CHUNK_DELAY_S)) as url:
        yield url


@pytest.fixture(scope="module")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url) as client:
        yield client


@pytest.fixture(autouse=True)
def no_faults(http: httpx.Client) -> None:
    http.delete("/_fake/faults").raise_for_status()


@pytest.fixture
def client(base_url: str) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def bedrock(base_url: str) -> Iterator[Any]:
    client = bedrock_client(base_url)
    yield client
    client.close()


def queue(http: httpx.Client, model: str, *faults: dict[str, Any]) -> None:
    http.post("/_fake/faults", json={"model": model, "faults": list(faults)}).raise_for_status()


def logged_calls(http: httpx.Client) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = http.get("/_fake/calls").json()["calls"]
    return calls


def post(http: httpx.Client, api: str, *, stream: bool) -> httpx.Response:
    path, headers, body = SSE_REQUESTS[api]
    return http.post(path, headers=headers, json={**body, "stream": stream})


def read_sse(http: httpx.Client, api: str) -> tuple[list[str], httpx.TransportError | None]:
    """The ``data:`` payloads of a stream, and the error that ended it early (None: it ended well)."""
    path, headers, body = SSE_REQUESTS[api]
    payloads: list[str] = []
    try:
        with http.stream("POST", path, headers=headers, json={**body, "stream": True}) as response:
            payloads.extend(line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: "))
    except httpx.TransportError as error:
        return payloads, error
    return payloads, None


def text_deltas(api: str, payloads: list[str]) -> list[str]:
    chunks = [json.loads(payload) for payload in payloads if payload != "[DONE]"]
    if api == "openai":
        return [
            chunk["choices"][0]["delta"]["content"] for chunk in chunks if chunk["choices"][0]["delta"].get("content")
        ]
    return [chunk["delta"]["text"] for chunk in chunks if chunk["type"] == "content_block_delta"]


def openai_stream_texts(sdk: OpenAI, received: list[str]) -> None:
    """Read a chat completion stream's text into ``received``, raising what the SDK raises."""
    messages: list[Any] = [{"role": "user", "content": PROMPT}]
    for chunk in sdk.chat.completions.create(model=OPENAI_MODEL, messages=messages, stream=True):
        received.append(chunk.choices[0].delta.content or "")


def converse_stream_events(bedrock: Any, received: list[str]) -> None:
    """Read a ConverseStream into ``received`` (event names, text deltas as ``+text``), raising what boto3 raises."""
    for event in bedrock.converse_stream(modelId=BEDROCK_MODEL, messages=BEDROCK_MESSAGES)["stream"]:
        name = next(iter(event))
        received.append(f"+{event[name]['delta']['text']}" if name == "contentBlockDelta" else name)


# The control API


def test_faults_are_taken_one_per_request_in_order_then_answers_are_normal(http: httpx.Client, client: OpenAI) -> None:
    queue(http, OPENAI_MODEL, {"status": 429})
    queue(http, OPENAI_MODEL, {"status": 500})
    messages: list[Any] = [{"role": "user", "content": PROMPT}]

    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=OPENAI_MODEL, messages=messages, max_tokens=7)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=OPENAI_MODEL, messages=messages, stream=True)
    completion = client.chat.completions.create(model=OPENAI_MODEL, messages=messages)

    assert completion.choices[0].message.content == "".join(DELTAS)
    assert logged_calls(http) == [
        {"api": "openai", "operation": "chat", "model": OPENAI_MODEL, "fault": {"status": 429}, "max_tokens": 7},
        {
            "api": "openai",
            "operation": "chat_stream",
            "model": OPENAI_MODEL,
            "fault": {"status": 500},
            "max_tokens": None,
        },
        {"api": "openai", "operation": "chat", "model": OPENAI_MODEL, "fault": None, "max_tokens": None},
    ]


def test_calls_of_every_api_and_operation_are_logged_in_arrival_order(
    http: httpx.Client, client: OpenAI, bedrock: Any
) -> None:
    client.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
    client.embeddings.create(model="text-embedding-3-small", input="hi")
    post(http, "anthropic", stream=False)
    bedrock.converse(modelId=BEDROCK_MODEL, messages=BEDROCK_MESSAGES, inferenceConfig={"maxTokens": 9})
    list(bedrock.converse_stream(modelId=BEDROCK_MODEL, messages=BEDROCK_MESSAGES)["stream"])
    bedrock.invoke_model(modelId=TITAN, body=json.dumps({"inputText": "hi"}))

    assert [(call["api"], call["operation"], call["model"], call["max_tokens"]) for call in logged_calls(http)] == [
        ("openai", "chat_stream", OPENAI_MODEL, None),
        ("openai", "embeddings", "text-embedding-3-small", None),
        ("anthropic", "chat", ANTHROPIC_MODEL, 64),
        ("bedrock", "converse", BEDROCK_MODEL, 9),
        ("bedrock", "converse_stream", BEDROCK_MODEL, None),
        ("bedrock", "invoke", TITAN, None),
    ]


def test_faults_are_queued_per_model(http: httpx.Client, client: OpenAI) -> None:
    queue(http, "gpt-4o", {"status": 503})

    completion = client.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])

    assert completion.choices[0].message.content == "Echo: hi"


def test_a_request_the_fake_refuses_takes_no_fault_and_is_not_logged(http: httpx.Client, client: OpenAI) -> None:
    queue(http, OPENAI_MODEL, {"status": 429})

    unauthenticated = http.post(
        "/v1/chat/completions", json={"model": OPENAI_MODEL, "messages": [{"role": "user", "content": "x"}]}
    )
    invalid = http.post("/v1/chat/completions", headers={"Authorization": "Bearer x"}, json={"model": OPENAI_MODEL})

    assert (unauthenticated.status_code, invalid.status_code) == (401, 400)
    assert logged_calls(http) == []
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": "x"}])


def test_delete_empties_the_queues_and_the_call_log(http: httpx.Client, client: OpenAI) -> None:
    queue(http, OPENAI_MODEL, {"status": 429}, {"status": 429})
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": "x"}])

    deleted = http.delete("/_fake/faults")
    log_after_delete = logged_calls(http)
    completion = client.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": "x"}])

    assert deleted.status_code == 204
    assert log_after_delete == []
    assert completion.choices[0].finish_reason == "stop"


def test_queueing_answers_how_many_faults_the_model_has_waiting(http: httpx.Client) -> None:
    first = http.post("/_fake/faults", json={"model": "m", "faults": [{"cut_after": 1}]})
    second = http.post("/_fake/faults", json={"model": "m", "faults": [{"cut_after": 2}, {"status": 500}]})

    assert (first.status_code, first.json()) == (200, {"model": "m", "queued": 1})
    assert second.json() == {"model": "m", "queued": 3}


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        ({"status": 200}, "status: Input should be greater than or equal to 400"),
        ({"status": 600}, "status: Input should be less than or equal to 599"),
        ({"status": 429, "retry_after": 1.5}, "retry_after: Input should be a valid integer"),
        ({"status": 429, "cut_after": 1}, "exactly one of the keys"),
        ({"status": 429, "seconds": 1}, "seconds: Extra inputs are not permitted"),
        ({"cut_after": -1}, "cut_after: Input should be greater than or equal to 0"),
        ({"cut_after": True}, "cut_after: Input should be a valid integer"),
        ({"stall_after": 1}, "seconds: Field required"),
        ({"first_byte_delay_s": "1"}, "first_byte_delay_s: Input should be a valid number"),
        ({}, "exactly one of the keys"),
        ("cut_after", "a fault is a JSON object"),
    ],
)
def test_a_bad_fault_is_refused_with_400_and_nothing_is_queued(
    http: httpx.Client, client: OpenAI, fault: object, problem: str
) -> None:
    response = http.post("/_fake/faults", json={"model": OPENAI_MODEL, "faults": [{"status": 500}, fault]})

    assert response.status_code == 400
    assert response.json()["error"].startswith("faults[1]: ")
    assert problem in response.json()["error"]
    completion = client.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": "x"}])
    assert completion.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"faults": []}', b'{"model": "", "faults": []}', b'{"model": "m", "faults": {}}', b"[]"],
)
def test_a_bad_queue_request_is_refused_with_400(http: httpx.Client, body: bytes) -> None:
    response = http.post("/_fake/faults", content=body)

    assert response.status_code == 400
    assert set(response.json()) == {"error"}


def test_each_app_has_its_own_faults_and_log(http: httpx.Client) -> None:
    queue(http, OPENAI_MODEL, {"status": 429})

    with (
        serve_in_thread(create_fake_providers_app(chunk_delay_s=0)) as other_url,
        httpx.Client(base_url=other_url) as other_http,
    ):
        other = post(other_http, "openai", stream=False)
        other_log = logged_calls(other_http)

    assert other.status_code == 200
    assert [call["fault"] for call in other_log] == [None]
    assert post(http, "openai", stream=False).status_code == 429


def test_concurrent_requests_take_each_queued_fault_exactly_once(http: httpx.Client, base_url: str) -> None:
    queue(http, OPENAI_MODEL, *[{"status": 429}] * 20)
    statuses: list[int] = []
    lock = threading.Lock()

    def send_five() -> None:
        with httpx.Client(base_url=base_url) as own:
            for _ in range(5):
                path, headers, body = SSE_REQUESTS["openai"]
                status = own.post(path, headers=headers, json=body).status_code
                with lock:
                    statuses.append(status)

    threads = [threading.Thread(target=send_five) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200] * 20 + [429] * 20
    assert sum(call["fault"] is not None for call in logged_calls(http)) == 20


# Status faults, in each provider's error shape


def test_openai_status_fault_is_openais_error_with_retry_after(http: httpx.Client, client: OpenAI) -> None:
    queue(http, OPENAI_MODEL, {"status": 429, "retry_after": 2}, {"status": 503})

    with pytest.raises(openai.RateLimitError) as throttled:
        client.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": "x"}])
    unavailable = post(http, "openai", stream=True)

    assert throttled.value.response.headers["retry-after"] == "2"
    assert throttled.value.response.headers["x-request-id"].startswith("req_")
    assert throttled.value.body == {
        "message": "Rate limit reached for requests. Please try again later.",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert unavailable.status_code == 503
    assert unavailable.json()["error"]["type"] == "server_error"
    assert "retry-after" not in unavailable.headers


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (429, "rate_limit_error"),
        (529, "overloaded_error"),
        (500, "api_error"),
        (503, "api_error"),
        (404, "not_found_error"),
    ],
)
def test_anthropic_status_fault_is_anthropics_error(http: httpx.Client, status: int, error_type: str) -> None:
    queue(http, ANTHROPIC_MODEL, {"status": status, "retry_after": 1})

    response = post(http, "anthropic", stream=True)

    assert response.status_code == status
    assert response.json()["type"] == "error"
    assert set(response.json()["error"]) == {"type", "message"}
    assert response.json()["error"]["type"] == error_type
    assert response.headers["request-id"].startswith("req_")
    assert response.headers["retry-after"] == "1"


@pytest.mark.parametrize(
    ("status", "error_code"),
    [
        (429, "ThrottlingException"),
        (500, "InternalServerException"),
        (503, "ServiceUnavailableException"),
        (408, "ModelTimeoutException"),
        (400, "ValidationException"),
    ],
)
@pytest.mark.parametrize("operation", ["converse", "converse_stream"])
def test_bedrock_status_fault_is_raised_by_boto3_as_the_modeled_exception(
    http: httpx.Client, base_url: str, status: int, error_code: str, operation: str
) -> None:
    queue(http, BEDROCK_MODEL, {"status": status, "retry_after": 3})
    with contextlib.closing(bedrock_client(base_url)) as bedrock:
        with pytest.raises(botocore.exceptions.ClientError) as raised:
            getattr(bedrock, operation)(modelId=BEDROCK_MODEL, messages=BEDROCK_MESSAGES)

        assert isinstance(raised.value, getattr(bedrock.exceptions, error_code))
    metadata = raised.value.response["ResponseMetadata"]
    assert metadata["HTTPStatusCode"] == status
    assert metadata["RequestId"]
    assert metadata["HTTPHeaders"]["retry-after"] == "3"
    assert raised.value.response["Error"]["Code"] == error_code
    assert raised.value.response["Error"]["Message"]


def test_embeddings_take_status_faults_too(http: httpx.Client, client: OpenAI, bedrock: Any) -> None:
    queue(http, "text-embedding-3-small", {"status": 429, "retry_after": 4})
    queue(http, TITAN, {"status": 503})

    with pytest.raises(openai.RateLimitError) as throttled:
        client.embeddings.create(model="text-embedding-3-small", input="hi")
    with pytest.raises(bedrock.exceptions.ServiceUnavailableException):
        bedrock.invoke_model(modelId=TITAN, body=json.dumps({"inputText": "hi"}))

    assert throttled.value.response.headers["retry-after"] == "4"
    assert [call["operation"] for call in logged_calls(http)] == ["embeddings", "invoke"]


# First-byte delays


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
def test_first_byte_delay_holds_back_the_status_line_then_answers_normally(
    http: httpx.Client, api: str, stream: bool
) -> None:
    queue(http, MODELS[api], {"first_byte_delay_s": DELAY_S})
    path, headers, body = SSE_REQUESTS[api]

    started = time.monotonic()
    with http.stream("POST", path, headers=headers, json={**body, "stream": stream}) as response:
        waited = time.monotonic() - started
        response.read()

    assert waited >= DELAY_S
    assert response.status_code == 200
    if stream:
        payloads = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
        assert text_deltas(api, payloads) == DELTAS
    else:
        assert "".join(DELTAS) in response.text


def test_first_byte_delay_past_the_read_timeout_is_a_timeout_for_each_client(http: httpx.Client, base_url: str) -> None:
    queue(http, OPENAI_MODEL, {"first_byte_delay_s": 2 * SHORT_TIMEOUT_S})
    queue(http, BEDROCK_MODEL, {"first_byte_delay_s": 2 * SHORT_TIMEOUT_S})
    queue(http, TITAN, {"first_byte_delay_s": 2 * SHORT_TIMEOUT_S})

    with (
        OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0, timeout=SHORT_TIMEOUT_S) as sdk,
        pytest.raises(openai.APITimeoutError),
    ):
        sdk.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": "x"}], stream=True)
    with contextlib.closing(bedrock_client(base_url, read_timeout_s=SHORT_TIMEOUT_S)) as bedrock:
        with pytest.raises(botocore.exceptions.ReadTimeoutError):
            bedrock.converse(modelId=BEDROCK_MODEL, messages=BEDROCK_MESSAGES)
        with pytest.raises(botocore.exceptions.ReadTimeoutError):
            bedrock.invoke_model(modelId=TITAN, body=json.dumps({"inputText": "hi"}))


# Cuts


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_cut_stream_breaks_after_n_deltas_without_any_end_event(http: httpx.Client, api: str) -> None:
    queue(http, MODELS[api], {"cut_after": 3})

    payloads, error = read_sse(http, api)

    assert isinstance(error, httpx.RemoteProtocolError)
    assert "incomplete chunked read" in str(error)
    assert text_deltas(api, payloads) == DELTAS[:3]
    assert text_deltas(api, payloads[-1:]) == [DELTAS[2]]  # nothing after the third delta: no finish, no usage


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_cut_after_more_deltas_than_the_reply_has_breaks_before_the_end_events(http: httpx.Client, api: str) -> None:
    queue(http, MODELS[api], {"cut_after": 50})

    payloads, error = read_sse(http, api)

    assert isinstance(error, httpx.RemoteProtocolError)
    assert text_deltas(api, payloads) == DELTAS
    assert text_deltas(api, payloads[-1:]) == [DELTAS[-1]]


def test_cut_stream_is_a_connection_error_for_the_openai_sdk(http: httpx.Client, client: OpenAI) -> None:
    queue(http, OPENAI_MODEL, {"cut_after": 2})
    received: list[str] = []

    with pytest.raises(openai.APIConnectionError):
        openai_stream_texts(client, received)

    assert "".join(received) == "Echo: one"


def test_cut_converse_stream_ends_with_urllib3_protocol_error_in_boto3(http: httpx.Client, bedrock: Any) -> None:
    queue(http, BEDROCK_MODEL, {"cut_after": 2})
    received: list[str] = []

    with pytest.raises(urllib3.exceptions.ProtocolError, match="Response ended prematurely"):
        converse_stream_events(bedrock, received)

    assert received == ["messageStart", "+Echo:", "+ one"]


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_cut_non_stream_answer_sends_half_the_declared_body_then_drops(http: httpx.Client, api: str) -> None:
    queue(http, MODELS[api], {"cut_after": 0})
    path, headers, body = SSE_REQUESTS[api]

    with pytest.raises(httpx.RemoteProtocolError, match=r"received \d+ bytes, expected \d+"):
        http.post(path, headers=headers, json=body)


def test_cut_converse_answer_reaches_boto3_as_a_response_without_output(http: httpx.Client, bedrock: Any) -> None:
    # botocore reads bodies with enforce_content_length=False: the short body is not an error to it,
    # and the half JSON parses to nothing.
    queue(http, BEDROCK_MODEL, {"cut_after": 1})

    response = bedrock.converse(modelId=BEDROCK_MODEL, messages=BEDROCK_MESSAGES)

    assert set(response) == {"ResponseMetadata"}
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_cut_invoke_answer_breaks_reading_the_body_in_boto3(http: httpx.Client, bedrock: Any) -> None:
    queue(http, TITAN, {"cut_after": 1})
    response = bedrock.invoke_model(modelId=TITAN, body=json.dumps({"inputText": "hi"}))

    with pytest.raises(botocore.exceptions.ResponseStreamingError, match="IncompleteRead"):
        response["body"].read()


# Malformed frames


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_malformed_stream_sends_one_unparseable_event_then_ends(http: httpx.Client, api: str) -> None:
    queue(http, MODELS[api], {"malformed_after": 2})

    payloads, error = read_sse(http, api)

    assert error is None
    assert payloads[-1] == "{not json"
    assert text_deltas(api, payloads[:-1]) == DELTAS[:2]


def test_malformed_stream_raises_json_decode_error_from_the_openai_sdk(http: httpx.Client, client: OpenAI) -> None:
    queue(http, OPENAI_MODEL, {"malformed_after": 1})
    received: list[str] = []

    with pytest.raises(json.JSONDecodeError):
        openai_stream_texts(client, received)

    assert "".join(received) == "Echo:"


def test_malformed_converse_stream_raises_checksum_mismatch_in_boto3(http: httpx.Client, bedrock: Any) -> None:
    queue(http, BEDROCK_MODEL, {"malformed_after": 2})
    received: list[str] = []

    with pytest.raises(ChecksumMismatch):
        converse_stream_events(bedrock, received)

    assert received == ["messageStart", "+Echo:", "+ one"]


def test_malformed_non_stream_answer_is_a_complete_200_with_half_the_json(http: httpx.Client) -> None:
    queue(http, OPENAI_MODEL, {"malformed_after": 0})

    response = post(http, "openai", stream=False)

    assert response.status_code == 200
    assert response.text.startswith('{"id":"chatcmpl-')
    with pytest.raises(json.JSONDecodeError):
        response.json()


# Stalls


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_stalled_stream_pauses_after_n_deltas_then_finishes(http: httpx.Client, api: str) -> None:
    queue(http, MODELS[api], {"stall_after": 2, "seconds": DELAY_S})
    path, headers, body = SSE_REQUESTS[api]
    arrivals: list[tuple[float, str]] = []

    started = time.monotonic()
    with http.stream("POST", path, headers=headers, json={**body, "stream": True}) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append((time.monotonic() - started, line.removeprefix("data: ")))

    payloads = [payload for _, payload in arrivals]
    delta_times = [at for at, payload in arrivals if text_deltas(api, [payload])]
    assert text_deltas(api, payloads) == DELTAS
    assert delta_times[2] >= DELAY_S
    # Chunks can reach the client thread a few ms late and bunched (the server shares its GIL),
    # so the pause is located, not measured, between the second and the third delta.
    assert delta_times[2] - delta_times[1] > DELAY_S / 2
    assert payloads[-1] in ("[DONE]", '{"type":"message_stop"}')


def test_stall_past_the_read_timeout_is_a_timeout_mid_stream(http: httpx.Client, base_url: str) -> None:
    queue(http, OPENAI_MODEL, {"stall_after": 2, "seconds": 2 * SHORT_TIMEOUT_S})
    queue(http, BEDROCK_MODEL, {"stall_after": 2, "seconds": 2 * SHORT_TIMEOUT_S})
    from_openai: list[str] = []
    from_bedrock: list[str] = []

    with (
        OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0, timeout=SHORT_TIMEOUT_S) as sdk,
        pytest.raises(openai.APITimeoutError),
    ):
        openai_stream_texts(sdk, from_openai)
    with (
        contextlib.closing(bedrock_client(base_url, read_timeout_s=SHORT_TIMEOUT_S)) as bedrock,
        pytest.raises(urllib3.exceptions.ReadTimeoutError),
    ):
        converse_stream_events(bedrock, from_bedrock)

    assert "".join(from_openai) == "Echo: one"
    assert from_bedrock == ["messageStart", "+Echo:", "+ one"]


def test_stalled_non_stream_answer_arrives_whole_after_the_pause(http: httpx.Client, bedrock: Any) -> None:
    queue(http, BEDROCK_MODEL, {"stall_after": 1, "seconds": DELAY_S})

    started = time.monotonic()
    response = bedrock.converse(modelId=BEDROCK_MODEL, messages=BEDROCK_MESSAGES)

    assert time.monotonic() - started >= DELAY_S
    assert response["output"]["message"]["content"] == [{"text": "Echo: one two three four"}]
