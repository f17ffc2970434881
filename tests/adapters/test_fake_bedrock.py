"""The fake Bedrock runtime, driven over a socket by the real boto3 client; its event framing."""

import contextlib
import itertools
import json
import math
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
from paymaster_local.fakes.eventstream import corrupt_message_crc, encode_event
from paymaster_local.fakes.script import embed

CHUNK_DELAY_S = 0.05
MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
PROFILE_ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
SYSTEM = [{"text": "be brief"}]
MESSAGES = [{"role": "user", "content": [{"text": "tell me a joke"}]}]
# (2 + 3) for the system prompt + (4 + 3) for the message: words plus 3 per message.
PROMPT_TOKENS = 12


def bedrock_client(base_url: str, read_timeout_s: float = 60) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=base_url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        # With AWS_BEARER_TOKEN_BEDROCK set, boto3 would pick Bearer auth, which refuses http://.
        config=Config(retries={"total_max_attempts": 1}, auth_scheme_preference="sigv4", read_timeout=read_timeout_s),
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


def test_botocore_reads_a_frame_with_a_corrupt_message_crc_whole_then_rejects_it() -> None:
    frame = encode_event("messageStop", {"stopReason": "end_turn"})
    corrupt = corrupt_message_crc(frame)
    buffer = EventStreamBuffer()
    buffer.add_data(corrupt)

    assert (len(corrupt), corrupt[:-4]) == (len(frame), frame[:-4])
    with pytest.raises(ChecksumMismatch, match="Checksum mismatch"):
        list(buffer)


# InvokeModel embeddings

TITAN_V2 = "amazon.titan-embed-text-v2:0"
TITAN_V1 = "amazon.titan-embed-text-v1"
COHERE_V3 = "cohere.embed-english-v3"
COHERE_V4_PROFILE = "us.cohere.embed-v4:0"


def _invoke(bedrock: Any, model_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    response = bedrock.invoke_model(modelId=model_id, body=json.dumps(body))
    return json.loads(response["body"].read()), response["ResponseMetadata"]["HTTPHeaders"]


def test_titan_embeds_the_input_text_and_meters_its_words(bedrock: Any) -> None:
    answer, headers = _invoke(bedrock, TITAN_V2, {"inputText": "hello there"})

    assert answer == {"embedding": list(embed("hello there")), "inputTextTokenCount": 2}
    assert headers["x-amzn-bedrock-input-token-count"] == "2"
    assert headers["x-amzn-requestid"]
    assert headers["content-type"] == "application/json"


def test_titan_honours_dimensions_and_normalize(bedrock: Any) -> None:
    answer, _ = _invoke(bedrock, TITAN_V2, {"inputText": "hello", "dimensions": 256, "normalize": False})

    assert answer["embedding"] == list(embed("hello", 256, normalize=False))
    assert math.hypot(*answer["embedding"]) > 1.5  # 256 numbers in [-1, 1), not rescaled


def test_cohere_embeds_each_text_without_a_count_in_the_body(bedrock: Any) -> None:
    texts = ["hello there", "hi"]
    answer, headers = _invoke(bedrock, COHERE_V3, {"texts": texts, "input_type": "search_document"})

    assert set(answer) == {"id", "embeddings", "texts", "response_type"}
    assert answer["embeddings"] == [list(embed(text)) for text in texts]
    assert (answer["texts"], answer["response_type"]) == (texts, "embeddings_floats")
    assert headers["x-amzn-bedrock-input-token-count"] == "3"


def test_cohere_v4_profile_answers_by_type_at_the_output_dimension(bedrock: Any) -> None:
    body = {"texts": ["hi"], "input_type": "search_query", "embedding_types": ["float"], "output_dimension": 256}

    answer, _ = _invoke(bedrock, COHERE_V4_PROFILE, body)

    assert answer["embeddings"] == {"float": [list(embed("hi", 256))]}
    assert answer["response_type"] == "embeddings_by_type"


@pytest.mark.parametrize(
    ("model_id", "body", "message"),
    [
        (TITAN_V2, {}, "required key [inputText] not found"),
        (TITAN_V2, {"inputText": ""}, "expected minLength: 1, actual: 0"),
        (TITAN_V2, {"inputText": "hi", "dimensions": 300}, "dimensions: 300 is not one of 256, 512, 1024"),
        (TITAN_V1, {"inputText": "hi", "dimensions": 256}, "extraneous key [dimensions] is not permitted"),
        (COHERE_V3, {"texts": ["hi"]}, "required key [input_type] not found"),
        (COHERE_V3, {"texts": ["hi"], "input_type": "query"}, "input_type: 'query' is not one of"),
        (COHERE_V3, {"texts": [], "input_type": "clustering"}, "texts: expected between 1 and 96 items, actual: 0"),
        (COHERE_V3, {"texts": ["hi"], "input_type": "clustering", "output_dimension": 256}, "extraneous key"),
        (MODEL_ID, {"prompt": "hi"}, "The fake Bedrock serves InvokeModel for embedding models only"),
    ],
)
def test_a_body_the_model_would_not_take_is_a_validation_exception(
    bedrock: Any, model_id: str, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(bedrock.exceptions.ValidationException) as raised:
        bedrock.invoke_model(modelId=model_id, body=json.dumps(body))

    assert message in raised.value.response["Error"]["Message"]
    assert raised.value.response["ResponseMetadata"]["RequestId"]


# Tool calls

TOOL_CONFIG = {
    "tools": [
        {
            "toolSpec": {
                "name": "get_weather",
                "description": "The weather in a city",
                "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}},
            }
        }
    ]
}
CALL_WEATHER = [{"role": "user", "content": [{"text": 'call get_weather {"city":"Paris"}'}]}]
TOOL_USE = {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}


def test_converse_calls_the_tool_the_user_asks_for(bedrock: Any) -> None:
    response = bedrock.converse(modelId=MODEL_ID, messages=CALL_WEATHER, toolConfig=TOOL_CONFIG)

    (block,) = response["output"]["message"]["content"]
    assert block["toolUse"]["toolUseId"].startswith("tooluse_")
    assert {key: block["toolUse"][key] for key in ("name", "input")} == {
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    assert response["stopReason"] == "tool_use"
    # (3 + 3) prompt tokens; '{"city": "Paris"}' is 2 words, plus 1 for the name.
    assert response["usage"] == {"inputTokens": 6, "outputTokens": 3, "totalTokens": 9}


def test_converse_stream_starts_a_tool_use_block_then_sends_its_input_in_pieces(bedrock: Any) -> None:
    events = list(bedrock.converse_stream(modelId=MODEL_ID, messages=CALL_WEATHER, toolConfig=TOOL_CONFIG)["stream"])

    assert [next(iter(event)) for event in events] == [
        "messageStart",
        "contentBlockStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    start = events[1]["contentBlockStart"]
    assert start == {
        "contentBlockIndex": 0,
        "start": {"toolUse": {"toolUseId": start["start"]["toolUse"]["toolUseId"], "name": "get_weather"}},
    }
    assert [event["contentBlockDelta"] for event in events[2:4]] == [
        {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '{"city":'}}},
        {"contentBlockIndex": 0, "delta": {"toolUse": {"input": ' "Paris"}'}}},
    ]
    assert events[-2] == {"messageStop": {"stopReason": "tool_use"}}
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 3


# user (3 + 3), assistant get_weather {"city": "Paris"} (3 + 3), then the result's words + 3
@pytest.mark.parametrize(
    ("result_content", "echo", "prompt_tokens"),
    [
        ([{"text": "21 C and sunny"}], "Echo: 21 C and sunny", 12 + 4 + 3),
        ([{"json": {"celsius": 21}}], 'Echo: {"celsius": 21}', 12 + 2 + 3),
    ],
)
def test_a_tool_result_is_echoed_and_the_call_and_result_count_as_prompt(
    bedrock: Any, result_content: list[dict[str, Any]], echo: str, prompt_tokens: int
) -> None:
    messages = [
        *CALL_WEATHER,
        {"role": "assistant", "content": [TOOL_USE]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": result_content}}]},
    ]

    response = bedrock.converse(modelId=MODEL_ID, messages=messages, toolConfig=TOOL_CONFIG)

    assert response["output"]["message"]["content"] == [{"text": echo}]
    assert response["stopReason"] == "end_turn"
    assert response["usage"]["inputTokens"] == prompt_tokens


@pytest.mark.parametrize(
    ("messages", "tool_config", "message"),
    [
        pytest.param(
            [*CALL_WEATHER, {"role": "assistant", "content": [TOOL_USE]}],
            None,
            "The toolConfig field must be defined when using toolUse and toolResult content blocks.",
            id="tool blocks without a toolConfig",
        ),
        pytest.param(
            [*CALL_WEATHER, {"role": "assistant", "content": [TOOL_USE]}, {"role": "user", "content": [{"text": "?"}]}],
            TOOL_CONFIG,
            "Expected toolResult blocks at messages.2.content for the following Ids: tooluse_1",
            id="a call without a result",
        ),
        pytest.param(
            [{"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_9", "content": [{"text": "x"}]}}]}],
            TOOL_CONFIG,
            "The toolResult blocks at messages.0.content answer toolUse ids that the previous turn did not use",
            id="a result without a call",
        ),
    ],
)
def test_tool_blocks_are_checked_as_bedrock_checks_them(
    bedrock: Any, messages: list[dict[str, Any]], tool_config: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(bedrock.exceptions.ValidationException) as raised:
        bedrock.converse(modelId=MODEL_ID, messages=messages, **({"toolConfig": tool_config} if tool_config else {}))

    assert raised.value.response["Error"]["Message"].startswith(message)
