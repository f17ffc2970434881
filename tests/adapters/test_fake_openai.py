"""The fake OpenAI provider, driven over a socket by the official openai SDK and raw httpx."""

import asyncio
import itertools
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from openai.types.chat import ChatCompletionMessageParam

from paymaster_local.fakes import serve_in_thread
from paymaster_local.fakes.openai_api import create_openai_app

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
