"""Chat completions in paymaster's own terms: what the caller asked for, what came back.

The request model validates the OpenAI-compatible body the gateway accepts. Fields paymaster does
not interpret are kept (`extra="allow"`) so that OpenAI-compatible providers still receive them.

Tools are OpenAI's function tools, kept as the caller sent them (`tools`, `tool_choice`, an
assistant's `tool_calls`, a tool message's `tool_call_id`) so that OpenAI-compatible providers get
them unchanged; the other providers translate them. Only `function` tools are accepted: an answer
can carry nothing else back. A function call's `arguments` is JSON text, as OpenAI sends it:

    request   {"type": "function", "function": {"name": "lookup", "parameters": {...}}}
    answer    ToolCall(id="call_1", name="lookup", arguments='{"order": 7}')
    stream    ToolCallDelta(0, "call_1", "lookup", "")  ToolCallDelta(0, None, None, '{"order"')
              ToolCallDelta(0, None, None, ": 7}")     — the first delta of a call names it
"""

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

Role = Literal["system", "developer", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
TOOL_CHOICES = ("none", "auto", "required")


def _named_function(item: dict[str, Any], what: str) -> dict[str, Any]:
    """`item["function"]`, checked to be an object with a non-empty string `name`."""
    if item.get("type") != "function":
        raise ValueError(f'{what} must have `type` "function" (the only kind of tool paymaster serves)')
    function = item.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
        raise ValueError(f"{what} needs `function.name`")
    return function


def _check_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = _named_function(tool, "a tool")
    if function.get("parameters") is not None and not isinstance(function["parameters"], dict):
        raise ValueError("a tool's `function.parameters` must be a JSON Schema object")
    return tool


def _check_tool_call(call: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(call.get("id"), str) or not call["id"]:
        raise ValueError("a tool call needs an `id`")
    if not isinstance(_named_function(call, "a tool call").get("arguments"), str):
        raise ValueError("a tool call needs `function.arguments` as a JSON string")
    return call


class Message(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[Annotated[dict[str, Any], AfterValidator(_check_tool_call)]] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _tool_fields_fit_the_role(self) -> Self:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the `tool_call_id` it answers")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry `tool_calls`")
        return self

    def text(self) -> str:
        """The message's text; content parts other than text contribute nothing."""
        if isinstance(self.content, str):
            return self.content
        if self.content is None:
            return ""
        return "".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    stop: str | list[str] | None = None
    user: str | None = None
    # One choice only: n > 1 multiplies the output a request can produce beyond its reservation.
    n: Annotated[int, Field(ge=1, le=1)] | None = None
    tools: list[Annotated[dict[str, Any], AfterValidator(_check_tool)]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    @field_validator("tool_choice")
    @classmethod
    def _choice_is_one_paymaster_can_honour(
        cls, choice: str | dict[str, Any] | None, info: ValidationInfo
    ) -> str | dict[str, Any] | None:
        """A known mode or a named function; "required" or a name needs `tools` offering it, as in OpenAI."""
        if isinstance(choice, str) and choice not in TOOL_CHOICES:
            raise ValueError('`tool_choice` must be "none", "auto", "required" or a named function')
        if choice in (None, "none", "auto"):
            return choice
        named = _named_function(choice, "a named `tool_choice`")["name"] if isinstance(choice, dict) else None
        offered = {tool["function"]["name"] for tool in info.data.get("tools") or ()}
        if not offered:
            raise ValueError("`tool_choice` forces a tool call but `tools` offers none")
        if named is not None and named not in offered:
            raise ValueError(f"`tool_choice` names `{named}`, which `tools` does not offer")
        return choice

    @property
    def output_limit(self) -> int | None:
        """The caller's cap on generated tokens (`max_completion_tokens` wins, as in OpenAI)."""
        return self.max_completion_tokens or self.max_tokens

    @property
    def stop_sequences(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function the model asks the caller to run; `arguments` is JSON text, as OpenAI sends it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished, non-streamed answer: text ("" when the answer is only tool calls), tool calls."""

    text: str
    finish_reason: FinishReason
    usage: Usage
    provider_request_id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    finish_reason: FinishReason


@dataclass(frozen=True, slots=True)
class UsageReported:
    usage: Usage


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of the `index`-th tool call of the answer (counted from 0, apart from the text).

    The first delta of a call carries its `id` and `name`; later ones only `arguments` fragments,
    which concatenate to the call's JSON arguments.
    """

    index: int
    id: str | None
    name: str | None
    arguments: str


StreamEvent = TextDelta | ToolCallDelta | Finished | UsageReported
