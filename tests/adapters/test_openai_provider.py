"""The OpenAI-compatible transport: what it sends, and each failure as the caller will see it."""

import json
from collections.abc import Callable

import httpx
import pytest

from paymaster.adapters.providers.openai_compatible import OpenAICompatibleProvider
from paymaster.domain.chat import ChatRequest, Finished, TextDelta, Usage, UsageReported
from paymaster.domain.errors import ProviderError, ProviderRejectedError, ProviderTimeoutError
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
    [(400, ProviderRejectedError), (404, ProviderRejectedError), (429, ProviderError), (500, ProviderError)],
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
