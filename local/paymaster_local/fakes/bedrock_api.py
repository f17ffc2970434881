"""Fake Bedrock runtime: ``POST /model/{modelId}/converse`` and ``/converse-stream``.

JSON and event-stream frames as Bedrock sends them, parsed by the real boto3 client; the reply and
its usage follow `script` (an echo of the last user message), the token limit is
``inferenceConfig.maxTokens``. A ConverseStream response is these `eventstream` frames:

    messageStart       {"role": "assistant"}
    contentBlockDelta  {"contentBlockIndex": 0, "delta": {"text": "Echo:"}}   one per word,
                                                                             chunk_delay_s apart
    contentBlockStop   {"contentBlockIndex": 0}
    messageStop        {"stopReason": "end_turn"}                            "max_tokens" when cut
    metadata           {"usage": {"inputTokens": 12, ...}, "metrics": {"latencyMs": 81}}

boto3 percent-encodes the model id (``…-v1%3A0``, ARNs with ``%2F``); the ASGI server decodes the
path, so the route takes the model id with ``/`` in it. Any model id is served. The request must
carry a SigV4 ``Authorization`` header; the signature is not verified.
"""

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from paymaster_local.fakes.eventstream import encode_event
from paymaster_local.fakes.script import DEFAULT_CHUNK_DELAY_S, Reply, Turn, compose_reply, paced


class _ValidationError(Exception):
    """A request Bedrock would refuse with 400 ``ValidationException``."""


@dataclass(frozen=True)
class _ConverseRequest:
    turns: tuple[Turn, ...]
    max_tokens: int | None


def _is_signed(request: Request) -> bool:
    authorization = request.headers.get("authorization", "")
    return authorization.startswith("AWS4-HMAC-SHA256 ")


def _aws_error(status_code: int, error_type: str, message: str) -> JSONResponse:
    """An error boto3 raises as ``client.exceptions.<error_type>`` (read from x-amzn-ErrorType)."""
    return JSONResponse({"message": message}, status_code=status_code, headers={"x-amzn-ErrorType": error_type})


def _text_of(blocks: object) -> str:
    """The ``text`` blocks of a content or system list, joined by spaces; other blocks ignored."""
    if not isinstance(blocks, list):
        return ""
    return " ".join(block["text"] for block in blocks if isinstance(block, dict) and isinstance(block.get("text"), str))


def _parse_turns(body: dict[str, object]) -> tuple[Turn, ...]:
    """The system prompt (if any) as one turn, then each message."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _ValidationError("The messages list must contain at least one message.")
    conversation = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise _ValidationError("Each message needs a role of user or assistant.")
        conversation.append(Turn(role=message["role"], text=_text_of(message.get("content"))))
    if conversation[0].role != "user":
        raise _ValidationError("A conversation must start with a user message.")
    system = [Turn(role="system", text=_text_of(body["system"]))] if body.get("system") else []
    return (*system, *conversation)


def _parse_max_tokens(body: dict[str, object]) -> int | None:
    config = body.get("inferenceConfig")
    value = config.get("maxTokens") if isinstance(config, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _ValidationError("inferenceConfig.maxTokens must be an integer of at least 1.")
    return value


def _parse_request(raw: bytes) -> _ConverseRequest:
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise _ValidationError("The request body is not valid JSON.") from error
    if not isinstance(body, dict):
        raise _ValidationError("The request body must be a JSON object.")
    return _ConverseRequest(turns=_parse_turns(body), max_tokens=_parse_max_tokens(body))


def _usage(reply: Reply) -> dict[str, int]:
    return {
        "inputTokens": reply.prompt_tokens,
        "outputTokens": reply.completion_tokens,
        "totalTokens": reply.prompt_tokens + reply.completion_tokens,
    }


def _stop_reason(reply: Reply) -> str:
    return "max_tokens" if reply.truncated else "end_turn"


def _latency_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


async def _event_frames(reply: Reply, started: float, chunk_delay_s: float) -> AsyncIterator[bytes]:
    yield encode_event("messageStart", {"role": "assistant"})
    async for text in paced(reply.deltas, chunk_delay_s):
        yield encode_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}})
    yield encode_event("contentBlockStop", {"contentBlockIndex": 0})
    yield encode_event("messageStop", {"stopReason": _stop_reason(reply)})
    yield encode_event("metadata", {"usage": _usage(reply), "metrics": {"latencyMs": _latency_ms(started)}})


def bedrock_routes(chunk_delay_s: float = DEFAULT_CHUNK_DELAY_S) -> list[BaseRoute]:
    """The fake's routes, for mounting next to other fakes on one app."""

    async def read_reply(request: Request) -> Reply | Response:
        if not _is_signed(request):
            return _aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        try:
            converse_request = _parse_request(await request.body())
        except _ValidationError as error:
            return _aws_error(400, "ValidationException", str(error))
        return compose_reply(converse_request.turns, converse_request.max_tokens)

    async def converse(request: Request) -> Response:
        started = time.monotonic()
        reply = await read_reply(request)
        if isinstance(reply, Response):
            return reply
        body = {
            "output": {"message": {"role": "assistant", "content": [{"text": reply.text}]}},
            "stopReason": _stop_reason(reply),
            "usage": _usage(reply),
            "metrics": {"latencyMs": _latency_ms(started)},
        }
        return JSONResponse(body, headers={"x-amzn-RequestId": str(uuid.uuid4())})

    async def converse_stream(request: Request) -> Response:
        started = time.monotonic()
        reply = await read_reply(request)
        if isinstance(reply, Response):
            return reply
        return StreamingResponse(
            _event_frames(reply, started, chunk_delay_s),
            media_type="application/vnd.amazon.eventstream",
            headers={"x-amzn-RequestId": str(uuid.uuid4())},
        )

    return [
        Route("/model/{model_id:path}/converse", converse, methods=["POST"]),
        Route("/model/{model_id:path}/converse-stream", converse_stream, methods=["POST"]),
    ]


def create_bedrock_app(chunk_delay_s: float = DEFAULT_CHUNK_DELAY_S) -> Starlette:
    """A server app for the fake Bedrock runtime alone; streams pause ``chunk_delay_s`` between words."""
    return Starlette(routes=bedrock_routes(chunk_delay_s))
