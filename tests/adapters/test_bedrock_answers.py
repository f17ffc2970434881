"""Every kind of answer Bedrock can give, over real HTTP, and what the gateway's Bedrock providers
make of it: the result, or the error with its message, `accepted`, status and request id.

First written against botocore's client, which the providers used until the thin one
(`bedrock_runtime`); two messages changed with it, noted where they are, nothing else.

The providers are the ones the composition root builds (`build_providers`), pointed at a scripted
server (`scripted_bedrock`) that answers each request with bytes as Bedrock would send them: JSON,
event-stream frames (an in-stream exception and a frame with a bad CRC among them), errors with
`x-amzn-ErrorType`, a bare 503, an answer too late, a stall or a cut in the middle of a stream.
"""

import json
import os
import socket
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from paymaster import composition
from paymaster.adapters import aws_environment
from paymaster.adapters.providers.bedrock import BedrockProvider
from paymaster.adapters.settings import Settings
from paymaster.domain.chat import Completion, ToolCall, Usage
from paymaster.domain.embeddings import Embeddings
from paymaster.domain.errors import ProviderError
from paymaster.domain.policy import Policy
from paymaster.ports import ChatProvider, EmbeddingProvider
from paymaster_local.fakes.eventstream import corrupt_message_crc, encode_exception
from tests.adapters.scripted_bedrock import (
    CUT_MID_STREAM,
    CUT_SHORT,
    EVENT_STREAM,
    FIRST_BYTE_S,
    LATE,
    REQUEST_ID,
    STALLED,
    STREAM,
    Reply,
    ScriptedBedrock,
    aws_error,
    exchange,
    stream_then,
)
from tests.contract.recordings import StubBedrockRuntime, chat_call, embedding_call, recorded_json, recorded_jsonl
from tests.policies import DEMO, demo_raw

PROVIDER = "bedrock-us-east-1"
CALL = chat_call("bedrock/converse_request_expected.json", PROVIDER)
CONVERSE_REQUEST: dict[str, Any] = recorded_json("bedrock/converse_request_expected.json")["provider_request"]
EMBED_CALL = embedding_call("bedrock/titan_embed_v2_request_expected.json", PROVIDER)
# What the provider makes of the recorded stream's events (tests/contract/test_bedrock.py pins them).
STREAMED = list(
    BedrockProvider(StubBedrockRuntime(events=recorded_jsonl("bedrock/converse_stream_text.jsonl"))).stream(CALL)
)


@dataclass(frozen=True)
class Failed:
    """A provider error as the caller sees it."""

    kind: str
    message: str
    accepted: bool
    status: int | None = None
    request_id: str | None = None


def failed(error: ProviderError) -> Failed:
    return Failed(type(error).__name__, str(error), error.accepted, error.status, error.provider_request_id)


@pytest.fixture(autouse=True)
def lambda_s_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Credentials in the environment, as Lambda gives them; nothing else of the machine's AWS settings."""
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    aws_environment.botocore_session.cache_clear()
    yield
    aws_environment.botocore_session.cache_clear()


def build_bedrock(endpoint: str) -> tuple[ChatProvider, EmbeddingProvider]:
    """The chat and embeddings providers the composition builds for a Bedrock provider whose
    first-byte timeout is FIRST_BYTE_S, sent to `endpoint` as the local stack sends them."""
    raw = demo_raw()
    raw["providers"][PROVIDER]["timeouts"] = {"connect_s": 1, "first_byte_s": FIRST_BYTE_S, "total_s": 10}
    settings = Settings(
        policy_file=DEMO,
        counters_table="counters",
        settlement_queue_url="https://sqs.local/q",
        provider_endpoints={PROVIDER: endpoint},
    )
    chat, embeddings = composition.build_providers(Policy.model_validate(raw), settings)
    return chat[PROVIDER], embeddings[PROVIDER]


@pytest.fixture
def providers(scripted_server: tuple[str, list[ScriptedBedrock]]) -> tuple[ChatProvider, EmbeddingProvider]:
    return build_bedrock(scripted_server[0])


def outcome(run: Callable[[], Any]) -> Any:
    try:
        return run()
    except ProviderError as error:
        return failed(error)


def streamed(provider: ChatProvider) -> list[Any]:
    """The stream's events, then its error (a `Failed`) if it failed."""
    events: list[Any] = []
    try:
        events.extend(provider.stream(CALL))
    except ProviderError as error:
        events.append(failed(error))
    return events


THROTTLED = aws_error(429, "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/", "Too many.")


# Converse


def test_an_answer_is_a_completion_with_the_request_id(scripted: ScriptedBedrock, providers: Any) -> None:
    scripted.replies.append(exchange("bedrock/converse_response_tool_use.json"))

    completion = providers[0].complete(CALL)

    model_id = urllib.parse.quote(CALL.deployment.model, safe="")
    ((method, path, _, body),) = scripted.received
    assert (method, path) == ("POST", f"/model/{model_id}/converse")
    assert json.loads(body) == {key: value for key, value in CONVERSE_REQUEST.items() if key != "modelId"}
    assert completion == Completion(
        text="I'll check the weather in both cities.",
        finish_reason="tool_calls",
        usage=Usage(input_tokens=187, output_tokens=131, cache_write_tokens=2048),
        provider_request_id="4e8b1a7c-0d2f-4c96-b3e5-7a1f9d6c2b48",
        tool_calls=(
            ToolCall(
                "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "get_weather", '{"location": "Paris, France", "unit": "celsius"}'
            ),
            ToolCall(
                "tooluse_Qx3nP8sVtW1yB4cD6fH9jK", "get_weather", '{"location": "Lyon, France", "unit": "celsius"}'
            ),
        ),
    )


def complete(providers: tuple[ChatProvider, EmbeddingProvider]) -> Completion:
    return providers[0].complete(CALL)


def embed(providers: tuple[ChatProvider, EmbeddingProvider]) -> Embeddings:
    return providers[1].embed(EMBED_CALL)


@pytest.mark.parametrize(
    ("call", "reply", "expected"),
    [
        pytest.param(
            complete,
            THROTTLED,
            Failed("ProviderThrottledError", "Bedrock answered ThrottlingException: Too many.", False, 429, REQUEST_ID),
            id="converse: throttled",
        ),
        pytest.param(
            complete,
            aws_error(400, "ValidationException", "The model returned the following errors: bad."),
            Failed(
                "ProviderRejectedError",
                "Bedrock answered ValidationException: The model returned the following errors: bad.",
                False,
                400,
                REQUEST_ID,
            ),
            id="converse: rejected",
        ),
        pytest.param(
            complete,
            aws_error(500, "InternalServerException", "Internal error."),
            Failed(
                "ProviderError", "Bedrock answered InternalServerException: Internal error.", False, 500, REQUEST_ID
            ),
            id="converse: 500 with an error type",
        ),
        pytest.param(
            complete,
            Reply(503, {}, [b""]),
            Failed("ProviderError", "Bedrock answered 503: Service Unavailable", False, 503, None),
            id="converse: bare 503",
        ),
        pytest.param(
            complete,
            Reply(502, {"content-type": "text/html"}, [b"<html><body>Bad Gateway</body></html>"]),
            Failed("ProviderError", "Bedrock answered 502: Bad Gateway", False, 502, None),
            id="converse: 502 from a proxy",
        ),
        pytest.param(
            complete,
            LATE,
            Failed("ProviderTimeoutError", "Bedrock did not answer in time (ReadTimeoutError)", True),
            id="converse: no answer in time, it may have been generated",
        ),
        pytest.param(
            complete,
            CUT_SHORT,
            # With botocore's client: "Bedrock's answer is not a Converse response (KeyError('output'))"
            # (it read the cut body as far as it went, an answer without `output`).
            Failed("ProviderResponseError", "Bedrock's answer broke off (ResponseStreamingError)", True),
            id="converse: answer cut short",
        ),
        pytest.param(
            embed,
            aws_error(400, "ValidationException", "Malformed input request."),
            Failed(
                "ProviderRejectedError",
                "Bedrock answered ValidationException: Malformed input request.",
                False,
                400,
                REQUEST_ID,
            ),
            id="invoke: rejected",
        ),
        pytest.param(
            embed,
            LATE,
            Failed("ProviderTimeoutError", "Bedrock did not answer in time (ReadTimeoutError)", False),
            id="invoke: no answer in time",
        ),
        pytest.param(
            embed,
            CUT_SHORT,
            Failed(
                "ProviderResponseError", "Bedrock's answer broke off (ResponseStreamingError)", True, None, REQUEST_ID
            ),
            id="invoke: answer cut short",
        ),
    ],
)
def test_a_failed_call_is_the_provider_error_the_caller_sees(
    scripted: ScriptedBedrock, providers: Any, call: Callable[[Any], Any], reply: Reply, expected: Failed
) -> None:
    scripted.replies.append(reply)

    assert outcome(lambda: call(providers)) == expected


def test_an_unreachable_endpoint_is_a_provider_error_nothing_was_sent_to() -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    chat, _ = build_bedrock(f"http://127.0.0.1:{port}")

    assert outcome(lambda: chat.complete(CALL)) == Failed(
        "ProviderError", "Bedrock could not be reached (EndpointConnectionError)", False
    )


# ConverseStream


def test_a_stream_is_its_text_finish_and_usage(scripted: ScriptedBedrock, providers: Any) -> None:
    scripted.replies.append(Reply(headers=EVENT_STREAM, parts=STREAM, stream=True))

    events = streamed(providers[0])

    model_id = urllib.parse.quote(CALL.deployment.model, safe="")
    assert [(method, path) for method, path, _, _ in scripted.received] == [
        ("POST", f"/model/{model_id}/converse-stream")
    ]
    assert events == STREAMED


def test_a_stream_in_pieces_of_any_size_is_put_back_together(scripted: ScriptedBedrock, providers: Any) -> None:
    whole = b"".join(STREAM)
    scripted.replies.append(
        Reply(headers=EVENT_STREAM, parts=[whole[start : start + 7] for start in range(0, len(whole), 7)], stream=True)
    )

    assert streamed(providers[0]) == STREAMED


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        pytest.param(
            stream_then(encode_exception("throttlingException", "Too many tokens, please wait.")),
            [
                *STREAMED[:2],
                Failed(
                    "ProviderResponseError",
                    "Bedrock's stream failed: throttlingException: Too many tokens, please wait.",
                    True,
                ),
            ],
            id="accepted: in-stream throttlingException",
        ),
        pytest.param(
            stream_then(encode_exception("modelStreamErrorException", "The model stopped.")),
            [
                *STREAMED[:2],
                Failed(
                    "ProviderResponseError",
                    "Bedrock's stream failed: modelStreamErrorException: The model stopped.",
                    True,
                ),
            ],
            id="accepted: in-stream modelStreamErrorException",
        ),
        pytest.param(
            stream_then(corrupt_message_crc(STREAM[3])),
            [*STREAMED[:2], Failed("ProviderResponseError", "Bedrock's stream broke (ChecksumMismatch)", True)],
            id="accepted: a frame with a bad CRC",
        ),
        pytest.param(
            STALLED,
            [*STREAMED[:2], Failed("ProviderTimeoutError", "Bedrock stopped sending mid-stream", True)],
            id="accepted: a stall past the first-byte timeout",
        ),
        pytest.param(
            CUT_MID_STREAM,
            # With botocore's client the error was urllib3's, unwrapped: "(ProtocolError)".
            [*STREAMED[:2], Failed("ProviderResponseError", "Bedrock's stream broke (ResponseStreamingError)", True)],
            id="accepted: cut mid-way",
        ),
        pytest.param(
            THROTTLED,
            [
                Failed(
                    "ProviderThrottledError", "Bedrock answered ThrottlingException: Too many.", False, 429, REQUEST_ID
                )
            ],
            id="refused before its 200",
        ),
        pytest.param(
            LATE,
            [Failed("ProviderTimeoutError", "Bedrock did not answer in time (ReadTimeoutError)", False)],
            id="no status line in time: nothing generated yet",
        ),
    ],
)
def test_a_failed_stream_is_what_it_delivered_then_the_provider_error(
    scripted: ScriptedBedrock, providers: Any, reply: Reply, expected: list[Any]
) -> None:
    scripted.replies.append(reply)

    assert streamed(providers[0]) == expected


# InvokeModel (embeddings)


def test_an_embedding_answer_is_counted_by_its_header(scripted: ScriptedBedrock, providers: Any) -> None:
    scripted.replies.append(exchange("bedrock/titan_embed_v2_response.json"))

    embeddings = providers[1].embed(EMBED_CALL)

    ((method, path, _, body),) = scripted.received
    expected_request = recorded_json("bedrock/titan_embed_v2_request_expected.json")["provider_request"]
    model_id = urllib.parse.quote(expected_request["modelId"], safe="")
    assert (method, path, body) == ("POST", f"/model/{model_id}/invoke", expected_request["body"].encode())
    vector = tuple(recorded_json("bedrock/titan_embed_v2_response.json")["body"]["embedding"])
    assert embeddings == Embeddings(
        vectors=(vector,), input_tokens=12, provider_request_id="2f6a9d3c-8e1b-4a07-b5c2-d9e4f7a1c836"
    )
