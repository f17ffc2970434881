"""Anthropic's Messages API (`POST /v1/messages`), JSON and server-sent events.

`system` and `developer` messages become the top-level `system` text; consecutive messages of one
role are merged because Messages requires user and assistant turns to alternate (`turns`).

Tools become `tools` (`input_schema` = the function's `parameters`); `tool_choice` "auto",
"required", a named function and "none" become `auto`, `any`, `tool` and `none`, and
`parallel_tool_calls: false` sets `disable_parallel_tool_use` on it.

A stream reports usage in two halves: `message_start` carries the input side (input, cache read,
cache write), `message_delta` the cumulative output. Both are remembered and reported together
once, at `message_stop`:

    message_start        {"message": {"usage": {"input_tokens": 12, "output_tokens": 1}}}
    content_block_delta  {"delta": {"type": "text_delta", "text": "Echo:"}}     → TextDelta("Echo:")
    message_delta        {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 5}}
                                                                              → Finished("stop")
    message_stop         {}                                   → UsageReported(Usage(12, 5))

Tool calls are numbered apart from text, as OpenAI does: the n-th `tool_use` block is call n.

    content_block_start  {"index": 1, "content_block": {"type": "tool_use", "id": "t1", "name": "f"}}
                                                                → ToolCallDelta(0, "t1", "f", "")
    content_block_delta  {"index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"a":'}}
                                                                → ToolCallDelta(0, None, None, '{"a":')
    content_block_stop   {"index": 1}                 (a call that got no input: "{}" for it here)
"""

import json
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import replace
from itertools import chain
from typing import Any, Final

import httpx

from paymaster.adapters.providers.http_api import HttpJsonApi
from paymaster.adapters.providers.sending import before_sending
from paymaster.adapters.providers.turns import Blocks, StreamedToolCalls, turns
from paymaster.domain.chat import (
    ChatRequest,
    Completion,
    Finished,
    FinishReason,
    StreamEvent,
    TextDelta,
    ToolCall,
    Usage,
    UsageReported,
)
from paymaster.domain.errors import ProviderResponseError
from paymaster.domain.policy import Timeouts
from paymaster.ports import ProviderCall

API_VERSION: Final = "2023-06-01"
_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_BLOCKS = Blocks(
    text=lambda text: {"type": "text", "text": text},
    tool_use=lambda call_id, name, arguments: {"type": "tool_use", "id": call_id, "name": name, "input": arguments},
    tool_result=lambda call_id, text: {"type": "tool_result", "tool_use_id": call_id, "content": text},
)
_NO_PARAMETERS = {"type": "object", "properties": {}}
_TOOL_CHOICE = {"auto": "auto", "required": "any", "none": "none"}


def to_wire(call: ProviderCall, *, stream: bool) -> dict[str, Any]:
    conversation = turns(call.request, _BLOCKS, "Anthropic")
    wire: dict[str, Any] = {"model": call.deployment.model, "max_tokens": call.max_output_tokens}
    if conversation.system:
        wire["system"] = "\n\n".join(conversation.system)
    wire["messages"] = conversation.messages
    if call.request.temperature is not None:
        wire["temperature"] = call.request.temperature
    if call.request.top_p is not None:
        wire["top_p"] = call.request.top_p
    if call.request.stop_sequences:
        wire["stop_sequences"] = call.request.stop_sequences
    if call.request.tools:
        wire["tools"] = [_tool(tool["function"]) for tool in call.request.tools]
        choice = tool_choice(call.request)
        if choice is not None:
            wire["tool_choice"] = choice
    if stream:
        wire["stream"] = True
    return wire


def _tool(function: dict[str, Any]) -> dict[str, Any]:
    tool: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        tool["description"] = function["description"]
    tool["input_schema"] = function.get("parameters") or _NO_PARAMETERS
    return tool


def tool_choice(request: ChatRequest) -> dict[str, Any] | None:
    """Messages' `tool_choice`, or None for its default (auto, parallel calls allowed)."""
    if isinstance(request.tool_choice, dict):
        choice: dict[str, Any] = {"type": "tool", "name": request.tool_choice["function"]["name"]}
    elif request.tool_choice is not None:
        choice = {"type": _TOOL_CHOICE[request.tool_choice]}
    elif request.parallel_tool_calls is False:
        choice = {"type": "auto"}
    else:
        return None
    if request.parallel_tool_calls is False and choice["type"] != "none":
        choice["disable_parallel_tool_use"] = True
    return choice


def usage_from_wire(raw: dict[str, Any]) -> Usage:
    """Anthropic's `input_tokens` already excludes cached tokens, as paymaster's Usage does."""
    return Usage(
        input_tokens=int(raw.get("input_tokens") or 0),
        output_tokens=int(raw.get("output_tokens") or 0),
        cache_read_tokens=int(raw.get("cache_read_input_tokens") or 0),
        cache_write_tokens=int(raw.get("cache_creation_input_tokens") or 0),
    )


def _finish(stop_reason: str | None) -> FinishReason:
    return _FINISH.get(stop_reason or "end_turn", "stop")


def from_wire(body: dict[str, Any]) -> Completion:
    try:
        text = "".join(block.get("text", "") for block in body["content"] if block.get("type") == "text")
        tool_calls = tuple(
            ToolCall(block["id"], block["name"], json.dumps(block["input"]))
            for block in body["content"]
            if block.get("type") == "tool_use"
        )
        usage = usage_from_wire(body["usage"])
    except (KeyError, TypeError, AttributeError) as error:
        raise ProviderResponseError(f"the provider's answer is not a Messages response ({error!r})") from None
    return Completion(text=text, finish_reason=_finish(body.get("stop_reason")), usage=usage, tool_calls=tool_calls)


def sse_from_wire(lines: Iterable[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each server-sent event as (event type, decoded data); `event:` names it, else data's `type`.

    Example: "event: ping", 'data: {"type": "ping"}', "" → ("ping", {"type": "ping"}).
    """
    event_type = ""
    data: list[str] = []
    for line in chain(lines, [""]):  # a final blank line ends an unterminated last event
        if line.startswith("event:"):
            event_type = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            try:
                decoded = json.loads("\n".join(data))
            except ValueError:
                raise ProviderResponseError("the provider sent a malformed stream event") from None
            if not isinstance(decoded, dict):
                raise ProviderResponseError("the provider sent a malformed stream event")
            yield event_type or str(decoded.get("type", "")), decoded
            event_type, data = "", []


def events_from_wire(events: Iterable[tuple[str, dict[str, Any]]]) -> Iterator[StreamEvent]:
    """Paymaster's stream events from Anthropic's: text and tool calls, then Finished, then UsageReported.

    Raises ProviderError on an `error` event (e.g. `overloaded_error` mid-stream).
    """
    usage: dict[str, Any] = {}
    tool_calls = StreamedToolCalls()
    for event_type, data in events:
        if event_type == "message_start":
            usage.update((data.get("message") or {}).get("usage") or {})
        elif event_type in ("content_block_start", "content_block_delta", "content_block_stop"):
            content = _content_event(event_type, data, tool_calls)
            if content is not None:
                yield content
        elif event_type == "message_delta":
            # Output tokens are cumulative; newer API versions may restate the input side too.
            usage.update({key: value for key, value in (data.get("usage") or {}).items() if value is not None})
            stop_reason = (data.get("delta") or {}).get("stop_reason")
            if stop_reason:
                yield Finished(_finish(stop_reason))
        elif event_type == "message_stop":
            yield UsageReported(usage_from_wire(usage))
        elif event_type == "error":
            # After a 200: Anthropic accepted the call (message_start came first), so it is
            # metered, never retried elsewhere.
            error = data.get("error") or {}
            raise ProviderResponseError(
                f"the provider's stream failed: {error.get('type', 'error')}: {error.get('message', '')}"
            )


def _content_event(event_type: str, data: dict[str, Any], tool_calls: StreamedToolCalls) -> StreamEvent | None:
    """A content block event as text or a piece of a tool call; None for anything else (thinking)."""
    if event_type == "content_block_start":
        block = data.get("content_block") or {}
        return (
            tool_calls.start(data.get("index"), block.get("id"), block.get("name"))
            if block.get("type") == "tool_use"
            else None
        )
    if event_type == "content_block_stop":
        return tool_calls.stop(data.get("index"))
    delta = data.get("delta") or {}
    if delta.get("type") == "text_delta" and delta.get("text"):
        return TextDelta(str(delta["text"]))
    if delta.get("type") == "input_json_delta":
        return tool_calls.input(data.get("index"), str(delta.get("partial_json") or ""))
    return None


class AnthropicProvider:
    """`transport` is the connection pool (see `http_api`); `base_url` the API root without
    `/v1`, e.g. https://api.anthropic.com."""

    def __init__(
        self,
        transport: httpx.BaseTransport,
        base_url: str,
        api_key: Callable[[], str | None],
        timeouts: Timeouts,
    ) -> None:
        self._api = HttpJsonApi(
            transport,
            base_url.rstrip("/") + "/v1/messages",
            timeouts,
            request_id_header="request-id",
            error_text=lambda body: f"{body['error']['type']}: {body['error']['message']}",
        )
        self._api_key = api_key

    def _headers(self) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        key = self._api_key()
        if key:
            headers["x-api-key"] = key
        return headers

    def complete(self, call: ProviderCall) -> Completion:
        with before_sending(call.deployment):
            wire, headers = to_wire(call, stream=False), self._headers()
        body, request_id = self._api.post(wire, headers)
        return replace(from_wire(body), provider_request_id=request_id)

    def stream(self, call: ProviderCall) -> Generator[StreamEvent, None, None]:
        with before_sending(call.deployment):
            wire, headers = to_wire(call, stream=True), self._headers()
        yield from events_from_wire(sse_from_wire(self._api.lines(wire, headers)))
