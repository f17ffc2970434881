"""DynamoDB's JSON protocol over a kept-alive httpx connection, signed with botocore's signer.

Why not a boto3 client on the hot path: each boto3 call spends about 0.8 ms of CPU before a
byte leaves (endpoint rules, the event system, header objects), and a request makes two or
three calls; that alone was most of the gateway's own time (docs/BENCHMARKS.md). The three
operations the counter store uses are stable JSON over HTTPS, so this client sends them
itself and keeps what matters from botocore: credentials (refreshed as botocore refreshes
them), SigV4 signing, the endpoint boto3 resolves (partitions, FIPS, `AWS_ENDPOINT_URL`), and
errors as `botocore.exceptions.ClientError` with the same `Error`, `ResponseMetadata` and
`CancellationReasons` a boto3 client would give.

Throttling and 5xx are retried with jittered exponential backoff (as botocore's standard mode);
a cancelled transaction is returned to the caller, whose conditions decide.
"""

import json
import random
import time
from collections.abc import Callable
from typing import Any

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

TARGET_PREFIX = "DynamoDB_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"
_RETRYABLE = {
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
}


class DynamoDBWire:
    """The subset of a boto3 DynamoDB client the counter store calls, with the same shapes."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        endpoint_url: str,
        region: str,
        credentials: Credentials,
        max_attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = http
        self._url = endpoint_url.rstrip("/") + "/"
        self._region = region
        self._credentials = credentials
        self._max_attempts = max_attempts
        self._sleep = sleep

    def transact_write_items(self, **body: Any) -> dict[str, Any]:
        return self._call("TransactWriteItems", body)

    def batch_get_item(self, **body: Any) -> dict[str, Any]:
        return self._call("BatchGetItem", body)

    def query(self, **body: Any) -> dict[str, Any]:
        return self._call("Query", body)

    def _call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        payload = json.dumps(body, separators=(",", ":")).encode()
        for attempt in range(1, self._max_attempts + 1):
            response = self._send(operation, payload)
            if response.status_code == 200:
                answer: dict[str, Any] = response.json()
                return answer
            error = _client_error(operation, response)
            code = error.response["Error"]["Code"]
            if attempt == self._max_attempts or not (code in _RETRYABLE or response.status_code >= 500):
                raise error
            self._sleep(0.025 * 2**attempt * random.random())  # noqa: S311 - jitter, not secrecy
        raise AssertionError("unreachable")

    def _send(self, operation: str, payload: bytes) -> httpx.Response:
        request = AWSRequest(
            method="POST",
            url=self._url,
            data=payload,
            headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET_PREFIX + operation},
        )
        SigV4Auth(self._credentials.get_frozen_credentials(), "dynamodb", self._region).add_auth(request)
        try:
            return self._http.post(self._url, content=payload, headers=dict(request.headers.items()))
        except httpx.ConnectTimeout:
            raise ConnectTimeoutError(endpoint_url=self._url) from None
        except httpx.TimeoutException:
            raise ReadTimeoutError(endpoint_url=self._url) from None
        except httpx.TransportError:
            raise EndpointConnectionError(endpoint_url=self._url) from None


def _client_error(operation: str, response: httpx.Response) -> ClientError:
    """DynamoDB's `{"__type": "...#Code", "message": ...}` as boto3 would raise it."""
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
