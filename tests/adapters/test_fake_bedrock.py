"""The fake Bedrock runtime, driven over a socket by the real boto3 client; its event framing."""

import contextlib
import itertools
import json
import statistics
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from openai import OpenAI

from paymaster_local.fakes import create_fake_providers_app, serve_in_thread
from paymaster_local.fakes.bedrock_api import create_bedrock_app
from paymaster_local.fakes.eventstream import encode_event

CHUNK_DELAY_S = 0.05
MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
PROFILE_ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
SYSTEM = [{"text": "be brief"}]
MESSAGES = [{"role": "user", "content": [{"text": "tell me a joke"}]}]
# (2 + 3) for the system prompt + (4 + 3) for the message: words plus 3 per message.
PROMPT_TOKENS = 12


def bedrock_client(base_url: str) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=base_url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        # With AWS_BEARER_TOKEN_BEDROCK set, boto3 would pick Bearer auth, which refuses http://.
        config=Config(retries={"total_max_attempts": 1}, auth_scheme_preference="sigv4"),
    )


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_in_thread(create_bedrock_app(chunk_delay_s=CHUNK_DELAY_S)) as url:
        yield url


@pytest.fixture(scope="module")
def bedrock(base_url: str) -> Iterator[Any]:
    client = bedrock_client(base_url)
    yield client
    client.close()


def test_converse_echoes_the_last_user_message_with_usage(bedrock: Any) -> None:
    response = bedrock.converse(modelId=MODEL_ID, system=SYSTEM, messages=MESSAGES)

    assert response["output"] == {"message": {"role": "assistant", "content": [{"text": "Echo: tell me a joke"}]}}
    assert response["stopReason"] == "end_turn"
    assert response["usage"] == {"inputTokens": PROMPT_TOKENS, "outputTokens": 5, "totalTokens": PROMPT_TOKENS + 5}
    assert response["metrics"]["latencyMs"] >= 0


def test_converse_is_cut_at_max_tokens_with_stop_reason_max_tokens(bedrock: Any) -> None:
    response = bedrock.converse(modelId=MODEL_ID, messages=MESSAGES, inferenceConfig={"maxTokens": 3})

    assert response["output"]["message"]["content"] == [{"text": "Echo: tell me"}]
    assert response["stopReason"] == "max_tokens"
    assert response["usage"]["outputTokens"] == 3


def test_converse_accepts_a_percent_encoded_inference_profile_arn(base_url: str) -> None:
    sent_urls: list[str] = []
    with contextlib.closing(bedrock_client(base_url)) as bedrock:
        bedrock.meta.events.register("before-send", lambda request, **_: sent_urls.append(request.url))
        response = bedrock.converse(modelId=PROFILE_ARN, messages=MESSAGES)

    assert sent_urls == [f"{base_url}/model/{urllib.parse.quote(PROFILE_ARN, safe='')}/converse"]
    assert response["output"]["message"]["content"] == [{"text": "Echo: tell me a joke"}]


def _stream_events(bedrock: Any, model_id: str = MODEL_ID, **request: Any) -> list[dict[str, Any]]:
    response = bedrock.converse_stream(modelId=model_id, messages=MESSAGES, **request)
    return list(response["stream"])


def test_converse_stream_sends_start_deltas_stop_and_metadata(bedrock: Any) -> None:
    events = _stream_events(bedrock, system=SYSTEM)

    assert [next(iter(event)) for event in events] == [
        "messageStart",
        *["contentBlockDelta"] * 5,
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert events[0] == {"messageStart": {"role": "assistant"}}
    deltas = [event["contentBlockDelta"] for event in events[1:-3]]
    assert {delta["contentBlockIndex"] for delta in deltas} == {0}
    assert "".join(delta["delta"]["text"] for delta in deltas) == "Echo: tell me a joke"
    assert events[-3] == {"contentBlockStop": {"contentBlockIndex": 0}}
    assert events[-2] == {"messageStop": {"stopReason": "end_turn"}}
    metadata = events[-1]["metadata"]
    assert metadata["usage"] == {"inputTokens": PROMPT_TOKENS, "outputTokens": 5, "totalTokens": PROMPT_TOKENS + 5}
    assert metadata["metrics"]["latencyMs"] >= 4 * CHUNK_DELAY_S * 1000


def test_converse_stream_is_cut_at_max_tokens(bedrock: Any) -> None:
    events = _stream_events(bedrock, model_id=PROFILE_ARN, inferenceConfig={"maxTokens": 2})

    text = "".join(event["contentBlockDelta"]["delta"]["text"] for event in events if "contentBlockDelta" in event)
    assert text == "Echo: tell"
    assert events[-2] == {"messageStop": {"stopReason": "max_tokens"}}
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 2


def test_converse_stream_deltas_arrive_one_word_at_a_time(bedrock: Any) -> None:
    words = "one two three four five six seven"
    messages = [{"role": "user", "content": [{"text": words}]}]
    list(bedrock.converse_stream(modelId=MODEL_ID, messages=messages)["stream"])  # warm botocore's parser

    arrivals = [
        time.monotonic()
        for event in bedrock.converse_stream(modelId=MODEL_ID, messages=messages)["stream"]
        if "contentBlockDelta" in event
    ]

    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert len(gaps) == len(words.split())  # "Echo:" plus one delta per word
    assert arrivals[-1] - arrivals[0] >= 0.8 * len(gaps) * CHUNK_DELAY_S
    assert statistics.median(gaps) >= CHUNK_DELAY_S / 2


@pytest.mark.parametrize("operation", ["converse", "converse_stream"])
def test_empty_messages_raise_validation_exception(bedrock: Any, operation: str) -> None:
    with pytest.raises(bedrock.exceptions.ValidationException) as raised:
        getattr(bedrock, operation)(modelId=MODEL_ID, messages=[])

    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "at least one message" in raised.value.response["Error"]["Message"]


def test_unsigned_request_is_403(base_url: str) -> None:
    response = httpx.post(f"{base_url}/model/{MODEL_ID}/converse", json={"messages": MESSAGES})

    assert response.status_code == 403
    assert set(response.json()) == {"message"}
    assert response.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"


def test_one_app_serves_openai_and_bedrock() -> None:
    with serve_in_thread(create_fake_providers_app(chunk_delay_s=0)) as url:
        with contextlib.closing(bedrock_client(url)) as bedrock:
            converse = bedrock.converse(modelId=MODEL_ID, messages=MESSAGES)
        with OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as openai_client:
            completion = openai_client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "tell me a joke"}]
            )

    assert converse["output"]["message"]["content"] == [{"text": "Echo: tell me a joke"}]
    assert completion.choices[0].message.content == "Echo: tell me a joke"


def test_encoded_events_round_trip_through_botocores_parser() -> None:
    first = encode_event("messageStop", {"stopReason": "end_turn"})
    second = encode_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " héllo"}})
    buffer = EventStreamBuffer()

    for offset in range(0, len(first + second), 7):  # arbitrary chunk boundaries, as from a socket
        buffer.add_data((first + second)[offset : offset + 7])
    messages = list(buffer)

    assert len(first) == 122
    assert [message.headers for message in messages] == [
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
        for event_type in ("messageStop", "contentBlockDelta")
    ]
    assert [json.loads(message.payload) for message in messages] == [
        {"stopReason": "end_turn"},
        {"contentBlockIndex": 0, "delta": {"text": " héllo"}},
    ]
    assert messages[0].prelude.total_length == len(first)


@pytest.mark.parametrize("corrupt_at", [5, 60])  # in the prelude, in the headers
def test_botocore_rejects_a_corrupted_event(corrupt_at: int) -> None:
    frame = bytearray(encode_event("messageStop", {"stopReason": "end_turn"}))
    frame[corrupt_at] ^= 0x01
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(frame))

    with pytest.raises(ChecksumMismatch):
        list(buffer)
