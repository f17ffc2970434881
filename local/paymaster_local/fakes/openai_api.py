"""Fake OpenAI API: ``POST /v1/chat/completions`` (JSON or SSE), ``POST /v1/embeddings``, ``GET /v1/models``.

Wire format as OpenAI sends it; the reply, the tool calls, the vectors and their usage follow
`script`. Any non-empty ``Authorization: Bearer`` key is accepted, or only ``api_key`` when the
app is given one (401 ``invalid_api_key`` for any other, as OpenAI answers); every answer carries an
``x-request-id``. The token limit is ``max_completion_tokens``, else ``max_tokens``. Scripted
`faults` apply to chat completions and embeddings, keyed by the body's ``model``.

A stream (``"stream": true``) is ``data: <chunk JSON>\\n\\n`` lines ending in ``data: [DONE]\\n\\n``:

    {"choices":[{"delta":{"role":"assistant","content":""},"finish_reason":null,...}],...}
    {"choices":[{"delta":{"content":"Echo:"},...}],...}          one per word, chunk_delay_s apart
    {"choices":[{"delta":{},"finish_reason":"stop",...}],...}    "length" when cut at the limit
    {"choices":[],"usage":{"prompt_tokens":12,...}}              only with include_usage
    [DONE]

With ``stream_options.include_usage`` every earlier chunk carries ``"usage": null``; without it no
chunk has a ``usage`` key.

Tools are ``tools: [{"type": "function", "function": {"name": "get_weather", ...}}]``. A tool call
answers ``message: {"role": "assistant", "content": null, "tool_calls": [{"id": "call_…",
"type": "function", "function": {"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}}]}``
with finish reason ``tool_calls``; streamed, the role chunk carries the call without arguments,

    {"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_…","type":"function",
              "function":{"name":"get_weather","arguments":""}}]}}
    {"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\":"}}]}}     one per word
    {"delta":{},"finish_reason":"tool_calls"}

An assistant message's ``tool_calls`` and each ``role: "tool"`` answer are checked as OpenAI
checks them: every tool message answers a call of the assistant message before it, and every call
is answered before the next other message.

Embeddings take ``input`` as a string, strings, token ids or lists of token ids (a token id list
costs its length), ``dimensions`` and ``encoding_format`` ``float`` (default) or ``base64``
(little-endian float32, as the openai SDK asks unless told otherwise):

    {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.12, ...]}],
     "model": "text-embedding-3-small", "usage": {"prompt_tokens": 2, "total_tokens": 2}}
"""

import base64
import json
import secrets
import struct
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from paymaster_local.fakes.faults import (
    FaultStore,
    StatusFault,
    StreamScript,
    delay_first_byte,
    fault_routes,
    json_response,
    stream_response,
)
from paymaster_local.fakes.script import (
    DEFAULT_CHUNK_DELAY_S,
    DEFAULT_EMBEDDING_DIMENSIONS,
    Reply,
    Role,
    ToolCall,
    Turn,
    compose_reply,
    count_tokens,
    embed,
)

MODELS: Final = ("gpt-4o-mini", "gpt-4o")
_MODELS_CREATED: Final = 1_715_367_049
_ROLES: Final[dict[str, Role]] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}
_INVALID_INPUT: Final = (
    "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
)
_FAULT_ERRORS: Final[dict[int, tuple[str, str | None, str]]] = {  # status: type, code, message
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
}
_MALFORMED_LINE: Final = b"data: {not json\n\n"


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
    tools: frozenset[str]


@dataclass(frozen=True)
class _EmbeddingsRequest:
    """``inputs``: for each input, the text its vector is derived from and its tokens."""

    model: str
    inputs: tuple[tuple[str, int], ...]
    dimensions: int
    as_base64: bool


def _request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


def _error(
    status_code: int,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status_code, headers={"x-request-id": _request_id(), **(headers or {})})


def _fault_error(fault: StatusFault) -> JSONResponse:
    """The error OpenAI sends for the fault's status: 429 ``rate_limit_exceeded``, 5xx ``server_error``."""
    if fault.status >= 500:
        default = ("server_error", None, "The server had an error while processing your request. Sorry about that!")
    else:
        default = ("invalid_request_error", None, "The request was refused.")
    error_type, code, message = _FAULT_ERRORS.get(fault.status, default)
    return _error(fault.status, message, error_type=error_type, code=code, headers=fault.retry_headers())


def _refused_key(request: Request, api_key: str | None) -> JSONResponse | None:
    """The 401 OpenAI answers when the request has no bearer key, or not ``api_key`` (when set); else None."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return _error(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    if api_key is not None and not secrets.compare_digest(key.encode(), api_key.encode()):
        error_type, code, message = _FAULT_ERRORS[401]
        return _error(401, message, error_type=error_type, code=code)
    return None


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


def _parse_tool_calls(value: object, index: int) -> list[tuple[str, ToolCall]]:
    """An assistant message's ``tool_calls``, as (id, call) pairs."""
    if value is None:
        return []
    param = f"messages[{index}].tool_calls"
    if not isinstance(value, list):
        raise _InvalidRequestError(
            f"Invalid type for '{param}': expected an array of objects.", param=param, code="invalid_type"
        )
    calls = []
    for position, item in enumerate(value):
        function = item.get("function") if isinstance(item, dict) else None
        if not (
            isinstance(item, dict)
            and isinstance(item.get("id"), str)
            and isinstance(function, dict)
            and isinstance(function.get("name"), str)
            and isinstance(function.get("arguments"), str)
        ):
            raise _InvalidRequestError(
                f"Invalid '{param}[{position}]': expected an object with 'id' and 'function' ('name', 'arguments').",
                param=f"{param}[{position}]",
                code="invalid_value",
            )
        calls.append((item["id"], ToolCall(name=function["name"], arguments=function["arguments"])))
    return calls


def _unanswered(call_ids: Sequence[str], index: int) -> _InvalidRequestError:
    return _InvalidRequestError(
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
        f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(call_ids)}",
        param=f"messages.[{index}].role",
    )


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
    open_calls: list[str] = []  # ids of the last assistant message's calls not answered yet
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _InvalidRequestError(
                f"Missing required parameter: 'messages[{index}].role'.",
                param=f"messages[{index}].role",
                code="missing_required_parameter",
            )
        role = _ROLES.get(message["role"])
        if role is None:
            raise _InvalidRequestError(
                f"Invalid value: '{message['role']}'. Supported values are: 'system', 'assistant', 'user', "
                "'function', 'tool', and 'developer'.",
                param=f"messages[{index}].role",
                code="invalid_value",
            )
        if message["role"] == "tool":
            if message.get("tool_call_id") not in open_calls:
                raise _InvalidRequestError(
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
                    "'tool_calls'.",
                    param=f"messages.[{index}].role",
                )
            open_calls.remove(message["tool_call_id"])
        elif open_calls:
            raise _unanswered(open_calls, index)
        calls = _parse_tool_calls(message.get("tool_calls"), index) if role == "assistant" else []
        open_calls += [call_id for call_id, _ in calls]
        parts = [_text_of(message.get("content")), *(call.text for _, call in calls)]
        turns.append(Turn(role=role, text=" ".join(part for part in parts if part)))
    if open_calls:
        raise _unanswered(open_calls, len(messages))
    return tuple(turns)


def _parse_tools(tools: object) -> frozenset[str]:
    """The names of the request's function tools."""
    if tools is None:
        return frozenset()
    if not isinstance(tools, list):
        raise _InvalidRequestError(
            "Invalid type for 'tools': expected an array of objects.", param="tools", code="invalid_type"
        )
    names = set()
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(name, str) or not name:
            raise _InvalidRequestError(
                f"Missing required parameter: 'tools[{index}].function.name'.",
                param=f"tools[{index}].function.name",
                code="missing_required_parameter",
            )
        names.add(name)
    return frozenset(names)


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


def _parse_model(body: dict[str, object]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _InvalidRequestError(
            "Missing required parameter: 'model'.", param="model", code="missing_required_parameter"
        )
    return model


def _parse_chat_request(body: object) -> _ChatRequest:
    """Validate a decoded request body the way OpenAI does for the fields the fake uses.

    Raises `_InvalidRequestError` naming the offending parameter, e.g. ``messages`` when missing.
    """
    if not isinstance(body, dict):
        raise _InvalidRequestError("We could not parse the JSON body of your request.")
    turns = _parse_turns(body.get("messages"))
    model = _parse_model(body)
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
        model=model,
        turns=turns,
        max_tokens=_parse_max_tokens(body),
        stream=stream,
        include_usage=include_usage,
        tools=_parse_tools(body.get("tools")),
    )


def _is_token_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _embedding_inputs(value: object) -> tuple[tuple[str, int], ...]:
    """Each input's text and tokens: a string its words; a token id list its length, its text the ids.

    Example: ``["hi there", [9906, 1070, 3]]`` → ``(("hi there", 2), ("9906 1070 3", 3))``.
    """
    if isinstance(value, str) or (isinstance(value, list) and value and all(map(_is_token_id, value))):
        items: list[object] = [value]
    elif isinstance(value, list) and value:
        items = value
    else:
        raise _InvalidRequestError(_INVALID_INPUT)
    inputs = []
    for item in items:
        if isinstance(item, str) and item:
            inputs.append((item, count_tokens(item)))
        elif isinstance(item, list) and item and all(map(_is_token_id, item)):
            inputs.append((" ".join(map(str, item)), len(item)))
        else:
            raise _InvalidRequestError(_INVALID_INPUT)
    return tuple(inputs)


def _parse_embeddings_request(body: object) -> _EmbeddingsRequest:
    if not isinstance(body, dict):
        raise _InvalidRequestError("We could not parse the JSON body of your request.")
    model = _parse_model(body)
    if body.get("input") is None:
        raise _InvalidRequestError(
            "Missing required parameter: 'input'.", param="input", code="missing_required_parameter"
        )
    encoding_format = body.get("encoding_format", "float")
    if encoding_format not in ("float", "base64"):
        raise _InvalidRequestError(
            f"Invalid value: {encoding_format!r}. Supported values are: 'float' and 'base64'.",
            param="encoding_format",
            code="invalid_value",
        )
    dimensions = body.get("dimensions", DEFAULT_EMBEDDING_DIMENSIONS)
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
        raise _InvalidRequestError(
            f"Invalid 'dimensions': expected an integer >= 1, but got {dimensions!r} instead.",
            param="dimensions",
            code="invalid_value",
        )
    return _EmbeddingsRequest(
        model=model,
        inputs=_embedding_inputs(body["input"]),
        dimensions=dimensions,
        as_base64=encoding_format == "base64",
    )


def _embeddings(request: _EmbeddingsRequest) -> dict[str, object]:
    def encoded(vector: tuple[float, ...]) -> list[float] | str:
        if request.as_base64:
            return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        return list(vector)

    tokens = sum(count for _, count in request.inputs)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": encoded(embed(text, request.dimensions))}
            for index, (text, _) in enumerate(request.inputs)
        ],
        "model": request.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _usage(reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def _finish_reason(reply: Reply) -> str:
    if reply.tool_call is not None:
        return "tool_calls"
    return "length" if reply.truncated else "stop"


def _tool_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _completion(chat: _ChatRequest, reply: Reply) -> dict[str, object]:
    message: dict[str, object] = {"role": "assistant", "content": reply.text}
    if reply.tool_call is not None:
        function = {"name": reply.tool_call.name, "arguments": reply.tool_call.arguments}
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": _tool_call_id(), "type": "function", "function": function}],
        }
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": chat.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": _finish_reason(reply)}],
        "usage": _usage(reply),
    }


def _stream_script(chat: _ChatRequest, reply: Reply) -> StreamScript:
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())

    def line(choices: list[dict[str, object]], usage: dict[str, int] | None = None) -> bytes:
        chunk: dict[str, object] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": chat.model,
            "choices": choices,
        }
        if chat.include_usage:
            chunk["usage"] = usage
        return f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n".encode()

    def choice(delta: dict[str, object], finish_reason: str | None = None) -> dict[str, object]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    if reply.tool_call is None:
        head = line([choice({"role": "assistant", "content": ""})])
        deltas = [line([choice({"content": text})]) for text in reply.deltas]
    else:
        call = {"index": 0, "id": _tool_call_id(), "type": "function"}
        function = {"name": reply.tool_call.name, "arguments": ""}
        head = line([choice({"role": "assistant", "content": None, "tool_calls": [{**call, "function": function}]})])
        deltas = [
            line([choice({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]})])
            for fragment in reply.deltas
        ]
    tail = (
        line([choice({}, _finish_reason(reply))]),
        *([line([], _usage(reply))] if chat.include_usage else []),
        b"data: [DONE]\n\n",
    )
    return StreamScript(head=(head,), deltas=tuple(deltas), tail=lambda: tail, malformed=_MALFORMED_LINE)


def openai_routes(
    faults: FaultStore, chunk_delay_s: float = DEFAULT_CHUNK_DELAY_S, api_key: str | None = None
) -> list[BaseRoute]:
    """The fake's routes, for mounting next to other fakes on one app; they take their faults from ``faults``
    and accept any bearer key, or only ``api_key`` when given."""

    async def chat_completions(request: Request) -> Response:
        if (refused := _refused_key(request, api_key)) is not None:
            return refused
        try:
            chat = _parse_chat_request(json.loads(await request.body()))
        except ValueError:  # not JSON, or not UTF-8
            return _error(400, "We could not parse the JSON body of your request.")
        except _InvalidRequestError as error:
            return _error(400, error.message, param=error.param, code=error.code)
        fault = faults.take("openai", "chat_stream" if chat.stream else "chat", chat.model, chat.max_tokens)
        if isinstance(fault, StatusFault):
            return _fault_error(fault)
        await delay_first_byte(fault)
        reply = compose_reply(chat.turns, chat.max_tokens, chat.tools)
        headers = {"x-request-id": _request_id()}
        if chat.stream:
            script = _stream_script(chat, reply)
            return stream_response(script, fault, chunk_delay_s, media_type="text/event-stream", headers=headers)
        return json_response(_completion(chat, reply), fault, headers=headers)

    async def embeddings(request: Request) -> Response:
        if (refused := _refused_key(request, api_key)) is not None:
            return refused
        try:
            parsed = _parse_embeddings_request(json.loads(await request.body()))
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        except _InvalidRequestError as error:
            return _error(400, error.message, param=error.param, code=error.code)
        fault = faults.take("openai", "embeddings", parsed.model, None)
        if isinstance(fault, StatusFault):
            return _fault_error(fault)
        await delay_first_byte(fault)
        return json_response(_embeddings(parsed), fault, headers={"x-request-id": _request_id()})

    async def models(request: Request) -> Response:
        if (refused := _refused_key(request, api_key)) is not None:
            return refused
        data = [{"id": model, "object": "model", "created": _MODELS_CREATED, "owned_by": "openai"} for model in MODELS]
        return JSONResponse({"object": "list", "data": data}, headers={"x-request-id": _request_id()})

    return [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
    ]


def create_openai_app(chunk_delay_s: float = DEFAULT_CHUNK_DELAY_S, api_key: str | None = None) -> Starlette:
    """A server app for the fake OpenAI API alone, with its own faults and the control API over them;
    streams pause ``chunk_delay_s`` between words; only ``api_key`` is accepted when given."""
    faults = FaultStore()
    return Starlette(routes=[*openai_routes(faults, chunk_delay_s, api_key), *fault_routes(faults)])
