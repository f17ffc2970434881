"""The fake OpenAI provider, driven over a socket by the official openai SDK and raw httpx."""

import asyncio
import base64
import itertools
import json
import math
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any, cast

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from paymaster_local.fakes import API_KEY_ENV, serve_in_thread
from paymaster_local.fakes.openai_api import create_openai_app
from paymaster_local.fakes.script import DEFAULT_EMBEDDING_DIMENSIONS, embed

CHUNK_DELAY_S = 0.05
MODEL = "gpt-4o-mini"
CONVERSATION: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello there"},
    {"role": "assistant", "content": "hi"},
    {"role": "user", "content": "tell me a joke"},
]
# (2 + 3) + (2 + 3) + (1 + 3) + (4 + 3): words of each message plus 3 per message.
CONVERSATION_PROMPT_TOKENS = 21
REPLY = "Echo: tell me a joke"


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_in_thread(create_openai_app(chunk_delay_s=CHUNK_DELAY_S)) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0) as sdk:
        yield sdk


def test_completion_echoes_the_last_user_message_with_usage(client: OpenAI) -> None:
    completion = client.chat.completions.create(model=MODEL, messages=CONVERSATION)

    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == MODEL
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == REPLY
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == CONVERSATION_PROMPT_TOKENS
    assert completion.usage.completion_tokens == 5
    assert completion.usage.total_tokens == CONVERSATION_PROMPT_TOKENS + 5


def test_completion_is_cut_at_max_tokens_with_finish_reason_length(client: OpenAI) -> None:
    completion = client.chat.completions.create(model=MODEL, messages=CONVERSATION, max_tokens=3)

    assert completion.choices[0].message.content == "Echo: tell me"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


def test_completion_wire_format_has_exactly_openais_fields(base_url: str) -> None:
    response = httpx.post(
        f"{base_url}/v1/chat/completions",
        headers={"Authorization": "Bearer x"},
        json={"model": MODEL, "messages": CONVERSATION},
    )

    body = response.json()
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    assert isinstance(body["created"], int)
    assert body["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop", "logprobs": None}
    ]
    assert body["usage"] == {"prompt_tokens": 21, "completion_tokens": 5, "total_tokens": 26}


def test_stream_without_usage_sends_role_then_words_then_finish(client: OpenAI) -> None:
    chunks = list(client.chat.completions.create(model=MODEL, messages=CONVERSATION, stream=True))

    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == REPLY
    assert [chunk.choices[0].finish_reason for chunk in chunks] == [None] * 6 + ["stop"]
    assert all(chunk.usage is None for chunk in chunks)


def test_stream_with_include_usage_ends_with_a_usage_chunk(client: OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=CONVERSATION, max_tokens=2, stream=True, stream_options={"include_usage": True}
        )
    )

    *content_chunks, usage_chunk = chunks
    assert "".join(chunk.choices[0].delta.content or "" for chunk in content_chunks) == "Echo: tell"
    assert content_chunks[-1].choices[0].finish_reason == "length"
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.prompt_tokens == CONVERSATION_PROMPT_TOKENS
    assert usage_chunk.usage.completion_tokens == 2


def _sse_data(base_url: str, body: dict[str, object]) -> list[str]:
    response = httpx.post(f"{base_url}/v1/chat/completions", headers={"Authorization": "Bearer x"}, json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = response.text.split("\n\n")
    assert events[-1] == ""
    assert all(event.startswith("data: ") for event in events[:-1])
    return [event.removeprefix("data: ") for event in events[:-1]]


def test_stream_wire_format_marks_usage_null_only_when_usage_is_requested(base_url: str) -> None:
    request = {"model": MODEL, "messages": CONVERSATION, "stream": True}

    plain = _sse_data(base_url, request)
    with_usage = _sse_data(base_url, {**request, "stream_options": {"include_usage": True}})

    assert plain[-1] == with_usage[-1] == "[DONE]"
    assert all("usage" not in json.loads(data) for data in plain[:-1])
    *earlier, usage_chunk = (json.loads(data) for data in with_usage[:-1])
    assert all(chunk["usage"] is None for chunk in earlier)
    assert earlier[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert earlier[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 21, "completion_tokens": 5, "total_tokens": 26}


def test_stream_chunks_arrive_one_word_at_a_time(client: OpenAI) -> None:
    words = "one two three four five six seven"
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": words}]
    list(client.chat.completions.create(model=MODEL, messages=messages, stream=True))  # warm the SDK

    arrivals = [
        time.monotonic()
        for chunk in client.chat.completions.create(model=MODEL, messages=messages, stream=True)
        if chunk.choices[0].delta.content
    ]

    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert len(gaps) == len(words.split())  # "Echo:" plus one chunk per word
    assert arrivals[-1] - arrivals[0] >= 0.8 * len(gaps) * CHUNK_DELAY_S
    assert statistics.median(gaps) >= CHUNK_DELAY_S / 2


def test_async_client_completes_and_streams(base_url: str) -> None:
    async def run() -> tuple[str | None, str]:
        async with AsyncOpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0) as sdk:
            completion = await sdk.chat.completions.create(model=MODEL, messages=CONVERSATION)
            stream = await sdk.chat.completions.create(model=MODEL, messages=CONVERSATION, stream=True)
            streamed = "".join([chunk.choices[0].delta.content or "" async for chunk in stream])
            return completion.choices[0].message.content, streamed

    assert asyncio.run(run()) == (REPLY, REPLY)


def test_models_are_listed(client: OpenAI) -> None:
    assert [model.id for model in client.models.list()] == ["gpt-4o-mini", "gpt-4o"]


@pytest.mark.parametrize("authorization", [None, "Bearer", "Basic eDp5"])
def test_request_without_a_bearer_key_is_401_in_openai_error_shape(base_url: str, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.post(
        f"{base_url}/v1/chat/completions", headers=headers, json={"model": MODEL, "messages": CONVERSATION}
    )

    assert response.status_code == 401
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/chat/completions", {"model": MODEL, "messages": CONVERSATION}),
        ("POST", "/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi"}),
        ("GET", "/v1/models", None),
    ],
)
def test_an_app_given_a_key_accepts_only_that_bearer_key(method: str, path: str, body: object) -> None:
    with serve_in_thread(create_openai_app(chunk_delay_s=0, api_key="sk-dev-right")) as url:
        wrong = httpx.request(method, url + path, headers={"Authorization": "Bearer sk-dev-wrong"}, json=body)
        right = httpx.request(method, url + path, headers={"Authorization": "Bearer sk-dev-right"}, json=body)

    assert wrong.status_code == 401
    assert wrong.json()["error"] == {
        "message": "Incorrect API key provided.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
    assert right.status_code == 200


def test_missing_messages_is_400_naming_the_parameter(base_url: str) -> None:
    response = httpx.post(
        f"{base_url}/v1/chat/completions", headers={"Authorization": "Bearer x"}, json={"model": MODEL}
    )

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "Missing required parameter: 'messages'.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "missing_required_parameter",
        }
    }


def test_sdk_raises_bad_request_for_empty_messages(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=[])

    assert raised.value.code == "empty_array"
    assert raised.value.param == "messages"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_module_entry_point_serves_both_fakes() -> None:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "paymaster_local.fakes", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                models = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": "Bearer x"})
                break
            except httpx.ConnectError:
                assert server.poll() is None
                assert time.monotonic() < deadline
                time.sleep(0.05)
        unsigned_converse = httpx.post(f"http://127.0.0.1:{port}/model/m/converse", json={})
    finally:
        server.terminate()
        server.wait(timeout=10)

    assert models.status_code == 200
    assert unsigned_converse.status_code == 403


def test_module_entry_point_accepts_only_the_key_in_its_environment() -> None:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "paymaster_local.fakes", "--port", str(port)],
        env={**os.environ, API_KEY_ENV: "sk-dev-from-env"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1/models"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                wrong = httpx.get(url, headers={"Authorization": "Bearer x"})
                break
            except httpx.ConnectError:
                assert server.poll() is None
                assert time.monotonic() < deadline
                time.sleep(0.05)
        right = httpx.get(url, headers={"Authorization": "Bearer sk-dev-from-env"})
    finally:
        server.terminate()
        server.wait(timeout=10)

    assert wrong.status_code == 401
    assert right.status_code == 200


# Embeddings

EMBEDDING_MODEL = "text-embedding-3-small"


def test_embeddings_are_float_vectors_with_openais_envelope(base_url: str) -> None:
    response = httpx.post(
        f"{base_url}/v1/embeddings",
        headers={"Authorization": "Bearer x"},
        json={"model": EMBEDDING_MODEL, "input": ["hello there", "hi"]},
    )

    body = response.json()
    assert response.headers["x-request-id"].startswith("req_")
    assert set(body) == {"object", "data", "model", "usage"}
    assert (body["object"], body["model"]) == ("list", EMBEDDING_MODEL)
    assert [set(item) for item in body["data"]] == [{"object", "index", "embedding"}] * 2
    assert [(item["object"], item["index"]) for item in body["data"]] == [("embedding", 0), ("embedding", 1)]
    assert body["data"][0]["embedding"] == list(embed("hello there"))
    assert len(body["data"][1]["embedding"]) == DEFAULT_EMBEDDING_DIMENSIONS
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


def test_sdk_default_base64_and_explicit_float_give_the_same_vector(client: OpenAI) -> None:
    decoded = client.embeddings.create(model=EMBEDDING_MODEL, input="hello there")  # the SDK asks for base64
    as_floats = client.embeddings.create(model=EMBEDDING_MODEL, input="hello there", encoding_format="float")

    assert decoded.data[0].embedding == as_floats.data[0].embedding == list(embed("hello there"))
    assert math.isclose(math.hypot(*decoded.data[0].embedding), 1, rel_tol=1e-6)
    assert decoded.usage.prompt_tokens == as_floats.usage.total_tokens == 2


def test_explicit_base64_is_little_endian_float32(client: OpenAI) -> None:
    response = client.embeddings.create(
        model=EMBEDDING_MODEL, input="hello there", encoding_format="base64", dimensions=3
    )

    raw = base64.b64decode(cast(str, response.data[0].embedding))
    assert struct.unpack("<3f", raw) == embed("hello there", 3)


def test_dimensions_shorten_the_vector_to_a_rescaled_prefix(client: OpenAI) -> None:
    full = client.embeddings.create(model=EMBEDDING_MODEL, input="hello", dimensions=16).data[0].embedding
    short = client.embeddings.create(model=EMBEDDING_MODEL, input="hello", dimensions=4).data[0].embedding

    scale = math.hypot(*full[:4])
    assert len(full) == 16
    assert short == pytest.approx([number / scale for number in full[:4]], rel=1e-5)


def test_token_arrays_cost_their_length(client: OpenAI) -> None:
    one_array = client.embeddings.create(model=EMBEDDING_MODEL, input=[9906, 1070, 3])
    arrays = client.embeddings.create(model=EMBEDDING_MODEL, input=[[9906, 1070], [3]])

    assert one_array.usage.prompt_tokens == 3
    assert len(one_array.data) == 1
    assert arrays.usage.prompt_tokens == 3
    assert [item.index for item in arrays.data] == [0, 1]


@pytest.mark.parametrize("bad_input", ["", [], [""], ["a", ""], [[]], ["a", 1], [1.5], {"text": "a"}])
def test_bad_embedding_input_is_openais_400(client: OpenAI, bad_input: Any) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model=EMBEDDING_MODEL, input=bad_input, encoding_format="float")

    assert raised.value.body == {
        "message": "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"encoding_format": "int8"}, "encoding_format"), ({"dimensions": 0}, "dimensions"), ({"input": None}, "input")],
)
def test_bad_embedding_parameters_are_400_naming_them(base_url: str, extra: dict[str, Any], param: str) -> None:
    response = httpx.post(
        f"{base_url}/v1/embeddings",
        headers={"Authorization": "Bearer x"},
        json={"model": EMBEDDING_MODEL, "input": "hi", **extra},
    )

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


# Tool calls

WEATHER_TOOL: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL_WEATHER: list[ChatCompletionMessageParam] = [{"role": "user", "content": 'call get_weather {"city":"Paris"}'}]
# (3 + 3) prompt tokens; the call costs '{"city": "Paris"}' (2 words) + 1 for the name.
CALL_PROMPT_TOKENS = 6


def test_completion_calls_the_tool_the_user_asks_for(client: OpenAI) -> None:
    completion = client.chat.completions.create(model=MODEL, messages=CALL_WEATHER, tools=[WEATHER_TOOL])

    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    assert message.tool_calls is not None
    (call,) = message.tool_calls
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city": "Paris"}')
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (CALL_PROMPT_TOKENS, 3)


def test_tool_call_wire_format_is_openais(base_url: str) -> None:
    response = httpx.post(
        f"{base_url}/v1/chat/completions",
        headers={"Authorization": "Bearer x"},
        json={"model": MODEL, "messages": CALL_WEATHER, "tools": [WEATHER_TOOL]},
    )

    choice = response.json()["choices"][0]
    call_id = choice["message"]["tool_calls"][0]["id"]
    assert choice == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        "logprobs": None,
        "finish_reason": "tool_calls",
    }


def test_streamed_tool_call_names_the_tool_first_then_sends_the_arguments_in_pieces(base_url: str) -> None:
    data = _sse_data(
        base_url,
        {
            "model": MODEL,
            "messages": CALL_WEATHER,
            "tools": [WEATHER_TOOL],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )

    *chunks, usage_chunk = (json.loads(item) for item in data[:-1])
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    call_id = deltas[0]["tool_calls"][0]["id"]
    assert deltas[0] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"index": 0, "id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": ""}}
        ],
    }
    assert deltas[1:-1] == [
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": ' "Paris"}'}}]},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert usage_chunk["usage"]["completion_tokens"] == 3
    assert data[-1] == "[DONE]"


def test_sdk_stream_accumulates_the_tool_call(client: OpenAI) -> None:
    with client.chat.completions.stream(model=MODEL, messages=CALL_WEATHER, tools=[WEATHER_TOOL]) as stream:
        completion = stream.get_final_completion()

    (call,) = completion.choices[0].message.tool_calls or []
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city": "Paris"}')
    assert completion.choices[0].finish_reason == "tool_calls"


def test_a_tool_result_is_echoed_and_the_call_and_result_count_as_prompt(client: OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [
        *CALL_WEATHER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C and sunny"},
    ]

    completion = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])

    assert completion.choices[0].message.content == "Echo: 21 C and sunny"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    # user (3 + 3), assistant call get_weather {"city": "Paris"} (3 + 3), tool result (4 + 3)
    assert completion.usage.prompt_tokens == 19


@pytest.mark.parametrize(
    ("tools", "text"),
    [
        pytest.param([], 'call get_weather {"city": "Paris"}', id="the request defines no tools"),
        pytest.param([WEATHER_TOOL], 'call get_time {"zone": "CET"}', id="an undefined tool"),
        pytest.param([WEATHER_TOOL], "call get_weather Paris", id="arguments not JSON"),
        pytest.param([WEATHER_TOOL], 'call get_weather ["Paris"]', id="arguments not an object"),
    ],
)
def test_anything_but_a_call_of_a_defined_tool_is_echoed(
    client: OpenAI, tools: list[ChatCompletionToolParam], text: str
) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": text}], tools=tools or openai.omit
    )

    assert completion.choices[0].message.content == f"Echo: {text}"
    assert completion.choices[0].message.tool_calls is None


def test_a_call_that_does_not_fit_max_tokens_is_not_made(client: OpenAI) -> None:
    completion = client.chat.completions.create(model=MODEL, messages=CALL_WEATHER, tools=[WEATHER_TOOL], max_tokens=2)

    assert completion.choices[0].message.content == "Echo: call"
    assert completion.choices[0].finish_reason == "length"


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        pytest.param(
            [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_1", "content": "x"}],
            "messages with role 'tool' must be a response to a preceeding message with 'tool_calls'",
            id="a result without a call",
        ),
        pytest.param(
            [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
                        {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "x"},
                {"role": "user", "content": "and?"},
            ],
            "The following tool_call_ids did not have response messages: call_2",
            id="a call without a result",
        ),
    ],
)
def test_tool_messages_must_answer_the_calls_before_them(client: OpenAI, messages: Any, message: str) -> None:
    with pytest.raises(openai.BadRequestError, match=message):
        client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])


def test_a_tool_without_a_name_is_400(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model=MODEL, messages=CALL_WEATHER, tools=[cast(Any, {"type": "function", "function": {}})]
        )

    assert raised.value.param == "tools[0].function.name"
