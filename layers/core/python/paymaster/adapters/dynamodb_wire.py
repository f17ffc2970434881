"""DynamoDB's JSON protocol over a kept-alive httpx connection, signed with botocore's signer.

Why not a boto3 client on the hot path: each boto3 call spends about 0.8 ms of CPU before a
byte leaves (endpoint rules, the event system, header objects), and a request makes two or
three calls; that alone was most of the gateway's own time (docs/BENCHMARKS.md). The three
operations the counter store uses are stable JSON over HTTPS, so this client sends them
itself and keeps what matters from botocore: credentials (refreshed as botocore refreshes
them), the endpoint boto3 resolves (partitions, FIPS, `AWS_ENDPOINT_URL`), and errors as
`botocore.exceptions.ClientError` with the same `Error`, `ResponseMetadata` and
`CancellationReasons` a boto3 client would give.

Requests are signed here (SigV4 for one fixed shape: POST / with four headers), because
botocore's general signer costs 0.2 ms a call; a test pins the signature to botocore's.

Throttling, 5xx and lost answers are retried with jittered exponential backoff (as botocore's
standard mode), each request sent again exactly as it was (see `_call`); a cancelled transaction
is returned to the caller, whose conditions decide.
"""

import functools
import hmac
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any

import httpx
from botocore.credentials import Credentials
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

TARGET_PREFIX = "DynamoDB_20120810."
# Fail fast: a rule's on_store_error decides what a slow store means, not a long wait.
DEFAULT_TIMEOUT = httpx.Timeout(2.0, connect=1.0)
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
        transport: httpx.BaseTransport,
        *,
        endpoint_url: str,
        region: str,
        credentials: Credentials,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # The transport itself (a kept-alive connection pool), not an httpx.Client: the client's
        # cookie, redirect, auth and hook machinery cost 0.13 ms a call and do nothing here.
        self._transport = transport
        self._timeout = timeout.as_dict()
        self._url = endpoint_url.rstrip("/") + "/"
        self._parsed_url = httpx.URL(self._url)
        self._host = self._parsed_url.netloc.decode()
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
        """Sends the request until DynamoDB answers it, at most `max_attempts` times.

        Repeating a request is safe because every request paymaster sends is idempotent: reads,
        and transactions carrying a ClientRequestToken or conditions that a repeat fails. So a
        request whose answer was lost — a timeout, a connection broken after it was sent, a 5xx —
        is sent again as it was, and a repeat that committed the first time is answered as such.
        """
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
            if last or not (code in _RETRYABLE or response.status_code >= 500):
                raise error
            self._backoff(attempt)
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int) -> None:
        self._sleep(0.025 * 2**attempt * random.random())  # noqa: S311 - jitter, not secrecy

    def signed_headers(self, operation: str, payload: bytes, now: datetime) -> dict[str, str]:
        """SigV4 headers for `POST /` with this payload, exactly as botocore would sign them."""
        credentials = self._credentials.get_frozen_credentials()
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        headers = {
            "content-type": CONTENT_TYPE,
            "host": self._host,
            "x-amz-date": amz_date,
            "x-amz-target": TARGET_PREFIX + operation,
        }
        if credentials.token:
            headers["x-amz-security-token"] = credentials.token
        names = sorted(headers)
        signed = ";".join(names)
        canonical = "\n".join(
            ["POST", "/", "", *(f"{name}:{headers[name]}" for name in names), "", signed, sha256(payload).hexdigest()]
        )
        scope = f"{amz_date[:8]}/{self._region}/dynamodb/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{sha256(canonical.encode()).hexdigest()}"
        key = _signing_key(credentials.secret_key, amz_date[:8], self._region)
        signature = hmac.new(key, to_sign.encode(), sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        return headers

    def _send(self, operation: str, payload: bytes) -> httpx.Response:
        headers = self.signed_headers(operation, payload, datetime.now(UTC))
        request = httpx.Request(
            "POST", self._parsed_url, content=payload, headers=headers, extensions={"timeout": self._timeout}
        )
        try:
            response = self._transport.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
            return response
        except httpx.ConnectTimeout:
            raise ConnectTimeoutError(endpoint_url=self._url) from None
        except httpx.ConnectError:
            raise EndpointConnectionError(endpoint_url=self._url) from None
        except httpx.TimeoutException:
            raise ReadTimeoutError(endpoint_url=self._url) from None
        except httpx.TransportError as error:  # broken after the request was sent: it may have applied
            raise ConnectionClosedError(endpoint_url=self._url) from error


@functools.lru_cache(maxsize=8)
def _signing_key(secret: str, day: str, region: str) -> bytes:
    """HMAC chain AWS4<secret> → day → region → service → aws4_request; one per day and key."""
    key = f"AWS4{secret}".encode()
    for part in (day, region, "dynamodb", "aws4_request"):
        key = hmac.new(key, part.encode(), sha256).digest()
    return key


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
