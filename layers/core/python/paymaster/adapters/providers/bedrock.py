"""Amazon Bedrock through the Converse / ConverseStream APIs, over a client with boto3's
`bedrock-runtime` shapes and errors (the gateway's own: `adapters/bedrock_runtime.py`).

`system` and `developer` messages become Converse's `system` blocks; consecutive messages of one
role are merged because Converse requires user and assistant turns to alternate (`turns`).

Tools become `toolConfig` (`toolSpec` per function; `tool_choice` "auto" → `auto`, "required" →
`any`, a named function → `tool`). Converse has no "none": the tools are left out so that the
model cannot call one. A conversation that holds tool calls or results must be sent with its
tools (Converse requires `toolConfig` then), so "none" there — or no `tools` at all — is refused
with a 400 rather than letting the model call tools the caller forbade. Converse has no switch for
`parallel_tool_calls`; it is not passed on.

A stream numbers tool calls apart from text, as OpenAI does: the n-th `toolUse` block is tool
call n whatever its `contentBlockIndex`:

    contentBlockDelta  {"contentBlockIndex": 0, "delta": {"text": "Let me look."}}  → TextDelta
    contentBlockStart  {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}}
                                                                    → ToolCallDelta(0, "t1", "f", "")
    contentBlockDelta  {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"a":1}'}}}
                                                                    → ToolCallDelta(0, None, None, '{"a":1}')
    contentBlockStop   {"contentBlockIndex": 1}          (a call that got no input: "{}" for it here)
    messageStop        {"stopReason": "tool_use"}                  → Finished("tool_calls")
"""

import json
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.eventstream import ParserError
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from paymaster.adapters.providers.sending import before_sending
from paymaster.adapters.providers.turns import Blocks, StreamedToolCalls, turns
from paymaster.domain.chat import (
    ChatRequest,
    Completion,
    Finished,
    FinishReason,
    StreamEvent,
    TextDelta,
    ToolCall,
    Usage,
    UsageReported,
)
from paymaster.domain.errors import (
    InvalidRequestError,
    ProviderError,
    ProviderRejectedError,
    ProviderResponseError,
    ProviderThrottledError,
    ProviderTimeoutError,
)
from paymaster.ports import ProviderCall

# Error codes that mean "your request is wrong", as opposed to Bedrock failing.
_REJECTED = {"ValidationException", "ResourceNotFoundException"}
# Bedrock's own rate limits and quotas: another deployment (another region) may have room.
_THROTTLED = {"ThrottlingException", "ServiceQuotaExceededException"}
_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_BLOCKS = Blocks(
    text=lambda text: {"text": text},
    tool_use=lambda call_id, name, arguments: {"toolUse": {"toolUseId": call_id, "name": name, "input": arguments}},
    tool_result=lambda call_id, text: {"toolResult": {"toolUseId": call_id, "content": [{"text": text}]}},
)
_NO_PARAMETERS = {"type": "object", "properties": {}}


def to_wire(call: ProviderCall) -> dict[str, Any]:
    """Keyword arguments for `converse` / `converse_stream`."""
    conversation = turns(call.request, _BLOCKS, "Bedrock")
    inference: dict[str, Any] = {"maxTokens": call.max_output_tokens}
    if call.request.temperature is not None:
        inference["temperature"] = call.request.temperature
    if call.request.top_p is not None:
        inference["topP"] = call.request.top_p
    if call.request.stop_sequences:
        inference["stopSequences"] = call.request.stop_sequences
    wire: dict[str, Any] = {
        "modelId": call.deployment.model,
        "messages": conversation.messages,
        "inferenceConfig": inference,
    }
    if conversation.system:
        wire["system"] = [{"text": text} for text in conversation.system]
    tools = tool_config(call.request)
    if tools is not None:
        wire["toolConfig"] = tools
    return wire


def tool_config(request: ChatRequest) -> dict[str, Any] | None:
    """Converse's `toolConfig`, or None when the model must see no tools (see the module docstring)."""
    holds_tool_turns = any(message.tool_calls or message.role == "tool" for message in request.messages)
    if not request.tools or request.tool_choice == "none":
        if holds_tool_turns and not request.tools:
            raise InvalidRequestError(
                "Bedrock needs `tools` listed for a conversation that holds tool calls or tool results.",
                param="tools",
            )
        if holds_tool_turns:
            raise InvalidRequestError(
                'Bedrock cannot honour `tool_choice` "none" in a conversation that holds tool calls: Converse '
                'needs the tools listed then and cannot forbid calling them. Send "auto" instead.',
                param="tool_choice",
            )
        return None
    config: dict[str, Any] = {"tools": [{"toolSpec": _tool_spec(tool["function"])} for tool in request.tools]}
    if request.tool_choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif request.tool_choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(request.tool_choice, dict):
        config["toolChoice"] = {"tool": {"name": request.tool_choice["function"]["name"]}}
    return config


def _tool_spec(function: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        spec["description"] = function["description"]
    spec["inputSchema"] = {"json": function.get("parameters") or _NO_PARAMETERS}
    return spec


def usage_from_wire(raw: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=int(raw.get("inputTokens", 0)),
        output_tokens=int(raw.get("outputTokens", 0)),
        cache_read_tokens=int(raw.get("cacheReadInputTokens", 0)),
        cache_write_tokens=int(raw.get("cacheWriteInputTokens", 0)),
    )


def from_wire(response: dict[str, Any]) -> Completion:
    try:
        content = response["output"]["message"]["content"]
        usage = usage_from_wire(response["usage"])
        tool_calls = tuple(
            ToolCall(block["toolUse"]["toolUseId"], block["toolUse"]["name"], json.dumps(block["toolUse"]["input"]))
            for block in content
            if "toolUse" in block
        )
    except (KeyError, TypeError) as error:
        raise ProviderResponseError(f"Bedrock's answer is not a Converse response ({error!r})") from None
    return Completion(
        text="".join(block.get("text", "") for block in content),
        finish_reason=_FINISH.get(response.get("stopReason", "end_turn"), "stop"),
        usage=usage,
        provider_request_id=response.get("ResponseMetadata", {}).get("RequestId"),
        tool_calls=tool_calls,
    )


def events_from_wire(events: Iterable[dict[str, Any]]) -> Iterator[StreamEvent]:
    """Paymaster's stream events from ConverseStream's (structural events yield nothing)."""
    tool_calls = StreamedToolCalls()
    for event in events:
        piece: StreamEvent | None = None
        if "contentBlockStart" in event:
            start = event["contentBlockStart"]
            tool = (start.get("start") or {}).get("toolUse")
            if tool is not None:
                piece = tool_calls.start(start.get("contentBlockIndex"), tool.get("toolUseId"), tool.get("name"))
        elif "contentBlockDelta" in event:
            block = event["contentBlockDelta"]
            delta = block.get("delta") or {}
            if delta.get("text"):
                piece = TextDelta(delta["text"])
            elif "toolUse" in delta:
                piece = tool_calls.input(block.get("contentBlockIndex"), str(delta["toolUse"].get("input") or ""))
        elif "contentBlockStop" in event:
            piece = tool_calls.stop(event["contentBlockStop"].get("contentBlockIndex"))
        elif "messageStop" in event:
            piece = Finished(_FINISH.get(event["messageStop"].get("stopReason", "end_turn"), "stop"))
        elif "metadata" in event:
            piece = UsageReported(usage_from_wire(event["metadata"].get("usage", {})))
        if piece is not None:
            yield piece


class BedrockProvider:
    """`client` speaks `bedrock-runtime` as a boto3 client does, in the deployment's region."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def complete(self, call: ProviderCall) -> Completion:
        with before_sending(call.deployment):
            wire = to_wire(call)
        # Converse answers once the whole answer is generated: a read timeout may leave it billed.
        with _provider_errors(read_timeout_accepted=True):
            return from_wire(self._client.converse(**wire))

    def stream(self, call: ProviderCall) -> Generator[StreamEvent, None, None]:
        with before_sending(call.deployment):
            wire = to_wire(call)
        with _provider_errors():
            response = self._client.converse_stream(**wire)
        stream = response["stream"]
        try:
            # Bedrock accepted the call: an error event in the stream (throttlingException,
            # modelStreamErrorException) is metered, never retried elsewhere.
            with _provider_errors(accepted=True):
                yield from events_from_wire(stream)
        finally:
            stream.close()


@contextmanager
def _provider_errors(*, accepted: bool = False, read_timeout_accepted: bool = False) -> Iterator[None]:
    """Maps the client's failures (botocore's exceptions) to ProviderError / ProviderTimeoutError,
    keeping the request id.

    `accepted`: Bedrock had accepted the call (inside a stream); `read_timeout_accepted`: no
    answer in time after the request was sent may still be a generated, billed answer."""
    try:
        yield
    except ConnectTimeoutError as error:
        raise ProviderTimeoutError(f"Bedrock could not be reached in time ({type(error).__name__})") from None
    except ReadTimeoutError as error:
        if accepted:
            raise ProviderTimeoutError("Bedrock stopped sending mid-stream", accepted=True) from None
        raise ProviderTimeoutError(
            f"Bedrock did not answer in time ({type(error).__name__})", accepted=read_timeout_accepted
        ) from None
    except ClientError as error:
        if accepted:
            details = error.response.get("Error", {})
            raise ProviderResponseError(
                f"Bedrock's stream failed: {details.get('Code', 'an error')}: {details.get('Message', '')}",
                provider_request_id=error.response.get("ResponseMetadata", {}).get("RequestId"),
            ) from None
        meta = error.response.get("ResponseMetadata", {})
        details = error.response.get("Error", {})
        message = f"Bedrock answered {details.get('Code', 'an error')}: {details.get('Message', '')}"
        if details.get("Code") in _THROTTLED:
            raise ProviderThrottledError(
                message, status=meta.get("HTTPStatusCode"), provider_request_id=meta.get("RequestId")
            ) from None
        kind = ProviderRejectedError if details.get("Code") in _REJECTED else ProviderError
        raise kind(message, status=meta.get("HTTPStatusCode"), provider_request_id=meta.get("RequestId")) from None
    except (ResponseStreamingError, ParserError) as error:
        # An answer that broke off after Bedrock's 200, or a frame that fails its checksum: the
        # call was accepted; what arrived is metered.
        broke = "stream broke" if accepted else "answer broke off"
        raise ProviderResponseError(f"Bedrock's {broke} ({type(error).__name__})") from None
    except BotoCoreError as error:
        raise ProviderError(f"Bedrock could not be reached ({type(error).__name__})") from None
