"""The provider payloads recorded in `events/providers`, served the way each adapter receives them.

HTTP providers get the recorded bytes through `httpx.MockTransport`, `READ_SIZE` bytes per read as
a network delivers them, so that SSE lines, JSON and the two bytes of "°" arrive split and the
adapter's own line parsing puts them back together. Bedrock answers are recorded as the HTTP
exchange (status, headers, JSON body) and go through botocore's own response parser, which gives
the dict the boto3 client returns; ConverseStream events are recorded decoded, one per line, as
boto3's EventStream yields them (botocore's Stubber cannot serve event streams).
"""

import io
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from botocore.awsrequest import HeadersDict
from botocore.exceptions import ClientError
from botocore.model import ServiceModel
from botocore.parsers import create_parser
from botocore.response import StreamingBody
from botocore.session import get_session
from botocore.validate import ParamValidator

from paymaster.domain.chat import ChatRequest
from paymaster.domain.embeddings import EmbeddingRequest
from paymaster.domain.policy import Deployment
from paymaster.ports import EmbeddingCall, ProviderCall

REPO = Path(__file__).resolve().parents[2]
RECORDINGS = REPO / "events" / "providers"
READ_SIZE = 7


def recorded_json(name: str) -> Any:
    return json.loads((RECORDINGS / name).read_text(encoding="utf-8"))


def recorded_jsonl(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (RECORDINGS / name).read_text(encoding="utf-8").splitlines() if line]


def chat_call(name: str, provider: str) -> ProviderCall:
    """The call of a recorded request file: its caller body, deployment model and output limit."""
    recorded = recorded_json(name)
    return ProviderCall(
        request=ChatRequest.model_validate(recorded["caller_body"]),
        deployment=Deployment(provider=provider, model=recorded["deployment_model"]),
        max_output_tokens=recorded["max_output_tokens"],
    )


def embedding_call(name: str, provider: str) -> EmbeddingCall:
    recorded = recorded_json(name)
    return EmbeddingCall(
        request=EmbeddingRequest.model_validate(recorded["caller_body"]),
        deployment=Deployment(provider=provider, model=recorded["deployment_model"]),
    )


class _InPieces(httpx.SyncByteStream):
    def __init__(self, content: bytes) -> None:
        self._content = content

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self._content), READ_SIZE):
            yield self._content[start : start + READ_SIZE]


class RecordedServer:
    """Answers every request with one recorded answer, and keeps the requests it was sent."""

    def __init__(self, status: int, headers: dict[str, str], content: bytes) -> None:
        self._status, self._headers, self._content = status, headers, content
        self.sent: list[httpx.Request] = []

    @classmethod
    def json_body(cls, name: str, headers: dict[str, str]) -> "RecordedServer":
        """A 200 whose body is the recorded JSON file `name`."""
        return cls(200, {"content-type": "application/json"} | headers, (RECORDINGS / name).read_bytes())

    @classmethod
    def exchange(cls, name: str) -> "RecordedServer":
        """The recorded HTTP exchange `name`: {"status", "headers", "body"}."""
        recorded = recorded_json(name)
        content = json.dumps(recorded["body"], separators=(",", ":"), ensure_ascii=False).encode()
        headers = {key: value for key, value in recorded["headers"].items() if key != "content-length"}
        return cls(recorded["status"], headers, content)

    @classmethod
    def event_stream(cls, name: str, headers: dict[str, str]) -> "RecordedServer":
        """A 200 streaming the recorded server-sent events file `name` byte for byte."""
        content = (RECORDINGS / name).read_bytes()
        return cls(200, {"content-type": "text/event-stream; charset=utf-8"} | headers, content)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._answer)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.sent.append(request)
        return httpx.Response(self._status, headers=self._headers, stream=_InPieces(self._content))

    @property
    def sent_body(self) -> Any:
        (request,) = self.sent
        return json.loads(request.content)


@cache
def bedrock_model() -> ServiceModel:
    """The `bedrock-runtime` service model of the installed botocore, read from its data files."""
    return get_session().get_service_model("bedrock-runtime")


def botocore_report(value: dict[str, Any], shape: Any) -> str:
    """How `value` departs from a shape of botocore's model (unknown or missing members, wrong types); "" if it fits."""
    report: str = ParamValidator().validate(value, shape).generate_report()
    return report


def boto3_answer(operation: str, name: str) -> dict[str, Any]:
    """The recorded HTTP exchange `name` as boto3's client returns it from `operation`.

    Raises ClientError, as the client does, when the recorded status is an error.
    """
    recorded = recorded_json(name)
    model = bedrock_model()
    operation_model = model.operation_model(operation)
    content = json.dumps(recorded["body"], separators=(",", ":"), ensure_ascii=False).encode()
    body: object = StreamingBody(io.BytesIO(content), len(content)) if operation_model.has_streaming_output else content
    response = {"status_code": recorded["status"], "headers": HeadersDict(recorded["headers"]), "body": body}
    parsed: dict[str, Any] = create_parser(model.metadata["protocol"]).parse(response, operation_model.output_shape)
    parsed["ResponseMetadata"]["RetryAttempts"] = 0
    if recorded["status"] >= 300:
        raise ClientError(parsed, operation)
    return parsed


def boto3_error(operation: str, name: str) -> Exception:
    """The ClientError boto3's client raises from `operation` for the recorded error exchange `name`."""
    try:
        boto3_answer(operation, name)
    except ClientError as error:
        raised: Exception = error
        return raised
    raise AssertionError(f"{name} records no error")


class RecordedEventStream:
    """What boto3's `converse_stream(...)["stream"]` yields: decoded events, then closed."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self._events = events
        self.closed = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._events)

    def close(self) -> None:
        self.closed = True


class StubBedrockRuntime:
    """A `bedrock-runtime` client answering each operation with a recorded answer (or raising the
    recorded error); it keeps the keyword arguments of every call."""

    def __init__(
        self,
        *,
        answer: dict[str, Any] | None = None,
        events: list[dict[str, Any]] | None = None,
        error: Exception | None = None,
    ) -> None:
        self._answer, self._error = answer, error
        self.stream = RecordedEventStream(events or [])
        self.sent: list[dict[str, Any]] = []

    def _call(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        self.sent.append(kwargs)
        if self._error is not None:
            raise self._error
        assert self._answer is not None
        return self._answer

    def converse(self, **kwargs: Any) -> dict[str, Any]:
        return self._call(kwargs)

    def invoke_model(self, **kwargs: Any) -> dict[str, Any]:
        return self._call(kwargs)

    def converse_stream(self, **kwargs: Any) -> dict[str, Any]:
        self.sent.append(kwargs)
        if self._error is not None:
            raise self._error
        metadata = {"RequestId": "5d1e3c7a-9b2f-4a68-8e01-c4f7b2d9a356", "HTTPStatusCode": 200, "RetryAttempts": 0}
        return {"ResponseMetadata": metadata, "stream": self.stream}
