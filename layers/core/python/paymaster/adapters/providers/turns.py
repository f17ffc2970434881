"""Chat messages as the providers that separate the system prompt from alternating turns want them
(Bedrock Converse, Anthropic Messages), and their streamed tool-use blocks as OpenAI's tool calls.

- `system` and `developer` texts go apart.
- An assistant message becomes its text block (none when it is only tool calls), then a tool-use
  block per call, whose input is the call's `arguments` decoded: both providers take an object.
- A `tool` message becomes a tool-result block in a user turn.
- Consecutive messages of one side are merged, because user and assistant turns must alternate;
  in a user turn the tool results come first, as both providers require:

      assistant  tool_calls=[t1, t2]            assistant  [tool use t1, tool use t2]
      tool       t1 → "42"                →     user       [result t1, result t2, text "thanks"]
      tool       t2 → "7"
      user       "thanks"

Both stream an answer as numbered content blocks — text, tool use, text, … — while OpenAI numbers
tool calls apart from the text: `StreamedToolCalls` numbers the tool-use blocks 0, 1, ….
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from paymaster.domain.chat import ChatRequest, ToolCallDelta
from paymaster.domain.errors import InvalidRequestError


@dataclass(frozen=True, slots=True)
class Blocks:
    """How one provider writes each kind of content block."""

    text: Callable[[str], dict[str, Any]]
    tool_use: Callable[[str, str, dict[str, Any]], dict[str, Any]]  # (call id, function name, input)
    tool_result: Callable[[str, str], dict[str, Any]]  # (call id, result text)


@dataclass(frozen=True, slots=True)
class Turns:
    system: list[str]
    messages: list[dict[str, Any]]  # {"role": "user"|"assistant", "content": [block, ...]}


@dataclass(slots=True)
class _Turn:
    role: Literal["user", "assistant"]
    results: list[dict[str, Any]] = field(default_factory=list)
    blocks: list[dict[str, Any]] = field(default_factory=list)


def turns(request: ChatRequest, blocks: Blocks, provider: str) -> Turns:
    """Raises InvalidRequestError naming the message whose tool call `arguments` is not a JSON object."""
    system: list[str] = []
    merged: list[_Turn] = []
    for index, message in enumerate(request.messages):
        if message.role in ("system", "developer"):
            system.append(message.text())
            continue
        side: Literal["user", "assistant"] = "assistant" if message.role == "assistant" else "user"
        if not merged or merged[-1].role != side:
            merged.append(_Turn(side))
        turn = merged[-1]
        if message.role == "tool":
            turn.results.append(blocks.tool_result(str(message.tool_call_id), message.text()))
            continue
        uses = [
            blocks.tool_use(
                call["id"],
                call["function"]["name"],
                tool_input(call["function"]["arguments"], f"messages.{index}.tool_calls.{position}", provider),
            )
            for position, call in enumerate(message.tool_calls or ())
        ]
        if message.text() or not uses:
            turn.blocks.append(blocks.text(message.text()))
        turn.blocks.extend(uses)
    return Turns(system, [{"role": turn.role, "content": [*turn.results, *turn.blocks]} for turn in merged])


def tool_input(arguments: str, call: str, provider: str) -> dict[str, Any]:
    """A tool call's JSON `arguments` as the object the provider takes; "" (no arguments) is {}.

    Example: '{"order": 7}' → {"order": 7}; '{"order": ' → InvalidRequestError for `call`.
    """
    if not arguments.strip():
        return {}
    try:
        decoded = json.loads(arguments)
    except ValueError:
        decoded = None
    if not isinstance(decoded, dict):
        param = f"{call}.function.arguments"
        raise InvalidRequestError(
            f"`{param}` is not a JSON object; {provider} takes a tool call's arguments only as one.", param=param
        )
    return decoded


class StreamedToolCalls:
    """The tool-use blocks of one streamed answer as ToolCallDelta events, numbered 0, 1, … in the
    order they start. `block` is the provider's content block index. A call whose block ends
    without any input gets "{}" as its arguments, as OpenAI sends for a call without arguments.

    Example: start(1, "t1", "f") → ToolCallDelta(0, "t1", "f", ""); input(1, '{"a":') →
    ToolCallDelta(0, None, None, '{"a":'); input(2, "x") → None (block 2 is not a tool call).
    """

    def __init__(self) -> None:
        self._calls: dict[object, int] = {}
        self._with_input: set[int] = set()

    def start(self, block: object, call_id: str | None, name: str | None) -> ToolCallDelta:
        index = self._calls[block] = len(self._calls)
        return ToolCallDelta(index, call_id, name, "")

    def input(self, block: object, fragment: str) -> ToolCallDelta | None:
        index = self._calls.get(block)
        if index is None or not fragment:
            return None
        self._with_input.add(index)
        return ToolCallDelta(index, None, None, fragment)

    def stop(self, block: object) -> ToolCallDelta | None:
        index = self._calls.get(block)
        if index is None or index in self._with_input:
            return None
        self._with_input.add(index)
        return ToolCallDelta(index, None, None, "{}")
