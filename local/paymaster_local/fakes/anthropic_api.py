"""Fake Anthropic Messages API: ``POST /v1/messages`` (JSON or SSE).

Wire format as Anthropic sends it; the reply and its usage follow `script` (an echo of the last
user message, the ``system`` text counted as one more turn), the token limit is ``max_tokens``.
Any non-empty ``x-api-key`` is accepted. A stream (``"stream": true``) is these events, each
``event: <type>\\ndata: <JSON>\\n\\n``:

    message_start        {"message": {..., "usage": {"input_tokens": 12, "output_tokens": 1}}}
    content_block_start  {"index": 0, "content_block": {"type": "text", "text": ""}}
    content_block_delta  {"index": 0, "delta": {"type": "text_delta", "text": "Echo:"}}  one per word,
                                                                                  chunk_delay_s apart
    content_block_stop   {"index": 0}
    message_delta        {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 5}}
                                                                     "max_tokens" when cut
    message_stop         {}
"""

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from paymaster_local.fakes.script import DEFAULT_CHUNK_DELAY_S, Reply, Turn, compose_reply, paced


class _InvalidRequestError(Exception):
    """A request Anthropic would refuse with 400 ``invalid_request_error``."""


@dataclass(frozen=True)
class _MessagesRequest:
    model: str
    turns: tuple[Turn, ...]
    max_tokens: int
    stream: bool


def _error(status_code: int, error_type: str, message: str) -> JSONResponse:
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return JSONResponse(body, status_code=status_code, headers={"request-id": _request_id()})


def _request_id() -> str:
    return f"req_{uuid.uuid4().hex[:24]}"


def _text_of(content: object) -> str:
    """A string as is; the ``text`` blocks of a block list joined by spaces, other blocks ignored."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return " ".join(
        block["text"]
        for block in content
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
    )


def _parse_request(raw: bytes) -> _MessagesRequest:
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise _InvalidRequestError("The request body is not valid JSON.") from error
    if not isinstance(body, dict):
        raise _InvalidRequestError("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _InvalidRequestError("model: Field required")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise _InvalidRequestError("max_tokens: Field required, an integer of at least 1")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _InvalidRequestError("messages: at least one message is required")
    conversation = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise _InvalidRequestError(f"messages.{index}.role: Input should be 'user' or 'assistant'")
        conversation.append(Turn(role=message["role"], text=_text_of(message.get("content"))))
    system = [Turn(role="system", text=_text_of(body["system"]))] if body.get("system") else []
    return _MessagesRequest(
        model=model, turns=(*system, *conversation), max_tokens=max_tokens, stream=body.get("stream") is True
    )


def _stop_reason(reply: Reply) -> str:
    return "max_tokens" if reply.truncated else "end_turn"


def _message(model: str, message_id: str, content: list[dict[str, str]], usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


async def _event_lines(request: _MessagesRequest, reply: Reply, chunk_delay_s: float) -> AsyncIterator[str]:
    def event(event_type: str, data: dict[str, Any]) -> str:
        return f"event: {event_type}\ndata: {json.dumps({'type': event_type, **data}, separators=(',', ':'))}\n\n"

    start = _message(request.model, f"msg_{uuid.uuid4().hex[:24]}", [], _usage(reply.prompt_tokens, 1))
    yield event("message_start", {"message": start})
    yield event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    async for text in paced(reply.deltas, chunk_delay_s):
        yield event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}})
    yield event("content_block_stop", {"index": 0})
    yield event(
        "message_delta",
        {
            "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
            "usage": {"output_tokens": reply.completion_tokens},
        },
    )
    yield event("message_stop", {})


def anthropic_routes(chunk_delay_s: float = DEFAULT_CHUNK_DELAY_S) -> list[BaseRoute]:
    """The fake's routes, for mounting next to other fakes on one app."""

    async def messages(request: Request) -> Response:
        if not request.headers.get("x-api-key", "").strip():
            return _error(401, "authentication_error", "x-api-key header is required")
        try:
            parsed = _parse_request(await request.body())
        except _InvalidRequestError as error:
            return _error(400, "invalid_request_error", str(error))
        reply = compose_reply(parsed.turns, parsed.max_tokens)
        headers = {"request-id": _request_id()}
        if parsed.stream:
            return StreamingResponse(
                _event_lines(parsed, reply, chunk_delay_s), media_type="text/event-stream", headers=headers
            )
        message = _message(
            parsed.model,
            f"msg_{uuid.uuid4().hex[:24]}",
            [{"type": "text", "text": reply.text}],
            _usage(reply.prompt_tokens, reply.completion_tokens),
        )
        return JSONResponse({**message, "stop_reason": _stop_reason(reply)}, headers=headers)

    return [Route("/v1/messages", messages, methods=["POST"])]
