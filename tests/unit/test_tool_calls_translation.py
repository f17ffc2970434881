"""Tool calls both ways for each provider kind: tools and a conversation with calls and results
going out, an answer's calls and a stream's pieces coming back."""

import json
from collections.abc import Callable
from typing import Any

import pytest

from paymaster.adapters.providers import anthropic, bedrock, openai_compatible
from paymaster.adapters.providers.bedrock import BedrockProvider
from paymaster.domain.chat import (
    ChatRequest,
    Completion,
    Finished,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageReported,
)
from paymaster.domain.errors import InvalidRequestError
from paymaster.domain.policy import Deployment
from paymaster.ports import ProviderCall

ORDER_SCHEMA = {"type": "object", "properties": {"order": {"type": "integer"}}, "required": ["order"]}
LOOKUP = {
    "type": "function",
    "function": {"name": "lookup", "description": "Find an order", "parameters": ORDER_SCHEMA},
}
NOW = {"type": "function", "function": {"name": "now"}}  # no description, no parameters
NO_PARAMETERS = {"type": "object", "properties": {}}


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "Where are orders 7 and 8?"},
    {
        "role": "assistant",
        "content": "Let me look.",
        "tool_calls": [tool_call("t1", "lookup", '{"order": 7}'), tool_call("t2", "lookup", '{"order":8}')],
    },
    {"role": "tool", "tool_call_id": "t1", "content": "shipped"},
    {"role": "tool", "tool_call_id": "t2", "content": [{"type": "text", "text": "packed"}]},
    {"role": "user", "content": "Thanks. What time is it?"},
    {"role": "assistant", "content": None, "tool_calls": [tool_call("t3", "now", "")]},
    {"role": "tool", "tool_call_id": "t3", "content": "noon"},
]

# The answer every provider gives below: some text, then two calls, the second without arguments.
TEXT_THEN_TWO_CALLS = [
    TextDelta("Let me "),
    TextDelta("look."),
    ToolCallDelta(0, "t1", "lookup", ""),
    ToolCallDelta(0, None, None, '{"order"'),
    ToolCallDelta(0, None, None, ": 7}"),
    ToolCallDelta(1, "t2", "now", ""),
    ToolCallDelta(1, None, None, "{}"),
    Finished("tool_calls"),
    UsageReported(Usage(50, 20)),
]


def call(messages: list[dict[str, Any]] | None = None, model: str = "provider-model", **fields: Any) -> ProviderCall:
    body = {"model": "virtual", "messages": messages or [{"role": "user", "content": "Where is order 7?"}]} | fields
    return ProviderCall(
        request=ChatRequest.model_validate(body),
        deployment=Deployment(provider="p", model=model),
        max_output_tokens=256,
    )


# OpenAI-compatible: everything passes through; answers are read back.


def test_openai_passes_tools_choice_and_tool_messages_through_unchanged() -> None:
    wire = openai_compatible.to_wire(
        call(CONVERSATION, tools=[LOOKUP, NOW], tool_choice="required", parallel_tool_calls=False), stream=False
    )

    assert wire["tools"] == [LOOKUP, NOW]
    assert (wire["tool_choice"], wire["parallel_tool_calls"]) == ("required", False)
    assert wire["messages"][2] == CONVERSATION[2]
    assert wire["messages"][3] == CONVERSATION[3]
    assert wire["messages"][6] == {"role": "assistant", "tool_calls": [tool_call("t3", "now", "")]}


def test_openai_answer_with_text_and_tool_calls() -> None:
    body = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me look.",
                    "tool_calls": [tool_call("call_1", "lookup", '{"order":7}'), tool_call("call_2", "now", "{}")],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 50, "completion_tokens": 20},
    }

    assert openai_compatible.from_wire(body) == Completion(
        text="Let me look.",
        finish_reason="tool_calls",
        usage=Usage(50, 20),
        tool_calls=(ToolCall("call_1", "lookup", '{"order":7}'), ToolCall("call_2", "now", "{}")),
    )


def test_openai_answer_with_only_tool_calls_has_empty_text() -> None:
    body = {
        "choices": [
            {"message": {"content": None, "tool_calls": [tool_call("c", "now", "{}")]}, "finish_reason": "tool_calls"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
    }

    completion = openai_compatible.from_wire(body)

    assert (completion.text, completion.tool_calls) == ("", (ToolCall("c", "now", "{}"),))


def test_openai_stream_of_text_then_two_tool_calls() -> None:
    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], "usage": None}

    def piece(index: int, arguments: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
        if call_id is None:
            return {"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}
        function = {"name": name, "arguments": arguments}
        return {"tool_calls": [{"index": index, "id": call_id, "type": "function", "function": function}]}

    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Let me "}),
        chunk({"content": "look."}),
        chunk(piece(0, "", "t1", "lookup")),
        chunk(piece(0, '{"order"')),
        chunk(piece(0, ": 7}")),
        chunk(piece(1, "", "t2", "now")),
        chunk(piece(1, "{}")),
        chunk({}, "tool_calls"),
        {"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 20}},
    ]

    assert [event for c in chunks for event in openai_compatible.chunk_from_wire(c)] == TEXT_THEN_TWO_CALLS


# Bedrock Converse.


@pytest.mark.parametrize(
    ("choice", "tool_choice"),
    [
        (None, None),
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "now"}}, {"tool": {"name": "now"}}),
    ],
)
def test_bedrock_tools_become_tool_config(choice: Any, tool_choice: dict[str, Any] | None) -> None:
    wire = bedrock.to_wire(call(tools=[LOOKUP, NOW], tool_choice=choice, parallel_tool_calls=False))

    tools = [
        {"toolSpec": {"name": "lookup", "description": "Find an order", "inputSchema": {"json": ORDER_SCHEMA}}},
        {"toolSpec": {"name": "now", "inputSchema": {"json": NO_PARAMETERS}}},
    ]
    assert wire["toolConfig"] == {"tools": tools} | ({} if tool_choice is None else {"toolChoice": tool_choice})


def test_bedrock_without_tools_sends_no_tool_config() -> None:
    assert "toolConfig" not in bedrock.to_wire(call())


def test_bedrock_tool_choice_none_leaves_the_tools_out_so_none_can_be_called() -> None:
    assert "toolConfig" not in bedrock.to_wire(call(tools=[LOOKUP], tool_choice="none"))


def test_bedrock_tool_choice_none_in_a_conversation_with_tool_calls_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match='"none"') as refused:
        bedrock.to_wire(call(CONVERSATION, tools=[LOOKUP, NOW], tool_choice="none"))
    assert refused.value.param == "tool_choice"


def test_bedrock_conversation_with_tool_calls_but_no_tools_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="needs `tools`") as refused:
        bedrock.to_wire(call(CONVERSATION))
    assert refused.value.param == "tools"


def test_bedrock_conversation_carries_tool_uses_and_merges_results_with_the_next_user_text() -> None:
    wire = bedrock.to_wire(call(CONVERSATION, tools=[LOOKUP, NOW]))

    assert wire["system"] == [{"text": "be brief"}]
    assert wire["messages"] == [
        {"role": "user", "content": [{"text": "Where are orders 7 and 8?"}]},
        {
            "role": "assistant",
            "content": [
                {"text": "Let me look."},
                {"toolUse": {"toolUseId": "t1", "name": "lookup", "input": {"order": 7}}},
                {"toolUse": {"toolUseId": "t2", "name": "lookup", "input": {"order": 8}}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": "t1", "content": [{"text": "shipped"}]}},
                {"toolResult": {"toolUseId": "t2", "content": [{"text": "packed"}]}},
                {"text": "Thanks. What time is it?"},
            ],
        },
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t3", "name": "now", "input": {}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t3", "content": [{"text": "noon"}]}}]},
    ]


def test_bedrock_answer_with_text_and_tool_calls() -> None:
    completion = bedrock.from_wire(
        {
            "output": {
                "message": {
                    "role": "assistant",
                    "content": [
                        {"text": "Let me look."},
                        {"toolUse": {"toolUseId": "t1", "name": "lookup", "input": {"order": 7}}},
                        {"toolUse": {"toolUseId": "t2", "name": "now", "input": {}}},
                    ],
                }
            },
            "stopReason": "tool_use",
            "usage": {"inputTokens": 50, "outputTokens": 20},
        }
    )

    assert completion == Completion(
        text="Let me look.",
        finish_reason="tool_calls",
        usage=Usage(50, 20),
        tool_calls=(ToolCall("t1", "lookup", '{"order": 7}'), ToolCall("t2", "now", "{}")),
    )


BEDROCK_STREAM: list[dict[str, Any]] = [
    {"messageStart": {"role": "assistant"}},
    {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "Let me "}}},
    {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "look."}}},
    {"contentBlockStop": {"contentBlockIndex": 0}},
    {"contentBlockStart": {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t1", "name": "lookup"}}}},
    {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"order"'}}}},
    {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": ": 7}"}}}},
    {"contentBlockStop": {"contentBlockIndex": 1}},
    {"contentBlockStart": {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "t2", "name": "now"}}}},
    {"contentBlockDelta": {"contentBlockIndex": 2, "delta": {"toolUse": {"input": ""}}}},
    {"contentBlockStop": {"contentBlockIndex": 2}},
    {"messageStop": {"stopReason": "tool_use"}},
    {"metadata": {"usage": {"inputTokens": 50, "outputTokens": 20}, "metrics": {"latencyMs": 120}}},
]


def test_bedrock_stream_numbers_tool_calls_apart_from_the_text_block() -> None:
    assert list(bedrock.events_from_wire(BEDROCK_STREAM)) == TEXT_THEN_TWO_CALLS


class FakeConverse:
    """A `bedrock-runtime` client that answers with canned Converse responses."""

    def __init__(self, answer: dict[str, Any], events: list[dict[str, Any]]) -> None:
        self.answer, self.events = answer, events
        self.sent: list[dict[str, Any]] = []
        self.closed = False

    def converse(self, **kwargs: Any) -> dict[str, Any]:
        self.sent.append(kwargs)
        return self.answer

    def converse_stream(self, **kwargs: Any) -> dict[str, Any]:
        self.sent.append(kwargs)
        return {"stream": self}

    def __iter__(self) -> Any:
        return iter(self.events)

    def close(self) -> None:
        self.closed = True


def test_bedrock_provider_sends_tool_config_and_streams_tool_calls() -> None:
    client = FakeConverse({}, BEDROCK_STREAM)

    events = list(BedrockProvider(client).stream(call(tools=[LOOKUP, NOW], tool_choice="auto")))

    assert client.sent[0]["toolConfig"]["toolChoice"] == {"auto": {}}
    assert (events, client.closed) == (TEXT_THEN_TWO_CALLS, True)


# Anthropic Messages.


@pytest.mark.parametrize(
    ("choice", "parallel", "tool_choice"),
    [
        (None, None, None),
        (None, True, None),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ({"type": "function", "function": {"name": "now"}}, None, {"type": "tool", "name": "now"}),
        (
            {"type": "function", "function": {"name": "now"}},
            False,
            {"type": "tool", "name": "now", "disable_parallel_tool_use": True},
        ),
        ("none", None, {"type": "none"}),
        ("none", False, {"type": "none"}),
    ],
)
def test_anthropic_tools_and_tool_choice(
    choice: Any, parallel: bool | None, tool_choice: dict[str, Any] | None
) -> None:
    wire = anthropic.to_wire(call(tools=[LOOKUP, NOW], tool_choice=choice, parallel_tool_calls=parallel), stream=False)

    assert wire["tools"] == [
        {"name": "lookup", "description": "Find an order", "input_schema": ORDER_SCHEMA},
        {"name": "now", "input_schema": NO_PARAMETERS},
    ]
    assert wire.get("tool_choice") == tool_choice


@pytest.mark.parametrize("choice", [None, "none", "auto"])
def test_anthropic_without_tools_sends_neither_tools_nor_choice(choice: str | None) -> None:
    wire = anthropic.to_wire(call(tool_choice=choice, parallel_tool_calls=False), stream=False)

    assert ("tools" in wire, "tool_choice" in wire) == (False, False)


def test_anthropic_conversation_carries_tool_uses_and_merges_results_with_the_next_user_text() -> None:
    wire = anthropic.to_wire(call(CONVERSATION, tools=[LOOKUP, NOW]), stream=False)

    assert wire["system"] == "be brief"
    assert wire["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Where are orders 7 and 8?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"order": 7}},
                {"type": "tool_use", "id": "t2", "name": "lookup", "input": {"order": 8}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "shipped"},
                {"type": "tool_result", "tool_use_id": "t2", "content": "packed"},
                {"type": "text", "text": "Thanks. What time is it?"},
            ],
        },
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t3", "name": "now", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t3", "content": "noon"}]},
    ]


def test_anthropic_answer_with_text_and_tool_calls() -> None:
    body = {
        "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"order": 7}},
            {"type": "tool_use", "id": "t2", "name": "now", "input": {}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 50, "output_tokens": 20},
    }

    assert anthropic.from_wire(body) == Completion(
        text="Let me look.",
        finish_reason="tool_calls",
        usage=Usage(50, 20),
        tool_calls=(ToolCall("t1", "lookup", '{"order": 7}'), ToolCall("t2", "now", "{}")),
    )


ANTHROPIC_STREAM: list[tuple[str, dict[str, Any]]] = [
    ("message_start", {"message": {"usage": {"input_tokens": 50, "output_tokens": 1}}}),
    ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
    ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Let me "}}),
    ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "look."}}),
    ("content_block_stop", {"index": 0}),
    (
        "content_block_start",
        {"index": 1, "content_block": {"type": "tool_use", "id": "t1", "name": "lookup", "input": {}}},
    ),
    ("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
    ("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"order"'}}),
    ("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta", "partial_json": ": 7}"}}),
    ("content_block_stop", {"index": 1}),
    (
        "content_block_start",
        {"index": 2, "content_block": {"type": "tool_use", "id": "t2", "name": "now", "input": {}}},
    ),
    ("content_block_stop", {"index": 2}),
    ("message_delta", {"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 20}}),
    ("message_stop", {}),
]


def test_anthropic_stream_numbers_tool_calls_apart_from_the_text_block() -> None:
    assert list(anthropic.events_from_wire(ANTHROPIC_STREAM)) == TEXT_THEN_TWO_CALLS


# What Bedrock and Anthropic share (`turns`).


def bedrock_wire(c: ProviderCall) -> dict[str, Any]:
    return bedrock.to_wire(c)


def anthropic_wire(c: ProviderCall) -> dict[str, Any]:
    return anthropic.to_wire(c, stream=False)


PROVIDERS = [bedrock_wire, anthropic_wire]


@pytest.mark.parametrize("to_wire", PROVIDERS, ids=["bedrock", "anthropic"])
@pytest.mark.parametrize("arguments", ['{"order": ', "[7]", '"7"', "null"])
def test_arguments_that_are_not_a_json_object_are_the_caller_s_error_naming_the_message(
    to_wire: Callable[[ProviderCall], dict[str, Any]], arguments: str
) -> None:
    conversation = [*CONVERSATION[:2], {**CONVERSATION[2], "tool_calls": [tool_call("t1", "lookup", arguments)]}]

    with pytest.raises(InvalidRequestError, match=r"messages\.2\.tool_calls\.0") as refused:
        to_wire(call([*conversation, CONVERSATION[3]], tools=[LOOKUP]))
    assert refused.value.param == "messages.2.tool_calls.0.function.arguments"


@pytest.mark.parametrize(
    ("to_wire", "user_turn"),
    [
        (
            PROVIDERS[0],
            [{"toolResult": {"toolUseId": "t1", "content": [{"text": "shipped"}]}}, {"text": "quickly please"}],
        ),
        (
            PROVIDERS[1],
            [
                {"type": "tool_result", "tool_use_id": "t1", "content": "shipped"},
                {"type": "text", "text": "quickly please"},
            ],
        ),
    ],
)
def test_tool_results_come_before_user_text_in_one_user_turn(
    to_wire: Callable[[ProviderCall], dict[str, Any]], user_turn: list[dict[str, Any]]
) -> None:
    conversation: list[dict[str, Any]] = [
        {"role": "user", "content": "order 7?"},
        {"role": "assistant", "tool_calls": [tool_call("t1", "lookup", '{"order": 7}')]},
        {"role": "user", "content": "quickly please"},
        {"role": "tool", "tool_call_id": "t1", "content": "shipped"},
    ]

    last = to_wire(call(conversation, tools=[LOOKUP]))["messages"][-1]

    assert last == {"role": "user", "content": user_turn}


@pytest.mark.parametrize(
    "events",
    [
        pytest.param(lambda: bedrock.events_from_wire(BEDROCK_STREAM), id="bedrock"),
        pytest.param(lambda: anthropic.events_from_wire(ANTHROPIC_STREAM), id="anthropic"),
    ],
)
def test_a_stream_s_tool_call_pieces_join_to_the_non_streamed_calls(events: Any) -> None:
    joined: dict[int, list[str]] = {}
    named: dict[int, tuple[str | None, str | None]] = {}
    stream: list[StreamEvent] = list(events())
    for event in stream:
        if isinstance(event, ToolCallDelta):
            if event.id is not None:
                named[event.index] = (event.id, event.name)
            joined.setdefault(event.index, []).append(event.arguments)

    calls = [(*named[index], json.loads("".join(pieces))) for index, pieces in sorted(joined.items())]

    assert calls == [("t1", "lookup", {"order": 7}), ("t2", "now", {})]
