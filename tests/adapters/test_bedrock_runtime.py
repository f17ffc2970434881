"""The thin Bedrock client sends what botocore's `bedrock-runtime` client sends — method, path,
body and signed headers, the signature included — and makes of each answer what botocore's
makes of it; where the two differ (a stream or body that breaks off), the test says how."""

import contextlib
import json
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import botocore.session
import httpx
import pytest
import urllib3
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError, ReadTimeoutError, ResponseStreamingError

from paymaster.adapters.aws_environment import StaticCredentials
from paymaster.adapters.bedrock_runtime import BedrockRuntimeWire
from paymaster_local.fakes.eventstream import corrupt_message_crc, encode_exception
from tests.adapters.scripted_bedrock import (
    CUT_MID_STREAM,
    CUT_SHORT,
    EVENT_STREAM,
    FIRST_BYTE_S,
    LATE,
    STALLED,
    STREAM,
    Reply,
    ScriptedBedrock,
    aws_error,
    exchange,
    stream_then,
)
from tests.contract.recordings import recorded_json

NOW = datetime(2026, 11, 29, 18, 25, 38, tzinfo=UTC)
CREDENTIALS = StaticCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-from-sts")
ENDPOINT = "https://bedrock-runtime.eu-central-1.amazonaws.com"
REGION = "eu-central-1"
PROFILE_ARN = "arn:aws:bedrock:eu-central-1:111122223333:inference-profile/eu.anthropic.claude-sonnet-4-20250514-v1:0"
# A Converse request with a system prompt, tools and inferenceConfig (temperature, stop sequences).
CONVERSE: dict[str, Any] = recorded_json("bedrock/converse_request_expected.json")["provider_request"] | {
    "modelId": PROFILE_ARN
}
INVOKE: dict[str, Any] = recorded_json("bedrock/titan_embed_v2_request_expected.json")["provider_request"]


def botocore_client(endpoint: str = ENDPOINT) -> Any:
    """botocore's client as the gateway used to build it: no retries, the same timeouts."""
    return botocore.session.get_session().create_client(
        "bedrock-runtime",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=CREDENTIALS.access_key,
        aws_secret_access_key=CREDENTIALS.secret_key,
        aws_session_token=CREDENTIALS.token,
        config=Config(
            connect_timeout=1,
            read_timeout=FIRST_BYTE_S,
            retries={"mode": "standard", "total_max_attempts": 1},
            # With AWS_BEARER_TOKEN_BEDROCK set, botocore would pick Bearer auth.
            auth_scheme_preference="sigv4",
        ),
    )


def thin_client(transport: httpx.BaseTransport, endpoint: str = ENDPOINT) -> BedrockRuntimeWire:
    return BedrockRuntimeWire(
        transport,
        endpoint_url=endpoint,
        region=REGION,
        credentials=CREDENTIALS,
        timeout=httpx.Timeout(FIRST_BYTE_S, connect=1),
        clock=lambda: NOW,
    )


# What is sent


class _Sent(Exception):  # not an error: how the request is taken from botocore
    pass


def botocore_sends(operation: str, arguments: dict[str, Any]) -> tuple[str, str, bytes, dict[str, str]]:
    """(method, path as sent, body, headers) of botocore's request, at NOW."""
    sent: list[Any] = []

    def take(request: Any, **_: Any) -> None:
        sent.append(request)
        raise _Sent

    client = botocore_client()
    client.meta.events.register("before-send", take)
    with (
        mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)),
        pytest.raises(_Sent),
    ):
        getattr(client, operation)(**arguments)
    (request,) = sent
    url = urllib.parse.urlsplit(request.url)
    headers = {
        name.lower(): value.decode() if isinstance(value, bytes) else value for name, value in request.headers.items()
    }
    return request.method, url.path, request.body, headers | {"host": url.netloc}


def thin_sends(operation: str, arguments: dict[str, Any]) -> tuple[str, str, bytes, dict[str, str]]:
    """(method, path as sent, body, headers) of the thin client's request, at NOW."""
    sent: list[httpx.Request] = []

    def take(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        stream = operation == "converse_stream"
        return httpx.Response(
            200, headers=EVENT_STREAM if stream else {}, stream=httpx.ByteStream(b"" if stream else b"{}")
        )

    response = getattr(thin_client(httpx.MockTransport(take)), operation)(**arguments)
    if "stream" in response:
        list(response["stream"])
    if "body" in response:
        response["body"].read()
    (request,) = sent
    return request.method, request.url.raw_path.decode(), request.content, dict(request.headers)


@pytest.mark.parametrize(
    ("operation", "arguments"),
    [("converse", CONVERSE), ("converse_stream", CONVERSE), ("invoke_model", INVOKE)],
    ids=["converse", "converse_stream", "invoke_model"],
)
def test_the_request_is_botocore_s_to_the_signature(operation: str, arguments: dict[str, Any]) -> None:
    their_method, their_path, their_body, their_headers = botocore_sends(operation, arguments)
    our_method, our_path, our_body, our_headers = thin_sends(operation, arguments)

    signed = their_headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert (our_method, our_path, our_body) == (their_method, their_path, their_body)
    assert {name: our_headers.get(name) for name in [*signed, "authorization"]} == {
        name: their_headers.get(name) for name in [*signed, "authorization"]
    }
    assert "x-amz-security-token" in signed


def test_a_model_arn_is_one_percent_encoded_path_segment_signed_encoded_twice() -> None:
    _, path, _, headers = botocore_sends("converse", CONVERSE)

    assert path == "/model/" + urllib.parse.quote(PROFILE_ARN, safe="") + "/converse"
    assert "%3A" in path
    assert "%2F" in path
    assert thin_sends("converse", CONVERSE)[1] == path
    assert headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261129/{REGION}/bedrock/")


# What is answered


@pytest.fixture
def clients(scripted_server: tuple[str, list[ScriptedBedrock]]) -> Iterator[tuple[Any, BedrockRuntimeWire]]:
    theirs = botocore_client(scripted_server[0])
    yield theirs, thin_client(httpx.HTTPTransport(), scripted_server[0])
    theirs.close()


def metadata(response: dict[str, Any]) -> dict[str, Any]:
    """`ResponseMetadata` less botocore's retry bookkeeping: with one attempt allowed it marks
    every answer `MaxAttemptsReached`."""
    return {key: value for key, value in response.get("ResponseMetadata", {}).items() if key != "MaxAttemptsReached"}


def raised(error: Exception) -> tuple[Any, ...]:
    """What a caller can tell of an error: its kind and message; a ClientError's `Error` and
    `ResponseMetadata` (botocore raises the modeled subclass, ThrottlingException…)."""
    if isinstance(error, ClientError):
        kind = "EventStreamError" if isinstance(error, EventStreamError) else "ClientError"
        return kind, error.response["Error"], metadata(error.response)
    return type(error).__name__, str(error)


def answered(client: Any, operation: str, arguments: dict[str, Any]) -> Any:
    """The answer with its stream's events or its body read whole, or what was raised, where."""
    try:
        answer = dict(getattr(client, operation)(**arguments))
    except Exception as error:  # compared, not handled
        return raised(error)
    answer["ResponseMetadata"] = metadata(answer)
    if "stream" in answer:
        stream = answer.pop("stream")
        answer["events"] = events = []
        with contextlib.closing(stream):
            try:
                events.extend(stream)
            except Exception as error:  # compared, not handled
                events.append(raised(error))
    if "body" in answer:
        try:
            answer["body"] = answer["body"].read()
        except Exception as error:  # compared, not handled
            answer["body"] = raised(error)
    return answer


def both(scripted: ScriptedBedrock, clients: tuple[Any, BedrockRuntimeWire], operation: str, reply: Reply) -> list[Any]:
    """What botocore's client, then the thin one, make of the same reply."""
    scripted.replies += [reply, reply]
    arguments = INVOKE if operation == "invoke_model" else CONVERSE
    return [answered(client, operation, arguments) for client in clients]


ERRORS = [
    pytest.param(exchange("bedrock/error_throttling.json"), id="ThrottlingException, as recorded"),
    pytest.param(aws_error(400, "ValidationException", "Malformed input request."), id="ValidationException"),
    pytest.param(aws_error(500, "InternalServerException", "Internal error."), id="500 with an error type"),
    pytest.param(
        Reply(400, {}, [json.dumps({"__type": "com.amazon.coral#AccessDeniedException"}).encode()]), id="__type"
    ),
    pytest.param(Reply(503, {}, [b""]), id="bare 503"),
    pytest.param(Reply(502, {"content-type": "text/html"}, [b"<html><body>Bad Gateway</body></html>"]), id="HTML 502"),
    pytest.param(Reply(504, {}, [b"upstream timed out"]), id="5xx, not JSON"),
    pytest.param(LATE, id="no answer in time"),
]


@pytest.mark.parametrize(
    "reply", [pytest.param(exchange("bedrock/converse_response_tool_use.json"), id="answer"), *ERRORS]
)
def test_converse_answers_as_botocore_does(scripted: ScriptedBedrock, clients: Any, reply: Reply) -> None:
    theirs, ours = both(scripted, clients, "converse", reply)

    assert ours == theirs


def in_pieces(frames: list[bytes], size: int = 7) -> list[bytes | float]:
    whole = b"".join(frames)
    return [whole[start : start + size] for start in range(0, len(whole), size)]


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(headers=EVENT_STREAM, parts=STREAM, stream=True), id="events"),
        pytest.param(Reply(headers=EVENT_STREAM, parts=in_pieces(STREAM), stream=True), id="events in 7-byte pieces"),
        pytest.param(
            stream_then(encode_exception("throttlingException", "Slow down.")), id="in-stream throttlingException"
        ),
        pytest.param(
            stream_then(encode_exception("modelStreamErrorException", "The model stopped.")),
            id="in-stream modelStreamErrorException",
        ),
        pytest.param(stream_then(corrupt_message_crc(STREAM[3])), id="a frame with a bad CRC"),
        *ERRORS,
    ],
)
def test_converse_stream_answers_as_botocore_does(scripted: ScriptedBedrock, clients: Any, reply: Reply) -> None:
    theirs, ours = both(scripted, clients, "converse_stream", reply)

    assert ours == theirs


@pytest.mark.parametrize(
    "reply", [pytest.param(exchange("bedrock/titan_embed_v2_response.json"), id="answer"), *ERRORS]
)
def test_invoke_model_answers_as_botocore_does(scripted: ScriptedBedrock, clients: Any, reply: Reply) -> None:
    theirs, ours = both(scripted, clients, "invoke_model", reply)

    assert ours == theirs


def events_then_error(client: Any) -> tuple[list[dict[str, Any]], Exception]:
    stream = client.converse_stream(**CONVERSE)["stream"]
    events: list[dict[str, Any]] = []
    with contextlib.closing(stream):
        try:
            events.extend(stream)
        except Exception as error:  # compared, not handled
            return events, error
    raise AssertionError("the stream did not fail")


@pytest.mark.parametrize(
    ("reply", "botocore_lets_through", "thin_raises"),
    [
        pytest.param(STALLED, urllib3.exceptions.ReadTimeoutError, ReadTimeoutError, id="stalled"),
        pytest.param(CUT_MID_STREAM, urllib3.exceptions.ProtocolError, ResponseStreamingError, id="cut"),
    ],
)
def test_a_stream_that_stalls_or_breaks_off_raises_botocore_s_error_where_botocore_lets_urllib3_s_through(
    scripted: ScriptedBedrock, clients: Any, reply: Reply, botocore_lets_through: type, thin_raises: type
) -> None:
    """botocore's event stream lets urllib3's errors through unwrapped; the thin client raises what
    botocore's StreamingBody raises for a body (the providers meter both as accepted)."""
    scripted.replies += [reply, reply]
    (their_events, theirs), (our_events, ours) = (events_then_error(client) for client in clients)

    assert our_events == their_events
    assert len(our_events) == 3
    assert isinstance(theirs, botocore_lets_through)
    assert type(ours) is thin_raises


def test_a_200_body_cut_short_is_a_response_streaming_error(scripted: ScriptedBedrock, clients: Any) -> None:
    """botocore reads a cut Converse body as far as it got and parses that to an answer without
    `output`; an InvokeModel body it reads as a ResponseStreamingError. The thin client raises
    ResponseStreamingError for both."""
    converse_theirs, converse_ours = both(scripted, clients, "converse", CUT_SHORT)
    invoke_theirs, invoke_ours = both(scripted, clients, "invoke_model", CUT_SHORT)

    assert set(converse_theirs) == {"ResponseMetadata"}
    assert converse_ours[0] == "ResponseStreamingError"
    assert (invoke_theirs["body"][0], invoke_ours["body"][0]) == ("ResponseStreamingError", "ResponseStreamingError")
