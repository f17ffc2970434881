"""paymaster's answers in OpenAI's exact wire format (`chat.completion`, SSE chunks).

Tool calls are written as OpenAI writes them. An answer that is only tool calls has
`"content": null`. A stream names each call once, in its first piece, and sends only argument
fragments after it, which the openai SDK concatenates:

    {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                     "function": {"name": "lookup", "arguments": ""}}]}
    {"tool_calls": [{"index": 0, "function": {"arguments": "{\\"order\\": 7}"}}]}
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from paymaster import names
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
from paymaster.domain.money import format_usd


def usage_body(usage: Usage) -> dict[str, Any]:
    prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
    }


@dataclass(frozen=True, slots=True)
class Envelope:
    """What every object of one response shares."""

    id: str
    model: str
    created: int


def tool_call_body(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def completion_body(envelope: Envelope, completion: Completion, bill: Bill | None = None) -> dict[str, Any]:
    """`usage` is what was charged when the `bill` is given, else what the provider reported."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": completion.text if completion.text or not completion.tool_calls else None,
        "refusal": None,
    }
    if completion.tool_calls:
        message["tool_calls"] = [tool_call_body(call) for call in completion.tool_calls]
    return {
        "id": envelope.id,
        "object": "chat.completion",
        "created": envelope.created,
        "model": envelope.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": completion.finish_reason,
            }
        ],
        "usage": usage_body(completion.usage if bill is None else bill.usage),
    }


def sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


def bill_trailer(bill: Bill) -> bytes:
    """What a stream was charged, as SSE comments named like the non-streamed answer's headers
    (clients, the openai SDK included, skip comment lines):

        : x-paymaster-cost-usd: 0.000123
        : x-paymaster-billed-on: provider_usage
    """
    return f": {names.HEADER_COST}: {format_usd(bill.cost)}\n: {names.HEADER_BILLED_ON}: {bill.basis}\n\n".encode()


def chunks(envelope: Envelope, events: Iterator[StreamEvent | Bill], *, include_usage: bool) -> Iterator[bytes]:
    """SSE lines for a stream: role first, a chunk per delta, the finish, usage if asked, what
    was charged (`bill_trailer`), [DONE].

    With `include_usage`, every chunk carries `"usage": null` and the usage chunk has no choices,
    exactly as OpenAI sends them; it comes last and says what was charged (the `Bill`) or, with
    no bill in the events, what the provider reported.
    """

    def chunk(choices: list[dict[str, Any]], usage: Usage | None = None) -> bytes:
        body: dict[str, Any] = {
            "id": envelope.id,
            "object": "chat.completion.chunk",
            "created": envelope.created,
            "model": envelope.model,
            "choices": choices,
        }
        if include_usage:
            body["usage"] = None if usage is None else usage_body(usage)
        return sse(body)

    def choice(delta: dict[str, Any], finish_reason: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]

    named: set[int] = set()  # the tool calls whose first piece is sent
    reported: Usage | None = None
    bill: Bill | None = None
    yield chunk(choice({"role": "assistant", "content": ""}))
    for event in events:
        if isinstance(event, TextDelta):
            yield chunk(choice({"content": event.text}))
        elif isinstance(event, ToolCallDelta):
            piece = tool_call_piece(event, first=event.index not in named)
            named.add(event.index)
            if piece is not None:
                yield chunk(choice({"tool_calls": [piece]}))
        elif isinstance(event, Finished):
            yield chunk(choice({}, event.finish_reason))
        elif isinstance(event, UsageReported):
            reported = event.usage
        elif isinstance(event, Bill):
            bill = event
    usage = bill.usage if bill is not None else reported
    if include_usage and usage is not None:
        yield chunk([], usage)
    if bill is not None:
        yield bill_trailer(bill)
    yield sse("[DONE]")


def tool_call_piece(delta: ToolCallDelta, *, first: bool) -> dict[str, Any] | None:
    """A call's first piece names it; later ones carry only argument fragments (None if empty).

    A provider that repeats the id or name in later pieces is not echoed: the openai SDK would
    concatenate them ("lookuplookup").
    """
    if not first:
        return {"index": delta.index, "function": {"arguments": delta.arguments}} if delta.arguments else None
    piece: dict[str, Any] = {"index": delta.index}
    if delta.id is not None:
        piece["id"] = delta.id
    piece["type"] = "function"
    function = {"name": delta.name} if delta.name is not None else {}
    piece["function"] = function | {"arguments": delta.arguments}
    return piece
