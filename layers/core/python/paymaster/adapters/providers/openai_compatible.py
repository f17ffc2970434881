"""OpenAI Chat Completions, and any server that speaks it (Azure OpenAI, vLLM, the local fake).

The caller's body passes through with the gateway's changes: the deployment's model id, the output
limit the gateway chose, and — for streams — `stream_options.include_usage` always on, because a
stream without usage cannot be metered to the token. Tools, `tool_choice` and tool messages pass
through as the caller sent them; tool calls come back as `message.tool_calls` and, streamed, as
`delta.tool_calls` pieces, which already have paymaster's ToolCallDelta shape:

    {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
                                                              → ToolCallDelta(0, "call_1", "f", "")
    {"index": 0, "function": {"arguments": "{}"}}             → ToolCallDelta(0, None, None, "{}")
"""

import json
from collections.abc import Callable, Generator
from dataclasses import replace
from typing import Any

import httpx

from paymaster.adapters.providers.http_api import HttpJsonApi
from paymaster.adapters.providers.sending import before_sending
from paymaster.domain.chat import (
    Completion,
    Finished,
    FinishReason,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageReported,
)
from paymaster.domain.errors import ProviderResponseError
from paymaster.domain.policy import Timeouts
from paymaster.ports import ProviderCall

_GATEWAY_FIELDS = {"model", "stream", "stream_options", "max_tokens", "max_completion_tokens"}
_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def to_wire(call: ProviderCall, *, stream: bool) -> dict[str, Any]:
    body = call.request.model_dump(mode="json", exclude_none=True, exclude=_GATEWAY_FIELDS)
    body["model"] = call.deployment.model
    # Reasoning models accept only max_completion_tokens; keep whichever name the caller used.
    limit_field = "max_completion_tokens" if call.request.max_completion_tokens is not None else "max_tokens"
    body[limit_field] = call.max_output_tokens
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def usage_from_wire(raw: dict[str, Any]) -> Usage:
    """`prompt_tokens` includes the prompt tokens read from and written to the cache; each is
    priced apart (a model without a cache price pays its input price for them)."""
    details = raw.get("prompt_tokens_details") or {}
    read = int(details.get("cached_tokens") or 0)
    written = int(details.get("cache_write_tokens") or 0)
    return Usage(
        input_tokens=int(raw.get("prompt_tokens", 0)) - read - written,
        output_tokens=int(raw.get("completion_tokens", 0)),
        cache_read_tokens=read,
        cache_write_tokens=written,
    )


def from_wire(body: dict[str, Any]) -> Completion:
    try:
        choice = body["choices"][0]
        message = choice["message"]
        text = message.get("content") or ""
        tool_calls = tuple(
            ToolCall(call["id"], call["function"]["name"], call["function"].get("arguments") or "")
            for call in message.get("tool_calls") or ()
        )
        usage = usage_from_wire(body["usage"])
    except (KeyError, IndexError, TypeError, AttributeError) as error:
        raise ProviderResponseError(f"the provider's answer is not a chat completion ({error!r})") from None
    return Completion(
        text=text,
        finish_reason=_FINISH.get(choice.get("finish_reason") or "stop", "stop"),
        usage=usage,
        tool_calls=tool_calls,
    )


def chunk_from_wire(chunk: dict[str, Any]) -> list[StreamEvent]:
    """The events in one `chat.completion.chunk`: text, tool call pieces, then finish, then usage (last chunk)."""
    events: list[StreamEvent] = []
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content"):
            events.append(TextDelta(delta["content"]))
        for position, call in enumerate(delta.get("tool_calls") or ()):
            function = call.get("function") or {}
            piece = ToolCallDelta(
                int(call.get("index", position)), call.get("id"), function.get("name"), function.get("arguments") or ""
            )
            if piece.id or piece.name or piece.arguments:
                events.append(piece)
        if choice.get("finish_reason"):
            events.append(Finished(_FINISH.get(choice["finish_reason"], "stop")))
    if chunk.get("usage"):
        events.append(UsageReported(usage_from_wire(chunk["usage"])))
    return events


def openai_api(transport: httpx.BaseTransport, base_url: str, path: str, timeouts: Timeouts) -> HttpJsonApi:
    """One endpoint of an OpenAI-compatible API (`path` below the root, e.g. /embeddings)."""
    return HttpJsonApi(
        transport,
        base_url.rstrip("/") + path,
        timeouts,
        request_id_header="x-request-id",
        error_text=lambda body: str(body["error"]["message"]),
    )


def bearer(api_key: Callable[[], str | None]) -> dict[str, str]:
    """The Authorization header for the current key; none for a server that takes no key."""
    key = api_key()
    return {"authorization": f"Bearer {key}"} if key else {}


class OpenAICompatibleProvider:
    """`transport` is the connection pool (see `http_api`); `base_url` the API root, e.g.
    https://api.openai.com/v1."""

    def __init__(
        self,
        transport: httpx.BaseTransport,
        base_url: str,
        api_key: Callable[[], str | None],
        timeouts: Timeouts,
    ) -> None:
        self._api = openai_api(transport, base_url, "/chat/completions", timeouts)
        self._api_key = api_key

    def _headers(self) -> dict[str, str]:
        return bearer(self._api_key)

    def complete(self, call: ProviderCall) -> Completion:
        with before_sending(call.deployment):
            wire, headers = to_wire(call, stream=False), self._headers()
        body, request_id = self._api.post(wire, headers)
        return replace(from_wire(body), provider_request_id=request_id)

    def stream(self, call: ProviderCall) -> Generator[StreamEvent, None, None]:
        with before_sending(call.deployment):
            wire, headers = to_wire(call, stream=True), self._headers()
        for line in self._api.lines(wire, headers):
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                chunk = json.loads(data)
            except ValueError:
                raise ProviderResponseError("the provider sent a malformed stream chunk") from None
            yield from chunk_from_wire(chunk)
