"""Fake OpenAI API: ``POST /v1/chat/completions`` (JSON or SSE) and ``GET /v1/models``.

Wire format as OpenAI sends it; the reply and its usage follow `script` (an echo of the last user
message). Any non-empty ``Authorization: Bearer`` key is accepted. The token limit is
``max_completion_tokens``, else ``max_tokens``.

A stream (``"stream": true``) is ``data: <chunk JSON>\\n\\n`` lines ending in ``data: [DONE]\\n\\n``:

    {"choices":[{"delta":{"role":"assistant","content":""},"finish_reason":null,...}],...}
    {"choices":[{"delta":{"content":"Echo:"},...}],...}          one per word, chunk_delay_s apart
    {"choices":[{"delta":{},"finish_reason":"stop",...}],...}    "length" when cut at the limit
    {"choices":[],"usage":{"prompt_tokens":12,...}}              only with include_usage
    [DONE]

With ``stream_options.include_usage`` every earlier chunk carries ``"usage": null``; without it no
chunk has a ``usage`` key.
"""

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from paymaster_local.fakes.script import DEFAULT_CHUNK_DELAY_S, Reply, Turn, compose_reply, paced

MODELS: Final = ("gpt-4o-mini", "gpt-4o")
_MODELS_CREATED: Final = 1_715_367_049


class _InvalidRequestError(Exception):
    """A request OpenAI would refuse with 400 ``invalid_request_error``."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True)
class _ChatRequest:
    """The parts of a chat completion request the fake acts on."""

    model: str
    turns: tuple[Turn, ...]
    max_tokens: int | None
    stream: bool
    include_usage: bool


def _error(
    status_code: int,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status_code)


def _has_api_key(request: Request) -> bool:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(key.strip())


def _missing_api_key() -> JSONResponse:
    return _error(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
    )


def _text_of(content: object) -> str:
    """A message's text: a string as is, the ``text`` parts of a part list joined by spaces."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        )
    return ""


def _parse_turns(messages: object) -> tuple[Turn, ...]:
    if messages is None:
        raise _InvalidRequestError(
            "Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter"
        )
    if not isinstance(messages, list):
        raise _InvalidRequestError(
            "Invalid type for 'messages': expected an array of objects.", param="messages", code="invalid_type"
        )
    if not messages:
        raise _InvalidRequestError(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    turns = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _InvalidRequestError(
                f"Missing required parameter: 'messages[{index}].role'.",
                param=f"messages[{index}].role",
                code="missing_required_parameter",
            )
        turns.append(Turn(role=message["role"], text=_text_of(message.get("content"))))
    return tuple(turns)


def _parse_max_tokens(body: dict[str, object]) -> int | None:
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _InvalidRequestError(
            f"Invalid '{name}': expected an integer >= 1, but got {value!r} instead.", param=name, code="invalid_value"
        )
    return value


def _parse_chat_request(body: object) -> _ChatRequest:
    """Validate a decoded request body the way OpenAI does for the fields the fake uses.

    Raises `_InvalidRequestError` naming the offending parameter, e.g. ``messages`` when missing.
    """
    if not isinstance(body, dict):
        raise _InvalidRequestError("We could not parse the JSON body of your request.")
    turns = _parse_turns(body.get("messages"))
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _InvalidRequestError(
            "Missing required parameter: 'model'.", param="model", code="missing_required_parameter"
        )
    stream = body.get("stream") is True
    stream_options = body.get("stream_options")
    if stream_options is not None and not stream:
        raise _InvalidRequestError(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )
    include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    return _ChatRequest(
        model=model, turns=turns, max_tokens=_parse_max_tokens(body), stream=stream, include_usage=include_usage
    )


def _usage(reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def _finish_reason(reply: Reply) -> str:
    return "length" if reply.truncated else "stop"


def _completion(chat: _ChatRequest, reply: Reply) -> dict[str, object]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": chat.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text},
                "logprobs": None,
                "finish_reason": _finish_reason(reply),
            }
        ],
        "usage": _usage(reply),
    }


async def _chunk_lines(chat: _ChatRequest, reply: Reply, chunk_delay_s: float) -> AsyncIterator[str]:
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())

    def line(choices: list[dict[str, object]], usage: dict[str, int] | None = None) -> str:
        chunk: dict[str, object] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": chat.model,
            "choices": choices,
        }
        if chat.include_usage:
            chunk["usage"] = usage
        return f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n"

    def choice(delta: dict[str, str], finish_reason: str | None = None) -> dict[str, object]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    yield line([choice({"role": "assistant", "content": ""})])
    async for text in paced(reply.deltas, chunk_delay_s):
        yield line([choice({"content": text})])
    yield line([choice({}, _finish_reason(reply))])
    if chat.include_usage:
        yield line([], _usage(reply))
    yield "data: [DONE]\n\n"


def openai_routes(chunk_delay_s: float = DEFAULT_CHUNK_DELAY_S) -> list[BaseRoute]:
    """The fake's routes, for mounting next to other fakes on one app."""

    async def chat_completions(request: Request) -> Response:
        if not _has_api_key(request):
            return _missing_api_key()
        try:
            chat = _parse_chat_request(json.loads(await request.body()))
        except ValueError:  # not JSON, or not UTF-8
            return _error(400, "We could not parse the JSON body of your request.")
        except _InvalidRequestError as error:
            return _error(400, error.message, param=error.param, code=error.code)
        reply = compose_reply(chat.turns, chat.max_tokens)
        if chat.stream:
            return StreamingResponse(_chunk_lines(chat, reply, chunk_delay_s), media_type="text/event-stream")
        return JSONResponse(_completion(chat, reply))

    async def models(request: Request) -> Response:
        if not _has_api_key(request):
            return _missing_api_key()
        data = [{"id": model, "object": "model", "created": _MODELS_CREATED, "owned_by": "openai"} for model in MODELS]
        return JSONResponse({"object": "list", "data": data})

    return [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
    ]


def create_openai_app(chunk_delay_s: float = DEFAULT_CHUNK_DELAY_S) -> Starlette:
    """A server app for the fake OpenAI API alone; streams pause ``chunk_delay_s`` between words."""
    return Starlette(routes=openai_routes(chunk_delay_s))
