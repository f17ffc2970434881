"""Fake Anthropic Messages API: ``POST /v1/messages`` (JSON or SSE).

Wire format as Anthropic sends it; the reply, the tool calls and their usage follow `script` (the
``system`` text counted as one more turn), the token limit is ``max_tokens``. Any non-empty
``x-api-key`` is accepted, or only ``api_key`` when the app is given one (401
``authentication_error`` for any other, as Anthropic answers); every answer carries a
``request-id``. Scripted `faults` apply, keyed by the body's ``model``. A stream
(``"stream": true``) is these events, each ``event: <type>\\ndata: <JSON>\\n\\n``:

    message_start        {"message": {..., "usage": {"input_tokens": 12, "output_tokens": 1}}}
    content_block_start  {"index": 0, "content_block": {"type": "text", "text": ""}}
    content_block_delta  {"index": 0, "delta": {"type": "text_delta", "text": "Echo:"}}  one per word,
                                                                                  chunk_delay_s apart
    content_block_stop   {"index": 0}
    message_delta        {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 5}}
                                                                     "max_tokens" when cut
    message_stop         {}

Tools are ``tools: [{"name": "get_weather", "description": ..., "input_schema": {...}}]``. A tool
call answers ``content: [{"type": "tool_use", "id": "toolu_…", "name": "get_weather", "input":
{"city": "Paris"}}]`` with stop reason ``tool_use``; streamed, the block starts as
``{"type": "tool_use", "id": ..., "name": ..., "input": {}}`` and its deltas are
``{"type": "input_json_delta", "partial_json": "{\\"city\\":"}``, one per word of the arguments.

Messages may hold ``tool_use`` blocks (assistant) and ``tool_result`` blocks (user, content a
string or text blocks); they are checked as Anthropic checks them: a request with either defines
tools, and the user message right after an assistant message with ``tool_use`` blocks answers
exactly those ids.
"""

import json
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from paymaster_local.fakes.faults import (
    FaultStore,
    StatusFault,
    StreamScript,
    delay_first_byte,
    json_response,
    stream_response,
)
from paymaster_local.fakes.script import (
    DEFAULT_CHUNK_DELAY_S,
    Exchange,
    Reply,
    Role,
    ToolCall,
    Turn,
    compose_reply,
    first_tool_id_mismatch,
)

_FAULT_ERRORS: Final[dict[int, tuple[str, str]]] = {  # status: error type, message
    400: ("invalid_request_error", "The request was refused."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}
_MALFORMED_EVENT: Final = b"event: content_block_delta\ndata: {not json\n\n"


class _InvalidRequestError(Exception):
    """A request Anthropic would refuse with 400 ``invalid_request_error``."""


@dataclass(frozen=True)
class _MessagesRequest:
    model: str
    turns: tuple[Turn, ...]
    max_tokens: int
    stream: bool
    tools: frozenset[str]


def _error(status_code: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return JSONResponse(body, status_code=status_code, headers={"request-id": _request_id(), **(headers or {})})


def _fault_error(fault: StatusFault) -> JSONResponse:
    """The error Anthropic sends for the fault's status: 429 ``rate_limit_error``, 529 ``overloaded_error``."""
    default = ("api_error", "Internal server error") if fault.status >= 500 else _FAULT_ERRORS[400]
    error_type, message = _FAULT_ERRORS.get(fault.status, default)
    return _error(fault.status, error_type, message, fault.retry_headers())


def _request_id() -> str:
    return f"req_{uuid.uuid4().hex[:24]}"


def _block_text(block: dict[str, Any]) -> str:
    """A text block's text, a tool_use block as its call, a tool_result block's text; else nothing."""
    if block.get("type") == "text" and isinstance(block.get("text"), str):
        return str(block["text"])
    if block.get("type") == "tool_use":
        return ToolCall.of(str(block.get("name")), block.get("input")).text
    if block.get("type") == "tool_result":
        return _text_of(block.get("content"))
    return ""


def _text_of(content: object) -> str:
    """A string as is; the text of a block list's blocks (see `_block_text`) joined by spaces."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = (_block_text(block) for block in content if isinstance(block, dict))
    return " ".join(text for text in texts if text)


def _blocks(content: object, block_type: str) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return []
    return [block for block in content if isinstance(block, dict) and block.get("type") == block_type]


def _parse_message(index: int, message: object) -> Exchange:
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
        raise _InvalidRequestError(f"messages.{index}.role: Input should be 'user' or 'assistant'")
    content = message.get("content")
    if message["role"] == "assistant":
        calls = _blocks(content, "tool_use")
        for block in calls:
            if not (
                isinstance(block.get("id"), str)
                and isinstance(block.get("name"), str)
                and isinstance(block.get("input"), dict)
            ):
                raise _InvalidRequestError(
                    f"messages.{index}.content: a tool_use block needs an id, a name and an input"
                )
        return Exchange(Turn(role="assistant", text=_text_of(content)), tuple(block["id"] for block in calls))
    results = _blocks(content, "tool_result")
    role: Role = "tool" if results else "user"
    return Exchange(Turn(role=role, text=_text_of(content)), tuple(str(block.get("tool_use_id")) for block in results))


def _check_tool_ids(exchanges: Sequence[Exchange], tools: frozenset[str]) -> None:
    """Anthropic's rules for tool_use and tool_result blocks, in its words: a request with either
    defines tools, and the message after one with tool_use blocks answers exactly their ids."""
    if not tools and any(exchange.tool_ids for exchange in exchanges):
        raise _InvalidRequestError("Requests which include `tool_use` or `tool_result` blocks must define tools.")
    mismatch = first_tool_id_mismatch(exchanges)
    if mismatch is not None and mismatch.unexpected:
        raise _InvalidRequestError(
            f"messages.{mismatch.index}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
            f"{', '.join(mismatch.unexpected)}. Each `tool_result` block must have a corresponding `tool_use` block "
            "in the previous message."
        )
    if mismatch is not None:
        raise _InvalidRequestError(
            f"messages.{mismatch.index - 1}: `tool_use` ids were found without `tool_result` blocks immediately "
            f"after: {', '.join(mismatch.unanswered)}. Each `tool_use` block must have a corresponding `tool_result` "
            "block in the next message."
        )


def _parse_tools(tools: object) -> frozenset[str]:
    if tools is None:
        return frozenset()
    if not isinstance(tools, list):
        raise _InvalidRequestError("tools: Input should be a valid list")
    names = set()
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
            raise _InvalidRequestError(f"tools.{index}.name: Field required")
        names.add(tool["name"])
    return frozenset(names)


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
    parsed = [_parse_message(index, message) for index, message in enumerate(messages)]
    tools = _parse_tools(body.get("tools"))
    _check_tool_ids(parsed, tools)
    system = [Turn(role="system", text=_text_of(body["system"]))] if body.get("system") else []
    return _MessagesRequest(
        model=model,
        turns=(*system, *(message.turn for message in parsed)),
        max_tokens=max_tokens,
        stream=body.get("stream") is True,
        tools=tools,
    )


def _stop_reason(reply: Reply) -> str:
    if reply.tool_call is not None:
        return "tool_use"
    return "max_tokens" if reply.truncated else "end_turn"


def _message(model: str, content: list[dict[str, Any]], usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
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


def _tool_use_id() -> str:
    return f"toolu_{uuid.uuid4().hex[:24]}"


def _content(reply: Reply) -> list[dict[str, Any]]:
    if reply.tool_call is None:
        return [{"type": "text", "text": reply.text}]
    call = reply.tool_call
    return [{"type": "tool_use", "id": _tool_use_id(), "name": call.name, "input": json.loads(call.arguments)}]


def _stream_script(request: _MessagesRequest, reply: Reply) -> StreamScript:
    def event(event_type: str, data: dict[str, Any]) -> bytes:
        payload = json.dumps({"type": event_type, **data}, separators=(",", ":"))
        return f"event: {event_type}\ndata: {payload}\n\n".encode()

    if reply.tool_call is None:
        block: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": text} for text in reply.deltas]
    else:
        block = {"type": "tool_use", "id": _tool_use_id(), "name": reply.tool_call.name, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": fragment} for fragment in reply.deltas]
    start = _message(request.model, [], _usage(reply.prompt_tokens, 1))
    tail = (
        event("content_block_stop", {"index": 0}),
        event(
            "message_delta",
            {
                "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
                "usage": {"output_tokens": reply.completion_tokens},
            },
        ),
        event("message_stop", {}),
    )
    return StreamScript(
        head=(
            event("message_start", {"message": start}),
            event("content_block_start", {"index": 0, "content_block": block}),
        ),
        deltas=tuple(event("content_block_delta", {"index": 0, "delta": delta}) for delta in deltas),
        tail=lambda: tail,
        malformed=_MALFORMED_EVENT,
    )


def anthropic_routes(
    faults: FaultStore, chunk_delay_s: float = DEFAULT_CHUNK_DELAY_S, api_key: str | None = None
) -> list[BaseRoute]:
    """The fake's routes, for mounting next to other fakes on one app; they take their faults from ``faults``
    and accept any ``x-api-key``, or only ``api_key`` when given."""

    async def messages(request: Request) -> Response:
        key = request.headers.get("x-api-key", "").strip()
        if not key:
            return _error(401, "authentication_error", "x-api-key header is required")
        if api_key is not None and not secrets.compare_digest(key.encode(), api_key.encode()):
            return _error(401, *_FAULT_ERRORS[401])
        try:
            parsed = _parse_request(await request.body())
        except _InvalidRequestError as error:
            return _error(400, "invalid_request_error", str(error))
        fault = faults.take("anthropic", "chat_stream" if parsed.stream else "chat", parsed.model, parsed.max_tokens)
        if isinstance(fault, StatusFault):
            return _fault_error(fault)
        await delay_first_byte(fault)
        reply = compose_reply(parsed.turns, parsed.max_tokens, parsed.tools)
        headers = {"request-id": _request_id()}
        if parsed.stream:
            script = _stream_script(parsed, reply)
            return stream_response(script, fault, chunk_delay_s, media_type="text/event-stream", headers=headers)
        message = _message(parsed.model, _content(reply), _usage(reply.prompt_tokens, reply.completion_tokens))
        return json_response({**message, "stop_reason": _stop_reason(reply)}, fault, headers=headers)

    return [Route("/v1/messages", messages, methods=["POST"])]
