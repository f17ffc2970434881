"""Pure translation between paymaster's request and Anthropic's Messages API."""

from typing import Any

import pytest

from paymaster.adapters.providers import anthropic
from paymaster.domain.chat import ChatRequest, Completion, Finished, TextDelta, ToolCall, Usage, UsageReported
from paymaster.domain.errors import ProviderError
from paymaster.domain.policy import Deployment
from paymaster.ports import ProviderCall


def call(body: dict[str, object], limit: int = 256) -> ProviderCall:
    return ProviderCall(
        request=ChatRequest.model_validate(body),
        deployment=Deployment(provider="anthropic", model="claude-sonnet-4-20250514"),
        max_output_tokens=limit,
    )


def test_body_moves_system_and_developer_text_to_system_and_merges_consecutive_turns() -> None:
    wire = anthropic.to_wire(
        call(
            {
                "model": "claude-sonnet-4",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "developer", "content": "answer in English"},
                    {"role": "user", "content": "hi"},
                    {"role": "user", "content": [{"type": "text", "text": "there"}]},
                    {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "joke?"},
                ],
                "max_tokens": 9999,
                "temperature": 0.2,
                "top_p": 0.9,
                "stop": "END",
                "seed": 7,
            }
        ),
        stream=False,
    )

    assert wire == {
        "model": "claude-sonnet-4-20250514",
        "max_tokens": 256,
        "system": "be brief\n\nanswer in English",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "there"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
            {"role": "user", "content": [{"type": "text", "text": "joke?"}]},
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["END"],
    }


def test_body_without_system_messages_has_no_system_and_a_stream_asks_for_one() -> None:
    wire = anthropic.to_wire(call({"model": "v", "messages": [{"role": "user", "content": "hi"}]}), stream=True)

    assert wire == {
        "model": "claude-sonnet-4-20250514",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "stream": True,
    }


def test_completion_joins_text_blocks_keeps_tool_calls_and_maps_usage_with_cache() -> None:
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Hello"},
            {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
            {"type": "text", "text": " world"},
        ],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": 12,
            "output_tokens": 5,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 40,
        },
    }

    assert anthropic.from_wire(body) == Completion(
        text="Hello world",
        finish_reason="stop",
        usage=Usage(12, 5, cache_read_tokens=100, cache_write_tokens=40),
        tool_calls=(ToolCall("t1", "f", "{}"),),
    )


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls")],
)
def test_stop_reasons_map_to_finish_reasons(stop_reason: str, finish: str) -> None:
    body = {"content": [], "stop_reason": stop_reason, "usage": {"input_tokens": 1, "output_tokens": 0}}

    assert anthropic.from_wire(body).finish_reason == finish


def test_an_answer_without_content_is_a_provider_error() -> None:
    with pytest.raises(ProviderError, match="not a Messages response"):
        anthropic.from_wire({"type": "message", "usage": {}})


def test_sse_lines_become_typed_events_even_without_a_final_blank_line() -> None:
    lines = [
        "event: ping",
        'data: {"type": "ping"}',
        "",
        'data: {"type": "message_stop"}',
    ]

    assert list(anthropic.sse_from_wire(lines)) == [
        ("ping", {"type": "ping"}),
        ("message_stop", {"type": "message_stop"}),
    ]


def test_malformed_sse_data_is_a_provider_error() -> None:
    with pytest.raises(ProviderError, match="malformed"):
        list(anthropic.sse_from_wire(["event: message_start", 'data: {"type": "mess', ""]))


STREAM: list[tuple[str, dict[str, Any]]] = [
    (
        "message_start",
        {
            "message": {
                "usage": {
                    "input_tokens": 12,
                    "cache_read_input_tokens": 100,
                    "cache_creation_input_tokens": 0,
                    "output_tokens": 1,
                }
            }
        },
    ),
    ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
    ("ping", {}),
    ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Echo:"}}),
    ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": " hi"}}),
    ("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta", "partial_json": "{"}}),
    ("content_block_stop", {"index": 0}),
    ("message_delta", {"delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 2}}),
    ("message_stop", {}),
]


def test_stream_yields_text_then_finish_then_usage_from_both_halves() -> None:
    assert list(anthropic.events_from_wire(STREAM)) == [
        TextDelta("Echo:"),
        TextDelta(" hi"),
        Finished("length"),
        UsageReported(Usage(12, 2, cache_read_tokens=100)),
    ]


def test_stream_without_message_stop_reports_no_usage() -> None:
    events = list(anthropic.events_from_wire(STREAM[:-1]))

    assert not any(isinstance(event, UsageReported) for event in events)


def test_error_event_mid_stream_is_a_provider_error_after_the_text_so_far() -> None:
    error = ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    events = anthropic.events_from_wire([*STREAM[:4], error, *STREAM[4:]])

    assert next(events) == TextDelta("Echo:")
    with pytest.raises(ProviderError, match="overloaded_error: Overloaded"):
        next(events)
