"""OpenAI Chat Completions: the recorded request, answers, streams and 429 against `openai_compatible`."""

import json
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from paymaster.adapters.providers import openai_compatible
from paymaster.adapters.providers.openai_compatible import OpenAICompatibleProvider
from paymaster.domain.chat import (
    Completion,
    Finished,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageReported,
)
from paymaster.domain.errors import ProviderThrottledError
from paymaster.domain.policy import Timeouts
from paymaster.domain.routing import failure_reason
from tests.contract.recordings import RECORDINGS, RecordedServer, chat_call, recorded_json

REQUEST = "openai/chat_request_tools.json"
CALL = chat_call(REQUEST, "openai")
EXPECTED = recorded_json(REQUEST)["provider_request"]
REQUEST_ID = {"x-request-id": "req_7c1d9e2f4a6b4c8d9e0f1a2b3c4d5e6f"}

ANSWER = "Paris: 14 °C with light rain. Lyon: 17 °C and sunny."
PARIS = ToolCall("call_Vq1AvbQ6pzU6cNHyGUvUt1Mf", "get_weather", '{"location":"Paris, France","unit":"celsius"}')
LYON = ToolCall("call_3kQmJbTiHxMr3mUx6nEoqQ9d", "get_weather", '{"location":"Lyon, France","unit":"celsius"}')


def provider(server: RecordedServer) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        server.transport(), "https://api.openai.com/v1", api_key=lambda: "sk-test", timeouts=Timeouts()
    )


def fragments(index: int, *arguments: str) -> list[StreamEvent]:
    return [ToolCallDelta(index, None, None, piece) for piece in arguments]


def test_conversation_with_tool_results_is_sent_as_recorded() -> None:
    assert openai_compatible.to_wire(CALL, stream=False) == EXPECTED["complete"]
    assert openai_compatible.to_wire(CALL, stream=True) == EXPECTED["stream"]


def test_answer_with_two_parallel_tool_calls() -> None:
    server = RecordedServer.json_body("openai/chat_response_tool_calls.json", REQUEST_ID)

    completion = provider(server).complete(CALL)

    (request,) = server.sent
    assert str(request.url) == "https://api.openai.com/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert server.sent_body == EXPECTED["complete"]
    assert completion == Completion(
        text="",
        finish_reason="tool_calls",
        usage=Usage(input_tokens=1187, output_tokens=52),
        provider_request_id="req_7c1d9e2f4a6b4c8d9e0f1a2b3c4d5e6f",
        tool_calls=(PARIS, LYON),
    )


def test_text_answer_counts_cached_prompt_tokens_apart() -> None:
    server = RecordedServer.json_body("openai/chat_response_text.json", REQUEST_ID)

    completion = provider(server).complete(CALL)

    assert completion == Completion(
        text=ANSWER,
        finish_reason="stop",
        usage=Usage(input_tokens=1342 - 1152, output_tokens=15, cache_read_tokens=1152),
        provider_request_id="req_7c1d9e2f4a6b4c8d9e0f1a2b3c4d5e6f",
    )


def test_answer_that_wrote_the_prompt_cache_meters_the_writes_apart() -> None:
    completion = openai_compatible.from_wire(recorded_json("openai/chat_response_cache_write.json"))

    assert completion.usage == Usage(
        input_tokens=4620 - 1024 - 3456, output_tokens=85, cache_read_tokens=1024, cache_write_tokens=3456
    )


def test_streamed_text_ends_with_finish_then_usage_from_the_chunk_without_choices() -> None:
    server = RecordedServer.event_stream("openai/chat_stream_text.sse", REQUEST_ID)

    events = list(provider(server).stream(CALL))

    assert server.sent_body == EXPECTED["stream"]
    words = ["Paris", ":", " 14", " °C", " with", " light", " rain", ".", " Lyon", ":", " 17", " °C", " and"]
    words += [" sunny", "."]
    assert events == [
        *(TextDelta(word) for word in words),
        Finished("stop"),
        UsageReported(Usage(input_tokens=1342 - 1152, output_tokens=15, cache_read_tokens=1152)),
    ]


def test_streamed_parallel_tool_calls_arrive_as_numbered_pieces() -> None:
    server = RecordedServer.event_stream("openai/chat_stream_tool_calls.sse", REQUEST_ID)

    events = list(provider(server).stream(CALL))

    assert events == [
        ToolCallDelta(0, PARIS.id, "get_weather", ""),
        *fragments(0, '{"lo', "cation", '":"', "Paris", ",", " France", '","', "unit", '":"', "c", "elsius", '"}'),
        ToolCallDelta(1, LYON.id, "get_weather", ""),
        *fragments(1, '{"lo', "cation", '":"', "Ly", "on", ",", " France", '","', "unit", '":"', "c", "elsius", '"}'),
        Finished("tool_calls"),
        UsageReported(Usage(input_tokens=1187, output_tokens=52)),
    ]
    arguments = ["".join(e.arguments for e in events if isinstance(e, ToolCallDelta) and e.index == i) for i in (0, 1)]
    assert arguments == [PARIS.arguments, LYON.arguments]


@pytest.mark.parametrize("streamed", [False, True])
def test_rate_limit_is_a_throttle_with_the_request_id_and_no_retry_hint(streamed: bool) -> None:
    server = RecordedServer.exchange("openai/error_429.json")
    adapter = provider(server)

    with pytest.raises(ProviderThrottledError) as raised:
        list(adapter.stream(CALL)) if streamed else adapter.complete(CALL)

    error = raised.value
    assert (error.status, error.provider_request_id) == (429, "req_5b0e2b6c7d1f4a9e8c3b2a1f0e9d8c7b")
    assert error.retry_after_s is None  # OpenAI sends no Retry-After; the wait is only in the message text
    assert "Rate limit reached for gpt-4o in organization" in str(error)
    assert failure_reason(error) == "throttled"


@pytest.mark.parametrize(
    "name",
    ["openai/chat_response_text.json", "openai/chat_response_tool_calls.json", "openai/chat_response_cache_write.json"],
)
def test_recorded_answer_is_a_chat_completion_to_the_openai_sdk(name: str) -> None:
    ChatCompletion.model_validate(recorded_json(name))


@pytest.mark.parametrize("name", ["openai/chat_stream_text.sse", "openai/chat_stream_tool_calls.sse"])
def test_recorded_stream_is_chunks_to_the_openai_sdk_then_done(name: str) -> None:
    data = [line[len("data: ") :] for line in (RECORDINGS / name).read_text(encoding="utf-8").splitlines() if line]

    chunks: list[dict[str, Any]] = [json.loads(item) for item in data[:-1]]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert data[-1] == "[DONE]"
    assert [chunk["choices"] for chunk in chunks[-1:]] == [[]]  # usage comes alone, after the finish
