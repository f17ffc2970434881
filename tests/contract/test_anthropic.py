"""Anthropic Messages: the recorded request, answers, event streams and errors against `anthropic`."""

import pytest

from paymaster.adapters.providers import anthropic
from paymaster.adapters.providers.anthropic import AnthropicProvider
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
from paymaster.domain.errors import ProviderError, ProviderThrottledError
from paymaster.domain.policy import Timeouts
from paymaster.domain.routing import failure_reason
from tests.contract.recordings import RecordedServer, chat_call, recorded_json

REQUEST = "anthropic/messages_request_expected.json"
CALL = chat_call(REQUEST, "anthropic")
EXPECTED = recorded_json(REQUEST)["provider_request"]
REQUEST_ID = {"request-id": "req_011CVbYq3NfR8tLwP2mXk7Hs"}

ANSWER = "Paris: 14 °C with light rain. Lyon: 17 °C and sunny."
PARIS = ToolCall("toolu_01A09q90qw90lq917835lq9Z", "get_weather", '{"location": "Paris, France", "unit": "celsius"}')
LYON = ToolCall("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", '{"location": "Lyon, France", "unit": "celsius"}')


def provider(server: RecordedServer) -> AnthropicProvider:
    return AnthropicProvider(
        server.transport(), "https://api.anthropic.com", api_key=lambda: "sk-ant-test", timeouts=Timeouts()
    )


def fragments(index: int, *arguments: str) -> list[StreamEvent]:
    return [ToolCallDelta(index, None, None, piece) for piece in arguments]


def test_conversation_with_tool_results_is_sent_as_recorded() -> None:
    assert anthropic.to_wire(CALL, stream=False) == EXPECTED["complete"]
    assert anthropic.to_wire(CALL, stream=True) == EXPECTED["stream"]


def test_answer_with_text_and_two_tool_uses_meters_the_cache_write() -> None:
    server = RecordedServer.json_body("anthropic/messages_response_tool_use.json", REQUEST_ID)

    completion = provider(server).complete(CALL)

    (request,) = server.sent
    assert str(request.url) == "https://api.anthropic.com/v1/messages"
    assert (request.headers["x-api-key"], request.headers["anthropic-version"]) == ("sk-ant-test", "2023-06-01")
    assert server.sent_body == EXPECTED["complete"]
    assert completion == Completion(
        text="I'll check the weather in both cities.",
        finish_reason="tool_calls",
        usage=Usage(input_tokens=182, output_tokens=131, cache_write_tokens=2048),
        provider_request_id="req_011CVbYq3NfR8tLwP2mXk7Hs",
        tool_calls=(PARIS, LYON),
    )


def test_text_answer_meters_the_cache_read() -> None:
    server = RecordedServer.json_body("anthropic/messages_response_text.json", REQUEST_ID)

    completion = provider(server).complete(CALL)

    assert completion == Completion(
        text=ANSWER,
        finish_reason="stop",
        usage=Usage(input_tokens=209, output_tokens=24, cache_read_tokens=2048),
        provider_request_id="req_011CVbYq3NfR8tLwP2mXk7Hs",
    )


def test_streamed_text_skips_ping_and_reports_usage_from_both_halves_at_message_stop() -> None:
    server = RecordedServer.event_stream("anthropic/messages_stream_text.sse", REQUEST_ID)

    events = list(provider(server).stream(CALL))

    assert server.sent_body == EXPECTED["stream"]
    assert events == [
        TextDelta("Paris: 14 °C"),
        TextDelta(" with light rain."),
        TextDelta(" Lyon: 17"),
        TextDelta(" °C and sunny."),
        Finished("stop"),
        UsageReported(Usage(input_tokens=209, output_tokens=24, cache_read_tokens=2048)),
    ]


def test_streamed_tool_uses_are_numbered_apart_from_the_text_block() -> None:
    server = RecordedServer.event_stream("anthropic/messages_stream_tool_use.sse", REQUEST_ID)

    events = list(provider(server).stream(CALL))

    assert events == [
        TextDelta("I'll check"),
        TextDelta(" the weather in"),
        TextDelta(" both cities."),
        ToolCallDelta(0, PARIS.id, "get_weather", ""),
        *fragments(0, '{"location": "Par', 'is, France"', ', "unit": "celsius"}'),
        ToolCallDelta(1, LYON.id, "get_weather", ""),
        *fragments(1, '{"locat', 'ion": "Lyon, France", "u', 'nit": "celsius"}'),
        Finished("tool_calls"),
        # message_delta restates only the output tokens here: the input side comes from message_start.
        UsageReported(Usage(input_tokens=182, output_tokens=131, cache_write_tokens=2048)),
    ]
    arguments = ["".join(e.arguments for e in events if isinstance(e, ToolCallDelta) and e.index == i) for i in (0, 1)]
    assert arguments == [PARIS.arguments, LYON.arguments]


def test_overloaded_error_event_after_message_start_is_accepted_and_metered_not_retried() -> None:
    """Anthropic accepted the call (200, message_start with the input tokens): it may bill it."""
    server = RecordedServer.event_stream("anthropic/messages_stream_overloaded.sse", REQUEST_ID)
    events: list[StreamEvent] = []

    with pytest.raises(ProviderError, match="overloaded_error: Overloaded") as raised:
        events.extend(provider(server).stream(CALL))

    assert (events, raised.value.accepted) == ([], True)
    assert failure_reason(raised.value) is None


@pytest.mark.parametrize("streamed", [False, True])
def test_overloaded_529_is_an_unavailable_provider_with_its_request_id(streamed: bool) -> None:
    server = RecordedServer.exchange("anthropic/error_overloaded_529.json")
    adapter = provider(server)

    with pytest.raises(ProviderError, match="the provider answered 529: overloaded_error: Overloaded") as raised:
        list(adapter.stream(CALL)) if streamed else adapter.complete(CALL)

    error = raised.value
    assert not isinstance(error, ProviderThrottledError)
    assert (error.status, error.provider_request_id, error.accepted) == (529, "req_011CVbZr6PqT3mWfX8sKd4Ny", False)
    assert failure_reason(error) == "unavailable"
