import pytest
from pydantic import ValidationError

from paymaster.domain.chat import ChatRequest

MESSAGES = [{"role": "user", "content": "hi"}]


def test_more_than_one_choice_is_refused_because_it_multiplies_the_output() -> None:
    with pytest.raises(ValidationError, match="n"):
        ChatRequest.model_validate({"model": "m", "messages": MESSAGES, "n": 2})


def test_unknown_fields_are_kept_for_the_provider() -> None:
    request = ChatRequest.model_validate({"model": "m", "messages": MESSAGES, "seed": 7, "logprobs": True})

    assert request.model_extra == {"seed": 7, "logprobs": True}


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    request = ChatRequest.model_validate(
        {"model": "m", "messages": MESSAGES, "max_tokens": 100, "max_completion_tokens": 50}
    )

    assert request.output_limit == 50


LOOKUP = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"order": 7}'}}


def test_tool_fields_are_typed_and_kept_as_sent() -> None:
    request = ChatRequest.model_validate(
        {
            "model": "m",
            "messages": [
                *MESSAGES,
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "shipped"},
            ],
            "tools": [LOOKUP],
            "tool_choice": {"type": "function", "function": {"name": "lookup"}},
            "parallel_tool_calls": False,
        }
    )

    assert (request.tools, request.tool_choice, request.parallel_tool_calls) == (
        [LOOKUP],
        {"type": "function", "function": {"name": "lookup"}},
        False,
    )
    assert request.messages[1].tool_calls == [CALL]
    assert request.messages[2].tool_call_id == "call_1"
    assert request.model_extra == {}


@pytest.mark.parametrize(
    ("fields", "where", "says"),
    [
        ({"tools": [{"type": "function", "function": {"description": "x"}}]}, ("tools", 0), "function.name"),
        ({"tools": [{"type": "function", "function": {"name": ""}}]}, ("tools", 0), "function.name"),
        ({"tools": [{"function": {"name": "lookup"}}]}, ("tools", 0), '"function"'),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, ("tools", 0), '"function"'),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]},
            ("tools", 0),
            "JSON Schema object",
        ),
        ({"tools": [LOOKUP], "tool_choice": "always"}, ("tool_choice",), '"required"'),
        ({"tool_choice": "required"}, ("tool_choice",), "offers none"),
        (
            {"tools": [LOOKUP], "tool_choice": {"type": "function", "function": {"name": "other"}}},
            ("tool_choice",),
            "`other`",
        ),
        ({"tools": [LOOKUP], "tool_choice": {"type": "function"}}, ("tool_choice",), "function.name"),
        ({"tools": [LOOKUP], "tool_choice": {"type": "allowed_tools"}}, ("tool_choice",), '"function"'),
    ],
)
def test_nonsense_tools_are_refused_naming_the_field(
    fields: dict[str, object], where: tuple[object, ...], says: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        ChatRequest.model_validate({"model": "m", "messages": MESSAGES} | fields)

    first = refused.value.errors()[0]
    assert (first["loc"], says in first["msg"]) == (where, True)


@pytest.mark.parametrize(
    ("message", "where", "says"),
    [
        ({"role": "tool", "content": "42"}, ("messages", 1), "tool_call_id"),
        ({"role": "user", "content": "hi", "tool_calls": [CALL]}, ("messages", 1), "only assistant"),
        (
            {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            ("messages", 1, "tool_calls", 0),
            "`id`",
        ),
        (
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f"}}]},
            ("messages", 1, "tool_calls", 0),
            "function.arguments",
        ),
        (
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"arguments": "{}"}}]},
            ("messages", 1, "tool_calls", 0),
            "function.name",
        ),
    ],
)
def test_nonsense_tool_messages_are_refused_naming_the_message(
    message: dict[str, object], where: tuple[object, ...], says: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        ChatRequest.model_validate({"model": "m", "messages": [*MESSAGES, message]})

    first = refused.value.errors()[0]
    assert (first["loc"], says in first["msg"]) == (where, True)


@pytest.mark.parametrize("choice", ["none", "auto"])
def test_a_choice_that_forces_nothing_needs_no_tools(choice: str) -> None:
    assert ChatRequest.model_validate({"model": "m", "messages": MESSAGES, "tool_choice": choice}).tool_choice == choice
