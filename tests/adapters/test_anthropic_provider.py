"""The Anthropic transport: what it sends, and each failure as the caller will see it."""

import json
from collections.abc import Callable

import httpx
import pytest

from paymaster.adapters.providers.anthropic import AnthropicProvider
from paymaster.domain.chat import ChatRequest, Finished, TextDelta, ToolCall, ToolCallDelta, Usage, UsageReported
from paymaster.domain.errors import ProviderError, ProviderRejectedError, ProviderThrottledError, ProviderTimeoutError
from paymaster.domain.policy import Deployment, Timeouts
from paymaster.ports import ProviderCall
from paymaster_local.fakes import create_fake_providers_app, serve_in_thread

CALL = ProviderCall(
    request=ChatRequest.model_validate({"model": "virtual", "messages": [{"role": "user", "content": "hi"}]}),
    deployment=Deployment(provider="anthropic", model="claude-sonnet-4-20250514"),
    max_output_tokens=64,
)
MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "content": [{"type": "text", "text": "hello"}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 9, "output_tokens": 1},
}
SSE = (
    "event: message_start\n"
    'data: {"type":"message_start","message":{"usage":{"input_tokens":9,"output_tokens":1}}}\n\n'
    "event: content_block_start\n"
    'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    "event: ping\n"
    'data: {"type":"ping"}\n\n'
    "event: content_block_delta\n"
    'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hel"}}\n\n'
    "event: content_block_delta\n"
    'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}}\n\n'
    "event: content_block_stop\n"
    'data: {"type":"content_block_stop","index":0}\n\n'
    "event: message_delta\n"
    'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}\n\n'
    "event: message_stop\n"
    'data: {"type":"message_stop"}\n\n'
)


def provider(answer: Callable[[httpx.Request], httpx.Response]) -> AnthropicProvider:
    return AnthropicProvider(
        httpx.MockTransport(answer), "https://api.anthropic.com/", api_key=lambda: "sk-ant-test", timeouts=Timeouts()
    )


def sse(body: str) -> httpx.Response:
    return httpx.Response(200, content=body.encode(), headers={"content-type": "text/event-stream"})


def test_completion_request_carries_key_version_deployment_and_limit() -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=MESSAGE, headers={"request-id": "req_1"})

    completion = provider(answer).complete(CALL)

    (request,) = sent
    assert str(request.url) == "https://api.anthropic.com/v1/messages"
    assert request.headers["x-api-key"] == "sk-ant-test"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    assert json.loads(request.content) == {
        "model": "claude-sonnet-4-20250514",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    assert (completion.text, completion.usage, completion.provider_request_id) == ("hello", Usage(9, 1), "req_1")


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, ProviderRejectedError), (404, ProviderRejectedError), (429, ProviderThrottledError), (500, ProviderError)],
)
def test_error_status_keeps_the_provider_s_message_and_request_id(status: int, error: type[ProviderError]) -> None:
    body = {"type": "error", "error": {"type": "some_error", "message": "something specific"}}
    answer = httpx.Response(status, json=body, headers={"request-id": "req_9"})

    with pytest.raises(error) as raised:
        provider(lambda _: answer).complete(CALL)

    assert type(raised.value) is error
    assert raised.value.status == status
    assert raised.value.provider_request_id == "req_9"
    assert "some_error: something specific" in raised.value.message


def test_timeout_and_unreachable_are_distinct_failures() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no first byte", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ProviderTimeoutError):
        provider(slow).complete(CALL)
    with pytest.raises(ProviderError, match="could not be reached") as raised:
        provider(refused).complete(CALL)
    assert not isinstance(raised.value, ProviderTimeoutError)


def test_stream_asks_for_events_and_yields_text_finish_usage() -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return sse(SSE)

    events = list(provider(answer).stream(CALL))

    assert json.loads(sent[0].content)["stream"] is True
    assert events == [TextDelta("hel"), TextDelta("lo"), Finished("stop"), UsageReported(Usage(9, 2))]


def test_error_event_mid_stream_is_a_provider_error() -> None:
    broken = SSE.split("event: content_block_stop", maxsplit=1)[0] + (
        'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )
    events = provider(lambda _: sse(broken)).stream(CALL)

    assert [next(events), next(events)] == [TextDelta("hel"), TextDelta("lo")]
    with pytest.raises(ProviderError, match="Overloaded"):
        next(events)


def test_malformed_stream_data_is_a_provider_error_not_a_crash() -> None:
    answer = sse('event: message_start\ndata: {"type": "message_st\n\n')

    with pytest.raises(ProviderError, match="malformed"):
        list(provider(lambda _: answer).stream(CALL))


def test_stream_refused_before_it_starts_raises_before_any_event() -> None:
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too large"}}
    answer = httpx.Response(400, json=body, headers={"request-id": "req_3"})

    with pytest.raises(ProviderRejectedError, match="max_tokens: too large") as raised:
        next(provider(lambda _: answer).stream(CALL))
    assert raised.value.provider_request_id == "req_3"


def test_adapter_and_fake_agree_over_a_socket() -> None:
    with serve_in_thread(create_fake_providers_app(chunk_delay_s=0)) as url:
        transport = httpx.HTTPTransport()
        adapter = AnthropicProvider(transport, url, api_key=lambda: "sk-ant-test", timeouts=Timeouts())
        keyless = AnthropicProvider(transport, url, api_key=lambda: None, timeouts=Timeouts())
        empty = ProviderCall(
            request=CALL.request.model_copy(update={"messages": []}), deployment=CALL.deployment, max_output_tokens=8
        )

        completion = adapter.complete(CALL)
        events = list(adapter.stream(CALL))
        with pytest.raises(ProviderError, match="authentication_error") as unauthenticated:
            keyless.complete(CALL)
        with pytest.raises(ProviderRejectedError, match="invalid_request_error") as rejected:
            adapter.complete(empty)

    # "hi": (1 + 3) prompt tokens; "Echo: hi": 2 completion tokens.
    assert (completion.text, completion.usage) == ("Echo: hi", Usage(4, 2))
    assert completion.provider_request_id is not None
    assert events == [TextDelta("Echo:"), TextDelta(" hi"), Finished("stop"), UsageReported(Usage(4, 2))]
    assert (unauthenticated.value.status, rejected.value.status) == (401, 400)


TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
TOOL_CONVERSATION = ProviderCall(
    request=ChatRequest.model_validate(
        {
            "model": "virtual",
            "messages": [
                {"role": "user", "content": "where is order 7?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": '{"order":7}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_1", "content": "shipped"},
                {"role": "user", "content": "and order 8?"},
            ],
            "tools": TOOLS,
            "tool_choice": "required",
            "parallel_tool_calls": False,
        }
    ),
    deployment=Deployment(provider="anthropic", model="claude-sonnet-4-20250514"),
    max_output_tokens=64,
)
TOOL_SSE = (
    "event: message_start\n"
    'data: {"type":"message_start","message":{"usage":{"input_tokens":30,"output_tokens":1}}}\n\n'
    "event: content_block_start\n"
    'data: {"type":"content_block_start","index":0,"content_block":'
    '{"type":"tool_use","id":"toolu_2","name":"lookup","input":{}}}\n\n'
    "event: content_block_delta\n"
    'data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}\n\n'
    "event: content_block_delta\n"
    'data: {"type":"content_block_delta","index":0,"delta":'
    '{"type":"input_json_delta","partial_json":"{\\"order\\": 8}"}}\n\n'
    "event: content_block_stop\n"
    'data: {"type":"content_block_stop","index":0}\n\n'
    "event: message_delta\n"
    'data: {"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}\n\n'
    "event: message_stop\n"
    'data: {"type":"message_stop"}\n\n'
)


def test_tool_conversation_goes_out_as_tool_blocks_and_tool_calls_come_back() -> None:
    sent: list[httpx.Request] = []
    answer = {
        "content": [{"type": "tool_use", "id": "toolu_2", "name": "lookup", "input": {"order": 8}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 30, "output_tokens": 9},
    }

    def respond(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=answer)

    completion = provider(respond).complete(TOOL_CONVERSATION)

    body = json.loads(sent[0].content)
    assert body["tools"] == [{"name": "lookup", "input_schema": {"type": "object", "properties": {}}}]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "where is order 7?"}]},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"order": 7}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "shipped"},
                {"type": "text", "text": "and order 8?"},
            ],
        },
    ]
    assert (completion.text, completion.finish_reason) == ("", "tool_calls")
    assert completion.tool_calls == (ToolCall("toolu_2", "lookup", '{"order": 8}'),)


def test_streamed_tool_calls_arrive_as_pieces() -> None:
    events = list(provider(lambda _: sse(TOOL_SSE)).stream(TOOL_CONVERSATION))

    assert events == [
        ToolCallDelta(0, "toolu_2", "lookup", ""),
        ToolCallDelta(0, None, None, '{"order": 8}'),
        Finished("tool_calls"),
        UsageReported(Usage(30, 9)),
    ]


def test_adapter_and_fake_agree_on_a_tool_call_and_its_result_over_a_socket() -> None:
    weather = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    question: dict[str, object] = {"role": "user", "content": 'call get_weather {"city": "Paris"}'}

    def ask(*messages: dict[str, object]) -> ProviderCall:
        request = ChatRequest.model_validate({"model": "v", "messages": list(messages), "tools": weather})
        return ProviderCall(request=request, deployment=CALL.deployment, max_output_tokens=64)

    with serve_in_thread(create_fake_providers_app(chunk_delay_s=0)) as url:
        adapter = AnthropicProvider(httpx.HTTPTransport(), url, api_key=lambda: "sk-ant-test", timeouts=Timeouts())
        called = adapter.complete(ask(question))
        (tool_call,) = called.tool_calls
        answered = adapter.complete(
            ask(
                question,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": tool_call.id,
                            "type": "function",
                            "function": {"name": tool_call.name, "arguments": tool_call.arguments},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": tool_call.id, "content": "21 C and sunny"},
            )
        )

    assert (called.finish_reason, tool_call.name, tool_call.arguments) == (
        "tool_calls",
        "get_weather",
        '{"city": "Paris"}',
    )
    assert (answered.text, answered.finish_reason) == ("Echo: 21 C and sunny", "stop")
