"""The prompt audit record: what an opted-in team's call sent and what it got back, size-capped.

The ledger answers "who called which model, when" for every call; this record holds the words,
and only for a team whose policy says `audit: {prompts: true}`. One record per reservation (a
fallback's hop is its own, as in the ledger), written with the settlement.

    prompt       the request as the caller sent it, JSON: {"messages": [...], "tools": [...]}
                 ("tools" only when given), or an embedding's {"input": ...}
    completion   what reached the caller, JSON: {"content": "...", "tool_calls": [...]} (OpenAI's
                 assistant message; "tool_calls" only when there were some) — for a stream, what
                 was delivered up to its end or the client's disconnect. None when nothing was
                 served under this hold (a provider that refused it) and for embeddings.

Both are cut to the team's `max_bytes` of UTF-8 together (`shares`), never inside a character;
`truncated` says so and `prompt_bytes` / `completion_bytes` keep the sizes before the cut. A cut
JSON text no longer parses: the record is for reading, its sizes say what is missing.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from paymaster.domain.chat import ChatRequest, TextDelta, ToolCall, ToolCallDelta
from paymaster.domain.embeddings import EmbeddingRequest
from paymaster.domain.identity import Caller
from paymaster.domain.policy import Audit


@dataclass(frozen=True, slots=True)
class Output:
    """What a chat call delivered to its caller: the text ("" for none) and the tool calls."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


def streamed_output(pieces: Sequence[TextDelta | ToolCallDelta]) -> Output:
    """The output a stream delivered, from its pieces in order: the text joined; each tool call's
    id and name from its first delta, its arguments joined.

    Example: TextDelta("Par"), ToolCallDelta(0, "c1", "lookup", '{"q"'), TextDelta("is"),
    ToolCallDelta(0, None, None, ": 1}") → Output("Paris", (ToolCall("c1", "lookup", '{"q": 1}'),)).
    """
    text: list[str] = []
    calls: dict[int, tuple[str, str, list[str]]] = {}
    for piece in pieces:
        if isinstance(piece, TextDelta):
            text.append(piece.text)
            continue
        calls.setdefault(piece.index, (piece.id or "", piece.name or "", []))[2].append(piece.arguments)
    return Output(
        "".join(text),
        tuple(ToolCall(call_id, name, "".join(arguments)) for _, (call_id, name, arguments) in sorted(calls.items())),
    )


@dataclass(frozen=True, slots=True)
class PromptRecord:
    """One reservation's prompt and completion, as kept for an opted-in team."""

    request_id: str
    hop: int  # 0, or the route index of the fallback held as `<request id>~<hop>`
    admitted_at: datetime
    team: str
    app: str
    env: str
    principal: str  # the caller's IAM ARN
    user: str | None
    model: str  # the virtual model served (the cheaper one when downgraded)
    deployment: str  # the deployment that served, or failed last
    prompt: str  # JSON text, perhaps cut
    completion: str | None  # JSON text, perhaps cut; None: nothing served, or an embedding
    prompt_bytes: int  # UTF-8 bytes of the whole prompt, before any cut
    completion_bytes: int  # … of the whole completion (0 when None)
    truncated: bool
    expires_at: datetime  # when TTL may delete it: admission + the team's retention_days


def prompt_record(
    *,
    request_id: str,
    hop: int,
    admitted_at: datetime,
    caller: Caller,
    model: str,
    deployment: str,
    request: ChatRequest | EmbeddingRequest,
    output: Output | None,
    audit: Audit,
) -> PromptRecord:
    """The record of one reservation, cut to `audit.max_bytes` (see `shares`).

    Example: max_bytes 1,024, a prompt of 3,000 bytes and a completion of 200 → the completion
    whole, the prompt cut to its first 824 bytes (fewer if a character straddles byte 824),
    `truncated` True, `prompt_bytes` 3,000, `completion_bytes` 200.
    """
    prompt = _utf8(_json(_sent(request)))
    completion = None if output is None or isinstance(request, EmbeddingRequest) else _utf8(_json(_delivered(output)))
    prompt_share, completion_share = shares(len(prompt), len(completion or b""), audit.max_bytes)
    kept_prompt = cut_utf8(prompt, prompt_share)
    kept_completion = None if completion is None else cut_utf8(completion, completion_share)
    return PromptRecord(
        request_id=request_id,
        hop=hop,
        admitted_at=admitted_at,
        team=caller.team,
        app=caller.app,
        env=caller.env,
        principal=caller.arn,
        user=request.user,
        model=model,
        deployment=deployment,
        prompt=kept_prompt.decode(),
        completion=None if kept_completion is None else kept_completion.decode(),
        prompt_bytes=len(prompt),
        completion_bytes=len(completion or b""),
        truncated=len(kept_prompt) < len(prompt) or len(kept_completion or b"") < len(completion or b""),
        expires_at=admitted_at + timedelta(days=audit.retention_days),
    )


def shares(prompt: int, completion: int, cap: int) -> tuple[int, int]:
    """Bytes to keep of a prompt and of a completion of these sizes, at most `cap` together: each
    may have half, and what one does not need the other may use.

    Example, cap 1,000: 300 + 500 → 300 + 500 (both whole); 2,000 + 100 → 900 + 100;
    200 + 3,000 → 200 + 800; 2,000 + 3,000 → 500 + 500; 2,001 + 0 (an embedding) → 1,000 + 0.
    """
    if prompt + completion <= cap:
        return prompt, completion
    half = cap // 2
    if completion <= half:
        return cap - completion, completion
    if prompt <= cap - half:
        return prompt, cap - prompt
    return cap - half, half


def cut_utf8(data: bytes, limit: int) -> bytes:
    """The first `limit` bytes of UTF-8 `data`, less the start of a character they would split.

    Example: "né" is b"n\\xc3\\xa9": cut to 2 → b"n" (not half of é); to 3 → all of it.
    """
    if len(data) <= limit:
        return data
    end = limit
    while end > 0 and data[end] & 0xC0 == 0x80:  # a continuation byte: a character starts before it
        end -= 1
    return data[:end]


def _sent(request: ChatRequest | EmbeddingRequest) -> dict[str, Any]:
    if isinstance(request, EmbeddingRequest):
        return {"input": request.input}
    sent: dict[str, Any] = {
        "messages": [message.model_dump(mode="json", exclude_unset=True) for message in request.messages]
    }
    if request.tools is not None:
        sent["tools"] = request.tools
    return sent


def _delivered(output: Output) -> dict[str, Any]:
    delivered: dict[str, Any] = {"content": output.text}
    if output.tool_calls:
        delivered["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in output.tool_calls
        ]
    return delivered


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _utf8(text: str) -> bytes:
    """UTF-8, a lone surrogate (JSON's "\\ud800" parses to one) as "?": DynamoDB and SQS take only
    valid UTF-8, and a record they refused would refuse the settlement it rides in."""
    return text.encode("utf-8", "replace")
