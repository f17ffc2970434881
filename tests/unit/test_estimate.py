"""The input-token estimate: OpenAI's chat overhead plus the text, scaled up for other tokenizers.

The counter here is a word count, so every number can be checked by eye.
"""

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paymaster.domain.chat import ChatRequest
from paymaster.domain.errors import InvalidRequestError
from paymaster.domain.estimate import TOOL_USE_PROMPT_TOKENS, input_tokens


def words(text: str) -> int:
    return len(text.split())


def chat(*messages: dict[str, Any], **fields: Any) -> ChatRequest:
    return ChatRequest.model_validate({"model": "m", "messages": list(messages)} | fields)


def user(text: str | list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"role": "user", "content": text} | fields


def test_one_message_costs_3_plus_role_plus_text_plus_3_priming() -> None:
    # 3 (message) + 1 ("user") + 2 ("hello world") + 3 (priming) = 9.
    assert input_tokens(chat(user("hello world")), words) == 9


def test_each_message_adds_its_own_overhead() -> None:
    # 3 priming + (3 + 1 + 2) system + (3 + 1 + 2) user = 15.
    request = chat({"role": "system", "content": "be brief"}, user("hello world"))

    assert input_tokens(request, words) == 15


def test_a_name_adds_one_plus_the_name() -> None:
    # 9 + 1 (name) + 2 ("alice smith") = 12.
    assert input_tokens(chat(user("hello world", name="alice smith")), words) == 12


def test_a_message_without_content_costs_only_its_overhead() -> None:
    # 3 priming + 3 + 1 ("assistant") + 0 = 7.
    assert input_tokens(chat({"role": "assistant", "content": None}), words) == 7


def test_text_parts_of_a_content_list_are_counted() -> None:
    request = chat(user([{"type": "text", "text": "hello world "}, {"type": "text", "text": "again"}]))

    assert input_tokens(request, words) == 10  # 3 + 1 + 3 + 3


def test_factor_one_leaves_the_count_unchanged() -> None:
    assert input_tokens(chat(user("one two three")), words, Decimal(1)) == 10


@pytest.mark.parametrize(
    ("text", "factor", "estimate"),
    [
        ("one two three", Decimal("1.3"), 13),  # 10 × 1.3 = 13 exactly
        ("one two three four", Decimal("1.3"), 15),  # 11 × 1.3 = 14.3 → 15
        ("one two three", Decimal("1.5"), 15),  # 10 × 1.5 = 15, not 16
        ("one two three four", Decimal("1.01"), 12),  # 11 × 1.01 = 11.11 → 12
    ],
)
def test_factor_scales_the_count_and_rounds_up(text: str, factor: Decimal, estimate: int) -> None:
    assert input_tokens(chat(user(text)), words, factor) == estimate


def test_an_image_part_is_refused_because_its_cost_has_no_bound_before_the_call() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    with_image = chat(user([{"type": "text", "text": "what is this"}, image]))

    with pytest.raises(InvalidRequestError, match="image_url") as refused:
        input_tokens(with_image, words)
    assert refused.value.param == "messages.0.content"


LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "look up an order by its id",
        "parameters": {"type": "object", "properties": {"order": {"type": "integer"}}, "required": ["order"]},
    },
}
CALL = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"order": 7}'}}


def compact(fields: dict[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def test_tool_definitions_raise_the_estimate() -> None:
    assert input_tokens(chat(user("hello"), tools=[LOOKUP]), words) > input_tokens(chat(user("hello")), words)


def test_tools_choice_and_extras_count_as_one_compact_json_object_plus_the_tool_prompt() -> None:
    # Counted in characters, the tool fields add exactly what they added as untyped extras.
    fields = {"tools": [LOOKUP], "tool_choice": "required", "parallel_tool_calls": False, "seed": 7}

    with_tools = input_tokens(chat(user("hello"), **fields), len)

    assert with_tools == input_tokens(chat(user("hello")), len) + len(compact(fields)) + TOOL_USE_PROMPT_TOKENS


def test_a_tool_choice_without_tools_is_still_counted() -> None:
    assert input_tokens(chat(user("hello"), tool_choice="none"), len) == input_tokens(chat(user("hello")), len) + len(
        compact({"tool_choice": "none"})
    )


def test_an_assistant_s_tool_calls_and_a_tool_message_s_call_id_are_counted_as_json() -> None:
    calling = {"role": "assistant", "content": None, "tool_calls": [CALL]}
    answering = {"role": "tool", "tool_call_id": "call_1", "content": "shipped"}
    bare_calling = {"role": "assistant", "content": None}
    bare_answering = {"role": "user", "content": "shipped"}  # "user" and "tool" are both 4 characters

    estimate = input_tokens(chat(user("hi"), calling, answering), len)

    assert estimate == input_tokens(chat(user("hi"), bare_calling, bare_answering), len) + len(
        compact({"tool_calls": [CALL]})
    ) + len(compact({"tool_call_id": "call_1"}))


names = st.text(alphabet="abcdefgh_", min_size=1, max_size=12)
tool_lists = st.lists(
    st.builds(
        lambda name, description: {"type": "function", "function": {"name": name, "description": description}},
        names,
        st.text(max_size=40),
    ),
    min_size=1,
    max_size=4,
)


@given(tools=tool_lists, arguments=st.dictionaries(names, st.integers() | st.text(max_size=10), max_size=3))
def test_tools_and_calls_never_count_below_their_json(tools: list[dict[str, Any]], arguments: dict[str, Any]) -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": json.dumps(arguments)}}
    bare = chat(user("hi"), {"role": "assistant", "content": "ok"})
    with_tools = chat(user("hi"), {"role": "assistant", "content": "ok", "tool_calls": [call]}, tools=tools)

    assert input_tokens(with_tools, len) >= input_tokens(bare, len) + len(compact({"tools": tools})) + len(
        compact({"tool_calls": [call]})
    )


texts = st.text(alphabet="ab ", max_size=30)
messages = st.lists(
    st.builds(
        lambda role, text, name: {"role": role, "content": text} | ({"name": name} if name else {}),
        st.sampled_from(["system", "user", "assistant"]),
        texts,
        st.none() | st.text(alphabet="xy ", min_size=1, max_size=10),
    ),
    min_size=1,
    max_size=5,
)
factors = st.decimals(min_value=1, max_value=4, places=2)


@given(messages=messages, factor=factors)
def test_estimate_is_the_scaled_count_rounded_up_by_less_than_one_token(
    messages: list[dict[str, Any]], factor: Decimal
) -> None:
    plain = input_tokens(chat(*messages), words)

    scaled = input_tokens(chat(*messages), words, factor)

    assert plain * factor <= scaled < plain * factor + 1


@given(messages=messages, extra=messages)
def test_more_messages_never_lower_the_estimate(messages: list[dict[str, Any]], extra: list[dict[str, Any]]) -> None:
    assert input_tokens(chat(*messages, *extra), words) >= input_tokens(chat(*messages), words) + 3 * len(extra)
