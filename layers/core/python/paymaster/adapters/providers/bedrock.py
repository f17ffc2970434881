"""Amazon Bedrock through the Converse / ConverseStream APIs (boto3 `bedrock-runtime`).

`system` and `developer` messages become Converse's `system` blocks; consecutive messages of one
role are merged because Converse requires user and assistant turns to alternate (`turns`).
"""

from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

from paymaster.adapters.providers.turns import turns
from paymaster.domain.chat import Completion, Finished, FinishReason, StreamEvent, TextDelta, Usage, UsageReported
from paymaster.domain.errors import ProviderError, ProviderRejectedError, ProviderTimeoutError
from paymaster.ports import ProviderCall

# Error codes that mean "your request is wrong", as opposed to Bedrock failing.
_REJECTED = {"ValidationException", "ResourceNotFoundException"}
_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}


def to_wire(call: ProviderCall) -> dict[str, Any]:
    """Keyword arguments for `converse` / `converse_stream`."""
    conversation = turns(call.request, lambda text: {"text": text}, "Bedrock")
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
    return wire


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
    except (KeyError, TypeError) as error:
        raise ProviderError(f"Bedrock's answer is not a Converse response ({error!r})") from None
    return Completion(
        text="".join(block.get("text", "") for block in content),
        finish_reason=_FINISH.get(response.get("stopReason", "end_turn"), "stop"),
        usage=usage,
        provider_request_id=response.get("ResponseMetadata", {}).get("RequestId"),
    )


def event_from_wire(event: dict[str, Any]) -> StreamEvent | None:
    """One ConverseStream event as a paymaster stream event (None for structural events)."""
    if "contentBlockDelta" in event:
        text = event["contentBlockDelta"].get("delta", {}).get("text")
        return TextDelta(text) if text else None
    if "messageStop" in event:
        return Finished(_FINISH.get(event["messageStop"].get("stopReason", "end_turn"), "stop"))
    if "metadata" in event:
        return UsageReported(usage_from_wire(event["metadata"].get("usage", {})))
    return None


class BedrockProvider:
    """`client` is a boto3 `bedrock-runtime` client for the deployment's region."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def complete(self, call: ProviderCall) -> Completion:
        with _provider_errors():
            return from_wire(self._client.converse(**to_wire(call)))

    def stream(self, call: ProviderCall) -> Generator[StreamEvent, None, None]:
        with _provider_errors():
            response = self._client.converse_stream(**to_wire(call))
        stream = response["stream"]
        try:
            with _provider_errors():
                for raw in stream:
                    event = event_from_wire(raw)
                    if event is not None:
                        yield event
        finally:
            stream.close()


@contextmanager
def _provider_errors() -> Iterator[None]:
    """Maps botocore's failures to ProviderError / ProviderTimeoutError, keeping the request id."""
    try:
        yield
    except (ReadTimeoutError, ConnectTimeoutError) as error:
        raise ProviderTimeoutError(f"Bedrock did not answer in time ({type(error).__name__})") from None
    except ClientError as error:
        meta = error.response.get("ResponseMetadata", {})
        details = error.response.get("Error", {})
        kind = ProviderRejectedError if details.get("Code") in _REJECTED else ProviderError
        raise kind(
            f"Bedrock answered {details.get('Code', 'an error')}: {details.get('Message', '')}",
            status=meta.get("HTTPStatusCode"),
            provider_request_id=meta.get("RequestId"),
        ) from None
    except BotoCoreError as error:
        raise ProviderError(f"Bedrock could not be reached ({type(error).__name__})") from None
