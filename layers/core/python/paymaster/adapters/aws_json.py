"""AWS's JSON protocol (DynamoDB, Secrets Manager) over a kept-alive httpx connection, signed here.

Why not a boto3 client: each boto3 call spends about 0.8 ms of CPU before a byte leaves
(endpoint rules, the event system, header objects), and importing boto3 costs a cold start
about 0.5 s (docs/BENCHMARKS.md). The few operations the gateway calls on these services are
stable JSON over HTTPS (`POST /`, the operation in `X-Amz-Target`), so this client sends them
itself and keeps what matters from botocore: credentials (botocore's, refreshed as botocore
refreshes them, or the environment's: `aws_environment`), the endpoint boto3 would resolve,
and errors as `botocore.exceptions.ClientError` with the same `Error`, `ResponseMetadata`
(and DynamoDB's `CancellationReasons`) a boto3 client would give.

Requests are signed here (`aws_http`: SigV4 for POST / with four headers), because botocore's
general signer costs 0.2 ms a call; a test pins the signature to botocore's.

Throttling, 5xx and lost answers — a timeout, a connection broken after the request was sent
— are retried with jittered exponential backoff (as botocore's standard mode), each request sent
again exactly as it was: every operation sent through here must be safe to repeat (reads; DynamoDB
transactions carrying a ClientRequestToken or conditions a repeat fails), so that a repeat of a
request that did apply is answered as such. Any other error is the caller's to decide.
"""

import json
import random
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

import httpx
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from paymaster.adapters import aws_http
from paymaster.adapters.aws_environment import CredentialSource


class AwsJsonApi:
    """One service's JSON API: `call("TransactWriteItems", {...})` answers the parsed body or
    raises as boto3 would.

    Each service's client is a subclass that names its protocol — `_service` (the SigV4 signing
    name: "dynamodb", "secretsmanager", "events"), `_target_prefix` (`X-Amz-Target` before the
    operation), `_content_type`, `_retryable` (the error codes sent again, besides any 5xx) and
    `_default_timeout` — and its operations, each one `call`.
    """

    _service: str
    _target_prefix: str
    _content_type: str
    _retryable: Collection[str]
    _default_timeout: httpx.Timeout

    def __init__(
        self,
        transport: httpx.BaseTransport,
        *,
        endpoint_url: str,
        region: str,
        credentials: CredentialSource,
        timeout: httpx.Timeout | None = None,
        max_attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # The transport itself (a kept-alive connection pool), not an httpx.Client: the client's
        # cookie, redirect, auth and hook machinery cost 0.13 ms a call and do nothing here.
        self._transport = transport
        self._timeout = (timeout or self._default_timeout).as_dict()
        self._url = endpoint_url.rstrip("/") + "/"
        self._parsed_url = httpx.URL(self._url)
        self._host = self._parsed_url.netloc.decode()
        self._region = region
        self._credentials = credentials
        self._max_attempts = max_attempts
        self._sleep = sleep

    def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        """Sends the request until the service answers it, at most `max_attempts` times."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        for attempt in range(1, self._max_attempts + 1):
            last = attempt == self._max_attempts
            try:
                response = self._send(operation, payload)
            except (ReadTimeoutError, ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError):
                if last:
                    raise
                self._backoff(attempt)
                continue
            if response.status_code == 200:
                answer: dict[str, Any] = response.json()
                return answer
            error = _client_error(operation, response)
            code = error.response["Error"]["Code"]
            if last or not (code in self._retryable or response.status_code >= 500):
                raise error
            self._backoff(attempt)
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int) -> None:
        self._sleep(0.025 * 2**attempt * random.random())  # noqa: S311 - jitter, not secrecy

    def signed_headers(self, operation: str, payload: bytes, now: datetime) -> dict[str, str]:
        """SigV4 headers for `POST /` with this payload, exactly as botocore would sign them."""
        return aws_http.signed_headers(
            self._credentials.get_frozen_credentials(),
            service=self._service,
            region=self._region,
            host=self._host,
            path="/",
            headers={"content-type": self._content_type, "x-amz-target": self._target_prefix + operation},
            payload=payload,
            now=now,
        )

    def _send(self, operation: str, payload: bytes) -> httpx.Response:
        headers = self.signed_headers(operation, payload, datetime.now(UTC))
        request = httpx.Request(
            "POST", self._parsed_url, content=payload, headers=headers, extensions={"timeout": self._timeout}
        )
        with aws_http.botocore_errors(self._url):
            response = self._transport.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
        return response


def _client_error(operation: str, response: httpx.Response) -> ClientError:
    """The service's `{"__type": "...#Code", "message": ...}` as boto3 would raise it."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    code = str(body.get("__type", "")).rsplit("#", 1)[-1] or f"HTTP{response.status_code}"
    parsed: dict[str, Any] = {
        "Error": {"Code": code, "Message": body.get("message") or body.get("Message") or ""},
        "ResponseMetadata": {
            "HTTPStatusCode": response.status_code,
            "RequestId": response.headers.get("x-amzn-requestid"),
        },
    }
    if "CancellationReasons" in body:
        parsed["CancellationReasons"] = body["CancellationReasons"]
    return ClientError(parsed, operation)
