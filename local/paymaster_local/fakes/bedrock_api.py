"""Fake Bedrock runtime: ``POST /model/{modelId}/converse``, ``/converse-stream`` and ``/invoke``.

JSON and event-stream frames as Bedrock sends them, parsed by the real boto3 client; the reply, the
tool calls, the vectors and their usage follow `script`, the token limit is
``inferenceConfig.maxTokens``. Every answer carries an ``x-amzn-RequestId``; errors are
``{"message": ...}`` with the exception's name in ``x-amzn-ErrorType``, which boto3 raises as
``client.exceptions.<name>``. Scripted `faults` apply to all three, keyed by the path's model id.
A ConverseStream response is these `eventstream` frames:

    messageStart       {"role": "assistant"}
    contentBlockDelta  {"contentBlockIndex": 0, "delta": {"text": "Echo:"}}   one per word,
                                                                             chunk_delay_s apart
    contentBlockStop   {"contentBlockIndex": 0}
    messageStop        {"stopReason": "end_turn"}                            "max_tokens" when cut
    metadata           {"usage": {"inputTokens": 12, ...}, "metrics": {"latencyMs": 81}}

Tools are ``toolConfig: {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json":
{...}}}}]}``. A tool call answers ``output.message.content: [{"toolUse": {"toolUseId": "tooluse_…",
"name": "get_weather", "input": {"city": "Paris"}}}]`` with stop reason ``tool_use``; streamed,
``contentBlockStart {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": ..., "name": ...}}}``
comes after messageStart and the deltas are ``{"toolUse": {"input": "{\\"city\\":"}}``, one per word
of the arguments. Messages may hold ``toolUse`` blocks (assistant) and ``toolResult`` blocks (user,
content ``[{"text": ...}]`` or ``[{"json": ...}]``), checked as Bedrock checks them: they need a
toolConfig, and the user message after an assistant message with toolUse blocks answers exactly
those ids.

InvokeModel serves embedding models only, told apart by the model id (an inference profile's
region prefix or an ARN around it is allowed):

    amazon.titan-embed-text-v1   {"inputText": "hi there"}
    amazon.titan-embed-text-*    {"inputText": ..., "dimensions"?: 256 | 512 | 1024, "normalize"?: bool}
                                 → {"embedding": [...], "inputTextTokenCount": 2}
    cohere.embed-*               {"texts": [...] (1–96), "input_type": "search_document" | "search_query" |
                                  "classification" | "clustering", "truncate"?: "NONE" | "START" | "END",
                                  "embedding_types"?: ["float"], "output_dimension"?: (embed-v4 only)}
                                 → {"id": ..., "embeddings": [[...]], "texts": [...],
                                    "response_type": "embeddings_floats"}; with embedding_types
                                    "embeddings": {"float": [[...]]}, "response_type": "embeddings_by_type"

Vectors have 8 numbers unless ``dimensions`` / ``output_dimension`` says otherwise. The answer's
``x-amzn-bedrock-input-token-count`` header is the words of the texts, as Bedrock meters them (the
Cohere body carries no count). A body the model would not take — a missing or extraneous key, an
empty text, dimensions it does not offer — is a ValidationException in Bedrock's wording.

boto3 percent-encodes the model id (``…-v1%3A0``, ARNs with ``%2F``); the ASGI server decodes the
path, so the routes take the model id with ``/`` in it. Any model id is served by Converse. The
request must carry a SigV4 ``Authorization`` header; the signature is not verified.
"""

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from paymaster_local.fakes.eventstream import corrupt_message_crc, encode_event
from paymaster_local.fakes.faults import (
    FaultStore,
    Operation,
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
    Exchange,
    Reply,
    Role,
    ToolCall,
    Turn,
    compose_reply,
    count_tokens,
    embed,
    first_tool_id_mismatch,
)

EmbeddingFamily = Literal["titan-v1", "titan", "cohere", "cohere-v4"]

_FAULT_ERRORS: Final[dict[int, tuple[str, str]]] = {  # status: x-amzn-ErrorType, message
    400: ("ValidationException", "The request was refused."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: ("ResourceNotFoundException", "The requested resource could not be found."),
    408: ("ModelTimeoutException", "The model took too long to respond."),
    424: ("ModelErrorException", "The model returned an error."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The server encountered an internal error."),
    503: ("ServiceUnavailableException", "The service is temporarily unavailable. Please try again later."),
}
_EMBEDDING_FAMILIES: Final[tuple[tuple[str, EmbeddingFamily], ...]] = (
    ("amazon.titan-embed-text-v1", "titan-v1"),
    ("amazon.titan-embed-text", "titan"),
    ("cohere.embed-v4", "cohere-v4"),
    ("cohere.embed-", "cohere"),
)
_TITAN_DIMENSIONS: Final = (256, 512, 1024)
_COHERE_DIMENSIONS: Final = (256, 512, 1024, 1536)
_COHERE_INPUT_TYPES: Final = ("search_document", "search_query", "classification", "clustering")
_COHERE_TRUNCATE: Final = ("NONE", "START", "END")
_COHERE_MAX_TEXTS: Final = 96
_INPUT_COUNT_HEADER: Final = "x-amzn-bedrock-input-token-count"


class _ValidationError(Exception):
    """A request Bedrock would refuse with 400 ``ValidationException``."""


@dataclass(frozen=True)
class _ConverseRequest:
    turns: tuple[Turn, ...]
    max_tokens: int | None
    tools: frozenset[str]


def _is_signed(request: Request) -> bool:
    authorization = request.headers.get("authorization", "")
    return authorization.startswith("AWS4-HMAC-SHA256 ")


def _request_id_header() -> dict[str, str]:
    return {"x-amzn-RequestId": str(uuid.uuid4())}


def _aws_error(status_code: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error boto3 raises as ``client.exceptions.<error_type>`` (read from x-amzn-ErrorType)."""
    return JSONResponse(
        {"message": message},
        status_code=status_code,
        headers={"x-amzn-ErrorType": error_type, **_request_id_header(), **(headers or {})},
    )


def _missing_signature() -> JSONResponse:
    return _aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")


def _fault_error(fault: StatusFault) -> JSONResponse:
    """The error Bedrock sends for the fault's status: 429 ThrottlingException, 503 ServiceUnavailableException."""
    default = _FAULT_ERRORS[500] if fault.status >= 500 else _FAULT_ERRORS[400]
    error_type, message = _FAULT_ERRORS.get(fault.status, default)
    return _aws_error(fault.status, error_type, message, fault.retry_headers())


def _result_text(item: object) -> str:
    """A toolResult content item: ``{"text": ...}`` as is, ``{"json": ...}`` as JSON text."""
    if not isinstance(item, dict):
        return ""
    if isinstance(item.get("text"), str):
        return str(item["text"])
    return json.dumps(item["json"]) if "json" in item else ""


def _block_text(block: dict[str, Any]) -> str:
    """A text block's text, a toolUse block as its call, a toolResult block's text; else nothing."""
    if isinstance(block.get("text"), str):
        return str(block["text"])
    if isinstance(use := block.get("toolUse"), dict):
        return ToolCall.of(str(use.get("name")), use.get("input")).text
    if isinstance(result := block.get("toolResult"), dict) and isinstance(result.get("content"), list):
        return " ".join(text for text in map(_result_text, result["content"]) if text)
    return ""


def _blocks(content: object) -> list[dict[str, Any]]:
    return [block for block in content if isinstance(block, dict)] if isinstance(content, list) else []


def _text_of(content: object) -> str:
    """The text of a content or system list's blocks (see `_block_text`), joined by spaces."""
    return " ".join(text for text in map(_block_text, _blocks(content)) if text)


def _parse_message(message: object) -> Exchange:
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
        raise _ValidationError("Each message needs a role of user or assistant.")
    blocks = _blocks(message.get("content"))
    if message["role"] == "assistant":
        uses = [block["toolUse"] for block in blocks if isinstance(block.get("toolUse"), dict)]
        ids = tuple(str(use.get("toolUseId")) for use in uses)
        return Exchange(Turn(role="assistant", text=_text_of(blocks)), ids)
    results = [block["toolResult"] for block in blocks if isinstance(block.get("toolResult"), dict)]
    role: Role = "tool" if results else "user"
    return Exchange(Turn(role=role, text=_text_of(blocks)), tuple(str(result.get("toolUseId")) for result in results))


def _check_tool_ids(exchanges: Sequence[Exchange], has_tool_config: bool) -> None:
    """Bedrock's rules for toolUse and toolResult blocks, in its words."""
    if not has_tool_config and any(exchange.tool_ids for exchange in exchanges):
        raise _ValidationError("The toolConfig field must be defined when using toolUse and toolResult content blocks.")
    mismatch = first_tool_id_mismatch(exchanges)
    if mismatch is not None and mismatch.unexpected:
        raise _ValidationError(
            f"The toolResult blocks at messages.{mismatch.index}.content answer toolUse ids that the previous turn "
            f"did not use: {', '.join(mismatch.unexpected)}."
        )
    if mismatch is not None:
        raise _ValidationError(
            f"Expected toolResult blocks at messages.{mismatch.index}.content for the following Ids: "
            f"{', '.join(mismatch.unanswered)}"
        )


def _parse_tools(body: dict[str, object]) -> frozenset[str]:
    config = body.get("toolConfig")
    if config is None:
        return frozenset()
    tools = config.get("tools") if isinstance(config, dict) else None
    if not isinstance(tools, list) or not tools:
        raise _ValidationError("toolConfig.tools must hold at least one tool.")
    names = set()
    for tool in tools:
        spec = tool.get("toolSpec") if isinstance(tool, dict) else None
        name = spec.get("name") if isinstance(spec, dict) else None
        if not isinstance(name, str) or not name:
            raise _ValidationError("Each tool of toolConfig.tools needs a toolSpec with a name.")
        names.add(name)
    return frozenset(names)


def _parse_turns(body: dict[str, object], has_tool_config: bool) -> tuple[Turn, ...]:
    """The system prompt (if any) as one turn, then each message."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _ValidationError("The messages list must contain at least one message.")
    conversation = [_parse_message(message) for message in messages]
    if conversation[0].turn.role == "assistant":
        raise _ValidationError("A conversation must start with a user message.")
    _check_tool_ids(conversation, has_tool_config)
    system = [Turn(role="system", text=_text_of(body["system"]))] if body.get("system") else []
    return (*system, *(exchange.turn for exchange in conversation))


def _parse_max_tokens(body: dict[str, object]) -> int | None:
    config = body.get("inferenceConfig")
    value = config.get("maxTokens") if isinstance(config, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _ValidationError("inferenceConfig.maxTokens must be an integer of at least 1.")
    return value


def _json_object(raw: bytes) -> dict[str, object]:
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise _ValidationError("The request body is not valid JSON.") from error
    if not isinstance(body, dict):
        raise _ValidationError("The request body must be a JSON object.")
    return body


def _parse_converse_request(raw: bytes) -> _ConverseRequest:
    body = _json_object(raw)
    tools = _parse_tools(body)
    return _ConverseRequest(
        turns=_parse_turns(body, has_tool_config=bool(tools)), max_tokens=_parse_max_tokens(body), tools=tools
    )


def _embedding_family(model_id: str) -> EmbeddingFamily | None:
    """The embedding model family of a model id, an inference profile id or an ARN; None if none.

    Example: ``us.cohere.embed-v4:0`` → cohere-v4; ``arn:…:foundation-model/amazon.titan-embed-text-v2:0``
    → titan; ``anthropic.claude-3-haiku-20240307-v1:0`` → None.
    """
    name = model_id.rsplit("/", 1)[-1]
    for candidate in (name, name.partition(".")[2]):
        for prefix, family in _EMBEDDING_FAMILIES:
            if candidate.startswith(prefix):
                return family
    return None


def _malformed(problem: str) -> _ValidationError:
    return _ValidationError(f"Malformed input request: {problem}, please reformat your input and try again.")


def _check_keys(body: dict[str, object], required: Sequence[str], allowed: Sequence[str]) -> None:
    for key in required:
        if key not in body:
            raise _malformed(f"required key [{key}] not found")
    for key in body:
        if key not in allowed:
            raise _malformed(f"extraneous key [{key}] is not permitted")


def _one_of(body: dict[str, object], key: str, values: Sequence[str]) -> None:
    if key in body and body[key] not in values:
        raise _malformed(f"{key}: {body[key]!r} is not one of {', '.join(values)}")


def _dimensions(body: dict[str, object], key: str, offered: Sequence[int]) -> int:
    """The vector size the body asks for under ``key``, one of ``offered``; 8 when it does not say."""
    if key not in body:
        return DEFAULT_EMBEDDING_DIMENSIONS
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int) or value not in offered:
        raise _malformed(f"{key}: {value!r} is not one of {', '.join(map(str, offered))}")
    return value


def _titan_embedding(body: dict[str, object], family: EmbeddingFamily) -> tuple[dict[str, object], int]:
    allowed = ("inputText",) if family == "titan-v1" else ("inputText", "dimensions", "normalize")
    _check_keys(body, required=("inputText",), allowed=allowed)
    text = body["inputText"]
    if not isinstance(text, str):
        raise _malformed("inputText: expected type: String")
    if not text:
        raise _malformed("expected minLength: 1, actual: 0")
    dimensions = _dimensions(body, "dimensions", _TITAN_DIMENSIONS)
    normalize = body.get("normalize", True)
    if not isinstance(normalize, bool):
        raise _malformed("normalize: expected type: Boolean")
    vector = embed(text, dimensions, normalize=normalize)
    tokens = count_tokens(text)
    return {"embedding": list(vector), "inputTextTokenCount": tokens}, tokens


def _cohere_embedding(body: dict[str, object], family: EmbeddingFamily) -> tuple[dict[str, object], int]:
    allowed = ["texts", "input_type", "truncate", "embedding_types"]
    if family == "cohere-v4":
        allowed.append("output_dimension")
    _check_keys(body, required=("texts", "input_type"), allowed=allowed)
    texts = body["texts"]
    if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
        raise _malformed("texts: expected type: JSONArray of String")
    if not 1 <= len(texts) <= _COHERE_MAX_TEXTS:
        raise _malformed(f"texts: expected between 1 and {_COHERE_MAX_TEXTS} items, actual: {len(texts)}")
    _one_of(body, "input_type", _COHERE_INPUT_TYPES)
    _one_of(body, "truncate", _COHERE_TRUNCATE)
    dimensions = _dimensions(body, "output_dimension", _COHERE_DIMENSIONS)
    by_type = "embedding_types" in body
    if by_type and body["embedding_types"] != ["float"]:
        raise _malformed('embedding_types: the fake serves only ["float"]')
    vectors = [list(embed(text, dimensions)) for text in texts]
    answer: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "embeddings": {"float": vectors} if by_type else vectors,
        "texts": texts,
        "response_type": "embeddings_by_type" if by_type else "embeddings_floats",
    }
    return answer, sum(map(count_tokens, texts))


def _usage(reply: Reply) -> dict[str, int]:
    return {
        "inputTokens": reply.prompt_tokens,
        "outputTokens": reply.completion_tokens,
        "totalTokens": reply.prompt_tokens + reply.completion_tokens,
    }


def _stop_reason(reply: Reply) -> str:
    if reply.tool_call is not None:
        return "tool_use"
    return "max_tokens" if reply.truncated else "end_turn"


def _latency_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _tool_use_id() -> str:
    return f"tooluse_{uuid.uuid4().hex[:22]}"


def _content(reply: Reply) -> list[dict[str, Any]]:
    if reply.tool_call is None:
        return [{"text": reply.text}]
    call = reply.tool_call
    return [{"toolUse": {"toolUseId": _tool_use_id(), "name": call.name, "input": json.loads(call.arguments)}}]


def _stream_script(reply: Reply, started: float) -> StreamScript:
    head = [encode_event("messageStart", {"role": "assistant"})]
    deltas: list[dict[str, object]]
    if reply.tool_call is None:
        deltas = [{"text": text} for text in reply.deltas]
    else:
        start = {"toolUse": {"toolUseId": _tool_use_id(), "name": reply.tool_call.name}}
        head.append(encode_event("contentBlockStart", {"contentBlockIndex": 0, "start": start}))
        deltas = [{"toolUse": {"input": fragment}} for fragment in reply.deltas]

    def tail() -> tuple[bytes, ...]:
        return (
            encode_event("contentBlockStop", {"contentBlockIndex": 0}),
            encode_event("messageStop", {"stopReason": _stop_reason(reply)}),
            encode_event("metadata", {"usage": _usage(reply), "metrics": {"latencyMs": _latency_ms(started)}}),
        )

    return StreamScript(
        head=tuple(head),
        deltas=tuple(encode_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": delta}) for delta in deltas),
        tail=tail,
        malformed=corrupt_message_crc(
            encode_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": ""}})
        ),
    )


def bedrock_routes(faults: FaultStore, chunk_delay_s: float = DEFAULT_CHUNK_DELAY_S) -> list[BaseRoute]:
    """The fake's routes, for mounting next to other fakes on one app; they take their faults from ``faults``."""

    async def answer(request: Request, *, stream: bool) -> Response:
        """Converse (JSON) or ConverseStream (event stream): the same checks, fault and reply."""
        started = time.monotonic()
        if not _is_signed(request):
            return _missing_signature()
        try:
            parsed = _parse_converse_request(await request.body())
        except _ValidationError as error:
            return _aws_error(400, "ValidationException", str(error))
        operation: Operation = "converse_stream" if stream else "converse"
        fault = faults.take("bedrock", operation, request.path_params["model_id"], parsed.max_tokens)
        if isinstance(fault, StatusFault):
            return _fault_error(fault)
        await delay_first_byte(fault)
        reply = compose_reply(parsed.turns, parsed.max_tokens, parsed.tools)
        if stream:
            return stream_response(
                _stream_script(reply, started),
                fault,
                chunk_delay_s,
                media_type="application/vnd.amazon.eventstream",
                headers=_request_id_header(),
            )
        body = {
            "output": {"message": {"role": "assistant", "content": _content(reply)}},
            "stopReason": _stop_reason(reply),
            "usage": _usage(reply),
            "metrics": {"latencyMs": _latency_ms(started)},
        }
        return json_response(body, fault, headers=_request_id_header())

    async def converse(request: Request) -> Response:
        return await answer(request, stream=False)

    async def converse_stream(request: Request) -> Response:
        return await answer(request, stream=True)

    async def invoke(request: Request) -> Response:
        if not _is_signed(request):
            return _missing_signature()
        model_id = request.path_params["model_id"]
        family = _embedding_family(model_id)
        if family is None:
            return _aws_error(
                400,
                "ValidationException",
                "The fake Bedrock serves InvokeModel for embedding models only "
                "(amazon.titan-embed-text-*, cohere.embed-*).",
            )
        try:
            body = _json_object(await request.body())
            embed_body = _cohere_embedding if family.startswith("cohere") else _titan_embedding
            answer, tokens = embed_body(body, family)
        except _ValidationError as error:
            return _aws_error(400, "ValidationException", str(error))
        fault = faults.take("bedrock", "invoke", model_id, None)
        if isinstance(fault, StatusFault):
            return _fault_error(fault)
        await delay_first_byte(fault)
        return json_response(answer, fault, headers={**_request_id_header(), _INPUT_COUNT_HEADER: str(tokens)})

    return [
        Route("/model/{model_id:path}/converse", converse, methods=["POST"]),
        Route("/model/{model_id:path}/converse-stream", converse_stream, methods=["POST"]),
        Route("/model/{model_id:path}/invoke", invoke, methods=["POST"]),
    ]


def create_bedrock_app(chunk_delay_s: float = DEFAULT_CHUNK_DELAY_S) -> Starlette:
    """A server app for the fake Bedrock runtime alone, with its own faults and the control API over
    them; streams pause ``chunk_delay_s`` between words."""
    faults = FaultStore()
    return Starlette(routes=[*bedrock_routes(faults, chunk_delay_s), *fault_routes(faults)])
