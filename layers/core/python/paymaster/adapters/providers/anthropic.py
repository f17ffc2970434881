"""Anthropic's Messages API (`POST /v1/messages`), JSON and server-sent events.

`system` and `developer` messages become the top-level `system` text; consecutive messages of one
role are merged because Messages requires user and assistant turns to alternate.

A stream reports usage in two halves: `message_start` carries the input side (input, cache read,
cache write), `message_delta` the cumulative output. Both are remembered and reported together
once, at `message_stop`:

    message_start        {"message": {"usage": {"input_tokens": 12, "output_tokens": 1}}}
    content_block_delta  {"delta": {"type": "text_delta", "text": "Echo:"}}     → TextDelta("Echo:")
    message_delta        {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 5}}
                                                                              → Finished("stop")
    message_stop         {}                                   → UsageReported(Usage(12, 5))
"""

import json
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import replace
from itertools import chain
from typing import Any, Final

import httpx

from paymaster.adapters.providers.http_api import HttpJsonApi
from paymaster.adapters.providers.turns import turns
from paymaster.domain.chat import Completion, Finished, FinishReason, StreamEvent, TextDelta, Usage, UsageReported
from paymaster.domain.errors import ProviderError
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


def to_wire(call: ProviderCall, *, stream: bool) -> dict[str, Any]:
    conversation = turns(call.request, lambda text: {"type": "text", "text": text}, "Anthropic")
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
    if stream:
        wire["stream"] = True
    return wire


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
        usage = usage_from_wire(body["usage"])
    except (KeyError, TypeError, AttributeError) as error:
        raise ProviderError(f"the provider's answer is not a Messages response ({error!r})") from None
    return Completion(text=text, finish_reason=_finish(body.get("stop_reason")), usage=usage)


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
                raise ProviderError("the provider sent a malformed stream event") from None
            if not isinstance(decoded, dict):
                raise ProviderError("the provider sent a malformed stream event")
            yield event_type or str(decoded.get("type", "")), decoded
            event_type, data = "", []


def events_from_wire(events: Iterable[tuple[str, dict[str, Any]]]) -> Iterator[StreamEvent]:
    """Paymaster's stream events from Anthropic's: text, then Finished, then UsageReported.

    Raises ProviderError on an `error` event (e.g. `overloaded_error` mid-stream).
    """
    usage: dict[str, Any] = {}
    for event_type, data in events:
        if event_type == "message_start":
            usage.update((data.get("message") or {}).get("usage") or {})
        elif event_type == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                yield TextDelta(str(delta["text"]))
        elif event_type == "message_delta":
            # Output tokens are cumulative; newer API versions may restate the input side too.
            usage.update({key: value for key, value in (data.get("usage") or {}).items() if value is not None})
            stop_reason = (data.get("delta") or {}).get("stop_reason")
            if stop_reason:
                yield Finished(_finish(stop_reason))
        elif event_type == "message_stop":
            yield UsageReported(usage_from_wire(usage))
        elif event_type == "error":
            error = data.get("error") or {}
            raise ProviderError(
                f"the provider's stream failed: {error.get('type', 'error')}: {error.get('message', '')}"
            )


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
        body, request_id = self._api.post(to_wire(call, stream=False), self._headers())
        return replace(from_wire(body), provider_request_id=request_id)

    def stream(self, call: ProviderCall) -> Generator[StreamEvent, None, None]:
        yield from events_from_wire(sse_from_wire(self._api.lines(to_wire(call, stream=True), self._headers())))
