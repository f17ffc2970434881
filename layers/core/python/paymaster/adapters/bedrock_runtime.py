"""Amazon Bedrock's runtime API — Converse, ConverseStream, InvokeModel — over an httpx connection
pool, sent and answered as a boto3 `bedrock-runtime` client sends and answers them.

Why not botocore's client: building one was most of a Bedrock deployment's first call in a
cold start (botocore's session, config, client and endpoint modules and urllib3 compiling from
source, 0.2–0.3 s; the client itself 0.1 s, half of it botocore's loader listing its service
directories: docs/BENCHMARKS.md §4). Three operations of a stable REST API need none of that.

What is sent (restJson1, as botocore serializes it; tests compare each request with botocore's):

    converse(modelId=m, **arguments)        POST /model/{m}/converse         the other arguments as JSON
    converse_stream(modelId=m, **arguments) POST /model/{m}/converse-stream  the same
    invoke_model(modelId=m, body=b, contentType=c, accept=a)
                                            POST /model/{m}/invoke           b as given; Content-Type c, Accept a

The model id is one path segment, percent-encoded as botocore encodes a URI label (all but
letters, digits and `-._~`): `arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.amazon.
nova-lite-v1:0` is sent as `arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Ainference-profile%2F
us.amazon.nova-lite-v1%3A0`. Requests are signed with SigV4 for `bedrock` (`aws_http`), with
credentials from `aws_environment` (botocore's refreshing ones where the environment has none).

What is answered, as boto3 answers it:

    converse         the JSON answer with `ResponseMetadata` (`RequestId` from x-amzn-RequestId,
                     `HTTPStatusCode`, `HTTPHeaders`, `RetryAttempts` 0)
    converse_stream  `{"stream": EventStream, "ResponseMetadata": ...}`; the stream yields each
                     event as `{"contentBlockDelta": {...}}`, decoded by botocore's own
                     `EventStreamBuffer` (its framing and CRC checks)
    invoke_model     `{"body": <.read() gives the bytes>, "contentType": ..., "ResponseMetadata": ...}`

and failures as botocore raises them:

    an error answer                    ClientError: the code from x-amzn-ErrorType (else the body's
                                       `code` or `__type`), the body's message; a 5xx whose body
                                       is empty or an HTML page: the status and its reason phrase
    an exception inside a stream       EventStreamError (a ClientError) with its :exception-type
    a frame that fails its CRC         botocore.eventstream's ChecksumMismatch (a ParserError)
    no connection or no answer in time `aws_http.botocore_errors`
    an answer's body or stream that    ReadTimeoutError / ResponseStreamingError, as botocore's
    stalls or breaks off after the     StreamingBody raises them (botocore's event streams let
    status line                        urllib3's own errors through; a cut Converse body it reads
                                       as far as it got, which then parses to nothing)

The read timeout applies to each read, the status line's included, as botocore's socket timeout
does; nothing is retried (the gateway decides about retries and fallbacks). Not done: checking
the arguments against botocore's model of the API before sending (Bedrock answers a
ValidationException instead), reshaping answers by that model (a blob member stays base64 text),
and Bearer-token auth (`AWS_BEARER_TOKEN_BEDROCK`: the gateway calls Bedrock as its role).
"""

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.client import responses as reason_phrases
from typing import Any
from urllib.parse import quote

import httpx
from botocore.eventstream import EventStreamBuffer, EventStreamMessage
from botocore.exceptions import ClientError, EventStreamError, ReadTimeoutError, ResponseStreamingError

from paymaster.adapters import aws_http
from paymaster.adapters.aws_environment import CredentialSource

SIGNING_NAME = "bedrock"


class BedrockRuntimeWire:
    """The three `bedrock-runtime` operations the gateway calls, for one region's endpoint; safe to
    share between threads (embeddings call it from several at once)."""

    def __init__(
        self,
        transport: httpx.BaseTransport,
        *,
        endpoint_url: str,
        region: str,
        credentials: CredentialSource,
        timeout: httpx.Timeout,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._transport = transport
        self._endpoint_url = endpoint_url.rstrip("/")
        self._host = httpx.URL(self._endpoint_url).netloc.decode()
        self._region = region
        self._credentials = credentials
        self._timeout = timeout.as_dict()
        self._clock = clock

    def converse(self, *, modelId: str, **arguments: Any) -> dict[str, Any]:
        path = f"/model/{_label(modelId)}/converse"
        response = self._send("Converse", path, json.dumps(arguments).encode(), {"content-type": "application/json"})
        try:
            with _body_errors(response):
                content = response.read()
        finally:
            response.close()
        return _json_object(content) | {"ResponseMetadata": _metadata(response)}

    def converse_stream(self, *, modelId: str, **arguments: Any) -> dict[str, Any]:
        path = f"/model/{_label(modelId)}/converse-stream"
        response = self._send(
            "ConverseStream", path, json.dumps(arguments).encode(), {"content-type": "application/json"}
        )
        return {
            "stream": EventStream(response, "ConverseStream"),
            "ResponseMetadata": _metadata(response),
        }

    def invoke_model(self, *, modelId: str, body: bytes | str, contentType: str, accept: str) -> dict[str, Any]:
        payload = body.encode() if isinstance(body, str) else body
        headers = {"accept": accept, "content-type": contentType}
        response = self._send("InvokeModel", f"/model/{_label(modelId)}/invoke", payload, headers)
        return {
            "ResponseMetadata": _metadata(response),
            "contentType": response.headers.get("content-type"),
            "body": ResponseBody(response),
        }

    def _send(self, operation: str, path: str, payload: bytes, headers: dict[str, str]) -> httpx.Response:
        """Sends `payload` with `headers`, signed; the response once its status line and headers
        arrived (its body still to read), or the ClientError of an error answer."""
        url = httpx.URL(self._endpoint_url + path)
        signed = aws_http.signed_headers(
            self._credentials.get_frozen_credentials(),
            service=SIGNING_NAME,
            region=self._region,
            host=self._host,
            path=url.raw_path.decode(),
            headers=headers,
            payload=payload,
            now=self._clock(),
        )
        request = httpx.Request("POST", url, content=payload, headers=signed, extensions={"timeout": self._timeout})
        with aws_http.botocore_errors(str(url)):
            response = self._transport.handle_request(request)
            response.request = request  # as httpx.Client does: the URL that failed, for errors
            if response.status_code < 300:
                return response
            try:
                content = response.read()
            finally:
                response.close()
        raise _client_error(operation, response, content)


class EventStream:
    """A ConverseStream answer's events, as boto3's EventStream yields them; `close()` ends the
    connection (one not read to its end is not reused)."""

    def __init__(self, response: httpx.Response, operation: str) -> None:
        self._response = response
        self._operation = operation

    def __iter__(self) -> Iterator[dict[str, Any]]:
        messages = EventStreamBuffer()
        with _body_errors(self._response):
            for chunk in self._response.iter_raw():
                messages.add_data(chunk)
                for message in messages:
                    yield _event(message, self._operation)

    def close(self) -> None:
        self._response.close()


class ResponseBody:
    """An InvokeModel answer's body, read when asked for, as botocore's StreamingBody."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    def read(self) -> bytes:
        try:
            with _body_errors(self._response):
                return self._response.read()
        finally:
            self._response.close()


def _label(model_id: str) -> str:
    """A model id as a URI label, as botocore's `percent_encode` makes one."""
    return quote(model_id, safe="-._~")


@contextmanager
def _body_errors(response: httpx.Response) -> Iterator[None]:
    """Failures while reading an answer that has begun (200), as botocore's StreamingBody raises them."""
    try:
        yield
    except httpx.TimeoutException:
        raise ReadTimeoutError(endpoint_url=str(response.request.url)) from None
    except httpx.TransportError as error:
        raise ResponseStreamingError(error=error) from None


def _event(message: EventStreamMessage, operation: str) -> dict[str, Any]:
    """One event-stream message as boto3 yields it, or the EventStreamError it raises for it."""
    headers = message.headers
    payload = _json_object(message.payload)
    if headers.get(":message-type") == "exception":
        code = headers.get(":exception-type", "")
        raise EventStreamError({"Error": {"Code": code, "Message": _message(payload)}}, operation)
    if headers.get(":message-type") == "error":
        details = {"Code": headers.get(":error-code", ""), "Message": headers.get(":error-message", "")}
        raise EventStreamError({"Error": details}, operation)
    return {headers.get(":event-type", ""): payload}


def _client_error(operation: str, response: httpx.Response, content: bytes) -> ClientError:
    """An error answer as botocore's restJson1 parser reads it."""
    metadata = _metadata(response)
    if response.status_code >= 500 and (not content.strip() or content.strip().startswith(b"<html>")):
        # No AWS error in it (a proxy's page, a bare 503): botocore keeps only the status.
        details = {"Code": str(response.status_code), "Message": reason_phrases.get(response.status_code, "")}
        metadata.pop("RequestId", None)
    else:
        body = _json_object(content)
        code = response.headers.get("x-amzn-errortype") or body.get("code", body.get("Code", body.get("__type")))
        # "ThrottlingException:http://internal.amazon.com/coral/..." or "com.amazon.coral#ThrottlingException"
        code = str(code or response.status_code).split(":", 1)[0].rsplit("#", 1)[-1]
        details = {"Code": code, "Message": _message(body)}
    return ClientError({"Error": details, "ResponseMetadata": metadata}, operation)


def _metadata(response: httpx.Response) -> dict[str, Any]:
    metadata: dict[str, Any] = {"HTTPStatusCode": response.status_code, "HTTPHeaders": dict(response.headers)}
    if "x-amzn-requestid" in response.headers:
        metadata["RequestId"] = response.headers["x-amzn-requestid"]
    return metadata | {"RetryAttempts": 0}


def _json_object(content: bytes) -> dict[str, Any]:
    """A body as botocore's JSON parsers take it: {} if empty, `{"message": text}` if not JSON."""
    if not content:
        return {}
    text = content.decode(errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        return {"message": text}
    return parsed if isinstance(parsed, dict) else {}


def _message(body: dict[str, Any]) -> str:
    return str(body.get("message", body.get("Message", "")))
