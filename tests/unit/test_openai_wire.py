"""paymaster's answers are the shape OpenAI sends, byte for byte, and the openai SDK reads them."""

import json
from typing import Any

from openai._streaming import SSEDecoder
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from paymaster.api.openai_wire import Envelope, chunks, completion_body
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
from paymaster.domain.metering import Bill

ENVELOPE = Envelope(id="chatcmpl-1", model="gpt-4o-mini", created=1_795_976_738)
EVENTS: list[StreamEvent | Bill] = [
    TextDelta("Hel"),
    TextDelta("lo"),
    Finished("stop"),
    UsageReported(Usage(5, 2, cache_read_tokens=3)),
]


def parsed(include_usage: bool) -> list[dict[str, object] | str]:
    return parsed_from(EVENTS, include_usage=include_usage)


def parsed_from(events: list[StreamEvent | Bill], *, include_usage: bool) -> list[dict[str, object] | str]:
    """The data events of the stream, decoded; comment lines (what was charged) left out."""
    lines = [line.decode() for line in chunks(ENVELOPE, iter(events), include_usage=include_usage)]
    lines = [line for line in lines if not line.startswith(":")]
    assert all(line.startswith("data: ") and line.endswith("\n\n") for line in lines)
    payloads = [line.removeprefix("data: ").removesuffix("\n\n") for line in lines]
    return [payload if payload == "[DONE]" else json.loads(payload) for payload in payloads]


def test_stream_is_role_deltas_finish_done() -> None:
    role, hel, lo, finish, done = parsed(include_usage=False)

    assert role == {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_795_976_738,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
        ],
    }
    assert [c["choices"][0]["delta"] for c in (hel, lo)] == [{"content": "Hel"}, {"content": "lo"}]  # type: ignore[index]
    assert finish["choices"][0]["finish_reason"] == "stop"  # type: ignore[index]
    assert done == "[DONE]"


def test_include_usage_adds_null_usage_everywhere_and_a_usage_chunk_without_choices() -> None:
    *content, usage, done = parsed(include_usage=True)

    assert all(chunk["usage"] is None for chunk in content)  # type: ignore[index]
    assert usage["choices"] == []  # type: ignore[index]
    assert usage["usage"] == {  # type: ignore[index]
        "prompt_tokens": 8,
        "completion_tokens": 2,
        "total_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 3},
    }
    assert done == "[DONE]"


def sse_payloads(lines: list[bytes]) -> list[dict[str, Any]]:
    payloads = [line.decode().removeprefix("data: ").removesuffix("\n\n") for line in lines]
    return [json.loads(payload) for payload in payloads if payload != "[DONE]"]


LOOKUP_CALL = ToolCall("call_1", "lookup", '{"order": 7}')
NOW_CALL = ToolCall("call_2", "now", "{}")


def test_an_answer_of_only_tool_calls_has_null_content_as_openai_sends_it() -> None:
    completion = Completion("", "tool_calls", Usage(5, 2), tool_calls=(LOOKUP_CALL, NOW_CALL))

    body = completion_body(ENVELOPE, completion)
    parsed = ChatCompletion.model_validate(body)

    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"order": 7}'}},
            {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": "{}"}},
        ],
    }
    assert parsed.choices[0].finish_reason == "tool_calls"
    assert [(c.id, c.function.name, c.function.arguments) for c in parsed.choices[0].message.tool_calls or ()] == [  # type: ignore[union-attr]
        ("call_1", "lookup", '{"order": 7}'),
        ("call_2", "now", "{}"),
    ]


def test_an_answer_with_text_and_tool_calls_keeps_the_text() -> None:
    body = completion_body(ENVELOPE, Completion("Let me look.", "tool_calls", Usage(5, 2), tool_calls=(NOW_CALL,)))

    message = ChatCompletion.model_validate(body).choices[0].message

    assert (message.content, len(message.tool_calls or ())) == ("Let me look.", 1)


def test_an_answer_without_tool_calls_has_no_tool_calls_key_and_text_content() -> None:
    message = completion_body(ENVELOPE, Completion("", "stop", Usage(5, 0)))["choices"][0]["message"]

    assert message == {"role": "assistant", "content": "", "refusal": None}


TOOL_EVENTS: list[StreamEvent | Bill] = [
    TextDelta("Let me "),
    TextDelta("look."),
    ToolCallDelta(0, "call_1", "lookup", ""),
    ToolCallDelta(0, None, None, '{"order"'),
    ToolCallDelta(0, None, None, ": 7}"),
    ToolCallDelta(1, "call_2", "now", ""),
    ToolCallDelta(1, None, None, "{}"),
    Finished("tool_calls"),
    UsageReported(Usage(50, 20)),
]


def test_stream_names_each_tool_call_once_then_sends_argument_fragments() -> None:
    payloads = sse_payloads(list(chunks(ENVELOPE, iter(TOOL_EVENTS), include_usage=False)))

    deltas = [payload["choices"][0]["delta"] for payload in payloads]
    assert deltas[3:8] == [
        {
            "tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": ""}}
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"order"'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": ": 7}"}}]},
        {
            "tool_calls": [
                {"index": 1, "id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}}
            ]
        },
        {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]},
    ]
    assert all(ChatCompletionChunk.model_validate(payload) for payload in payloads)


def test_the_openai_sdk_accumulates_the_streamed_tool_calls() -> None:
    state: ChatCompletionStreamState[None] = ChatCompletionStreamState()
    for payload in sse_payloads(list(chunks(ENVELOPE, iter(TOOL_EVENTS), include_usage=True))):
        state.handle_chunk(ChatCompletionChunk.model_validate(payload))

    final = state.get_final_completion()

    choice = final.choices[0]
    assert (choice.message.content, choice.finish_reason) == ("Let me look.", "tool_calls")
    assert [(c.id, c.type, c.function.name, c.function.arguments) for c in choice.message.tool_calls or ()] == [
        ("call_1", "function", "lookup", '{"order": 7}'),
        ("call_2", "function", "now", "{}"),
    ]
    assert final.usage is not None
    assert final.usage.completion_tokens == 20


def test_a_provider_repeating_id_and_name_in_later_pieces_is_not_echoed() -> None:
    events = [
        ToolCallDelta(0, "call_1", "now", ""),
        ToolCallDelta(0, "call_1", "now", "{}"),
        ToolCallDelta(0, "call_1", "now", ""),
    ]

    payloads = sse_payloads(list(chunks(ENVELOPE, iter(events), include_usage=False)))

    assert [payload["choices"][0]["delta"] for payload in payloads[1:]] == [
        {
            "tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": "now", "arguments": ""}}
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]},
    ]


def test_usage_is_what_was_charged_when_a_bill_is_given() -> None:
    bill = Bill(Usage(50, 30), 1234, "delivered_text")
    events: list[StreamEvent | Bill] = [TextDelta("hi"), Finished("stop"), UsageReported(Usage(50, 20)), bill]

    *_, usage, _done = parsed_from(events, include_usage=True)
    body = completion_body(ENVELOPE, Completion("hi", "stop", Usage(50, 20)), bill)

    assert usage["usage"]["completion_tokens"] == body["usage"]["completion_tokens"] == 30  # type: ignore[index]


def test_a_stream_says_what_it_was_charged_in_comments_before_done() -> None:
    bill = Bill(Usage(50, 30), 1234, "delivered_text")
    events: list[StreamEvent | Bill] = [TextDelta("hi"), Finished("stop"), bill]

    *_, trailer, done = list(chunks(ENVELOPE, iter(events), include_usage=False))

    assert trailer == b": x-paymaster-cost-usd: 0.001234\n: x-paymaster-billed-on: delivered_text\n\n"
    assert done == b"data: [DONE]\n\n"


def test_the_openai_sdk_reads_a_stream_with_its_charge_and_skips_the_comments() -> None:
    bill = Bill(Usage(5, 2), 7, "provider_usage")
    raw = b"".join(chunks(ENVELOPE, iter([*EVENTS, bill]), include_usage=True))

    decoded = [event.json() for event in SSEDecoder().iter_bytes(iter([raw])) if event.data != "[DONE]"]

    state = ChatCompletionStreamState()
    for payload in decoded:
        state.handle_chunk(ChatCompletionChunk.model_validate(payload))
    completion = state.get_final_completion()
    assert completion.choices[0].message.content == "Hello"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2
