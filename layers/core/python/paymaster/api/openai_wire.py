"""paymaster's answers in OpenAI's exact wire format (`chat.completion`, SSE chunks)."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from paymaster.domain.chat import Completion, Finished, StreamEvent, TextDelta, Usage, UsageReported


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


def completion_body(envelope: Envelope, completion: Completion) -> dict[str, Any]:
    return {
        "id": envelope.id,
        "object": "chat.completion",
        "created": envelope.created,
        "model": envelope.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.text, "refusal": None},
                "logprobs": None,
                "finish_reason": completion.finish_reason,
            }
        ],
        "usage": usage_body(completion.usage),
    }


def sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


def chunks(envelope: Envelope, events: Iterator[StreamEvent], *, include_usage: bool) -> Iterator[bytes]:
    """SSE lines for a stream: role first, a chunk per delta, the finish, usage if asked, [DONE].

    With `include_usage`, every chunk carries `"usage": null` and the usage chunk has no choices,
    exactly as OpenAI sends them.
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

    yield chunk(choice({"role": "assistant", "content": ""}))
    for event in events:
        if isinstance(event, TextDelta):
            yield chunk(choice({"content": event.text}))
        elif isinstance(event, Finished):
            yield chunk(choice({}, event.finish_reason))
        elif isinstance(event, UsageReported) and include_usage:
            yield chunk([], event.usage)
    yield sse("[DONE]")
