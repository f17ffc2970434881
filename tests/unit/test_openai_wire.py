"""paymaster's SSE answer is byte-for-byte the shape OpenAI sends."""

import json

from paymaster.api.openai_wire import Envelope, chunks
from paymaster.domain.chat import Finished, TextDelta, Usage, UsageReported

ENVELOPE = Envelope(id="chatcmpl-1", model="gpt-4o-mini", created=1_795_976_738)
EVENTS = [TextDelta("Hel"), TextDelta("lo"), Finished("stop"), UsageReported(Usage(5, 2, cache_read_tokens=3))]


def parsed(include_usage: bool) -> list[dict[str, object] | str]:
    lines = [line.decode() for line in chunks(ENVELOPE, iter(EVENTS), include_usage=include_usage)]
    assert all(line.startswith("data: ") and line.endswith("\n\n") for line in lines)
    payloads = [line.removeprefix("data: ").removesuffix("\n\n") for line in lines]
    return [payload if payload == "[DONE]" else json.loads(payload) for payload in payloads]


def test_stream_is_role_deltas_finish_done() -> None:
    role, hel, lo, finish, done = parsed(include_usage=False)

    assert role == {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_795_976_738,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
        ],
    }
    assert [c["choices"][0]["delta"] for c in (hel, lo)] == [{"content": "Hel"}, {"content": "lo"}]  # type: ignore[index]
    assert finish["choices"][0]["finish_reason"] == "stop"  # type: ignore[index]
    assert done == "[DONE]"


def test_include_usage_adds_null_usage_everywhere_and_a_usage_chunk_without_choices() -> None:
    *content, usage, done = parsed(include_usage=True)

    assert all(chunk["usage"] is None for chunk in content)  # type: ignore[index]
    assert usage["choices"] == []  # type: ignore[index]
    assert usage["usage"] == {  # type: ignore[index]
        "prompt_tokens": 8,
        "completion_tokens": 2,
        "total_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 3},
    }
    assert done == "[DONE]"
