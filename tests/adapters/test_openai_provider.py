"""The OpenAI-compatible transport: what it sends, and each failure as the caller will see it."""

import json
from collections.abc import Callable

import httpx
import pytest

from paymaster.adapters.providers.openai_compatible import OpenAICompatibleProvider
from paymaster.domain.chat import ChatRequest, Finished, TextDelta, ToolCall, ToolCallDelta, Usage, UsageReported
from paymaster.domain.errors import ProviderError, ProviderRejectedError, ProviderThrottledError, ProviderTimeoutError
from paymaster.domain.policy import Deployment, Timeouts
from paymaster.ports import ProviderCall

CALL = ProviderCall(
    request=ChatRequest.model_validate({"model": "virtual", "messages": [{"role": "user", "content": "hi"}]}),
    deployment=Deployment(provider="openai", model="gpt-4o-mini"),
    max_output_tokens=64,
)
COMPLETION = {
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 1},
}


def provider(answer: Callable[[httpx.Request], httpx.Response]) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        httpx.MockTransport(answer), "https://api.example.com/v1/", api_key=lambda: "sk-test", timeouts=Timeouts()
    )


def test_completion_request_carries_the_key_the_deployment_and_the_limit() -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=COMPLETION, headers={"x-request-id": "req_1"})

    completion = provider(answer).complete(CALL)

    (request,) = sent
    assert str(request.url) == "https://api.example.com/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert json.loads(request.content) == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 64,
    }
    assert (completion.text, completion.usage, completion.provider_request_id) == ("hello", Usage(9, 1), "req_1")


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, ProviderRejectedError), (404, ProviderRejectedError), (429, ProviderThrottledError), (500, ProviderError)],
)
def test_error_status_keeps_the_provider_s_message_and_request_id(status: int, error: type[ProviderError]) -> None:
    body = {"error": {"message": "something specific", "type": "x"}}
    answer = httpx.Response(status, json=body, headers={"x-request-id": "req_9"})

    with pytest.raises(error) as raised:
        provider(lambda _: answer).complete(CALL)

    assert type(raised.value) is error
    assert raised.value.status == status
    assert raised.value.provider_request_id == "req_9"
    assert "something specific" in raised.value.message


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


def test_stream_asks_for_usage_and_yields_text_finish_usage() -> None:
    sse = (
        'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
        'data: {"choices":[{"index":0,"delta":{"content":"hel"}}]}\n\n'
        'data: {"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}\n\n'
        'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2}}\n\n'
        "data: [DONE]\n\n"
    )
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, content=sse.encode(), headers={"content-type": "text/event-stream"})

    events = list(provider(answer).stream(CALL))

    assert json.loads(sent[0].content)["stream_options"] == {"include_usage": True}
    assert events == [TextDelta("hel"), TextDelta("lo"), Finished("stop"), UsageReported(Usage(9, 2))]


def test_malformed_stream_chunk_is_a_provider_error_not_a_crash() -> None:
    answer = httpx.Response(200, content=b'data: {"choices": [\n\n', headers={"content-type": "text/event-stream"})

    with pytest.raises(ProviderError, match="malformed"):
        list(provider(lambda _: answer).stream(CALL))


def test_stream_refused_before_it_starts_raises_before_any_event() -> None:
    answer = httpx.Response(400, json={"error": {"message": "bad max_tokens"}})

    with pytest.raises(ProviderRejectedError, match="bad max_tokens"):
        next(provider(lambda _: answer).stream(CALL))


TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"order":7}'}}
TOOL_CONVERSATION = ProviderCall(
    request=ChatRequest.model_validate(
        {
            "model": "virtual",
            "messages": [
                {"role": "user", "content": "where is order 7?"},
                {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "shipped"},
            ],
            "tools": TOOLS,
            "tool_choice": "auto",
        }
    ),
    deployment=Deployment(provider="openai", model="gpt-4o-mini"),
    max_output_tokens=64,
)


def test_tools_and_tool_messages_go_out_unchanged_and_tool_calls_come_back() -> None:
    sent: list[httpx.Request] = []
    answer = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 30, "completion_tokens": 9},
    }

    def respond(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=answer)

    completion = provider(respond).complete(TOOL_CONVERSATION)

    body = json.loads(sent[0].content)
    assert (body["tools"], body["tool_choice"]) == (TOOLS, "auto")
    assert body["messages"][1:] == [
        {"role": "assistant", "tool_calls": [TOOL_CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "shipped"},
    ]
    assert (completion.text, completion.finish_reason) == ("", "tool_calls")
    assert completion.tool_calls == (ToolCall("call_1", "lookup", '{"order":7}'),)


def test_streamed_tool_calls_arrive_as_pieces() -> None:
    sse = (
        'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":'
        '[{"index":0,"id":"call_1","type":"function","function":{"name":"lookup","arguments":""}}]}}]}\n\n'
        'data: {"choices":[{"index":0,"delta":{"tool_calls":'
        '[{"index":0,"function":{"arguments":"{\\"order\\":7}"}}]}}]}\n\n'
        'data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n'
        'data: {"choices":[],"usage":{"prompt_tokens":30,"completion_tokens":9}}\n\n'
        "data: [DONE]\n\n"
    )
    answer = httpx.Response(200, content=sse.encode(), headers={"content-type": "text/event-stream"})

    events = list(provider(lambda _: answer).stream(TOOL_CONVERSATION))

    assert events == [
        ToolCallDelta(0, "call_1", "lookup", ""),
        ToolCallDelta(0, None, None, '{"order":7}'),
        Finished("tool_calls"),
        UsageReported(Usage(30, 9)),
    ]
