"""One JSON-over-HTTPS provider endpoint, spoken through a connection pool's transport.

The providers share everything below the wire format: the request is sent straight through an
`httpx.BaseTransport` (HTTPTransport in AWS, MockTransport in tests) — an httpx.Client's cookie,
redirect and hook handling costs 0.13 ms a call and does nothing for an API call — with the
deployment's timeouts as the request's `timeout` extension; and every failure becomes the error
the caller is shown:

    timeout (connect, a stream's first byte)    ProviderTimeoutError
    unreachable                                 ProviderError
    no answer in time / connection broken after a non-streamed request was sent
                                                accepted: the provider may have generated it
    400 / 404 / 413 / 422                       ProviderRejectedError (the caller's request is wrong)
    429                                         ProviderThrottledError, with the provider's Retry-After
    any other error status                      ProviderError, with the provider's message and request id
    after a 200: broken, stalled past the first-byte timeout, past the total timeout, not JSON
                                                accepted (`ProviderError.accepted`): the provider may bill it

`total_s` bounds a non-streamed answer here, read in pieces against the deadline; a stream's
total is the caller's to watch (`ChatService.stream`), since only it knows when it stops pulling.
"""

import json
import time
from collections.abc import Callable, Generator
from typing import Any

import httpx

from paymaster.domain.errors import (
    ProviderError,
    ProviderRejectedError,
    ProviderResponseError,
    ProviderThrottledError,
    ProviderTimeoutError,
)
from paymaster.domain.policy import Timeouts

REJECTED = {400, 404, 413, 422}


class HttpJsonApi:
    """`error_text` reads the provider's error body (raising KeyError/TypeError if it cannot);
    `request_id_header` names the header carrying the provider's request id, kept for logs."""

    def __init__(
        self,
        transport: httpx.BaseTransport,
        url: str,
        timeouts: Timeouts,
        *,
        request_id_header: str,
        error_text: Callable[[Any], str],
    ) -> None:
        self._transport = transport
        self._url = httpx.URL(url)
        self._host = self._url.netloc.decode()
        self._timeout = httpx.Timeout(
            timeouts.first_byte_s, connect=timeouts.connect_s, read=timeouts.first_byte_s
        ).as_dict()
        self._total_s = timeouts.total_s
        self._request_id_header = request_id_header
        self._error_text = error_text

    def post(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[Any, str | None]:
        """The JSON answer and the provider's request id."""
        deadline = time.monotonic() + self._total_s
        response = self._open(body, headers, generated_first=True)
        content = bytearray()
        try:
            for piece in response.iter_bytes():
                content += piece
                if time.monotonic() > deadline:
                    raise ProviderTimeoutError(
                        "the provider's answer ran past its total timeout", accepted=not response.is_error
                    )
        except httpx.TimeoutException:
            raise ProviderTimeoutError("the provider stopped sending", accepted=not response.is_error) from None
        except httpx.TransportError as error:
            raise ProviderError(
                f"the provider's answer broke off ({type(error).__name__})", accepted=not response.is_error
            ) from None
        finally:
            response.close()
        self._raise_for_status(response, bytes(content))
        try:
            return json.loads(content), response.headers.get(self._request_id_header)
        except ValueError:
            raise ProviderResponseError("the provider's answer is not JSON", status=response.status_code) from None

    def lines(self, body: dict[str, Any], headers: dict[str, str]) -> Generator[str, None, None]:
        """The streamed answer's lines; closing the generator closes the connection."""
        response = self._open(body, headers, generated_first=False)
        try:
            if response.is_error:
                self._raise_for_status(response, response.read())
            try:
                yield from response.iter_lines()
            except httpx.TimeoutException:
                raise ProviderTimeoutError("the provider stopped sending mid-stream", accepted=True) from None
            except httpx.TransportError as error:
                raise ProviderResponseError(f"the provider's stream broke ({type(error).__name__})") from None
        finally:
            response.close()

    def _open(self, body: dict[str, Any], headers: dict[str, str], *, generated_first: bool) -> httpx.Response:
        """Sends the request and waits for the answer's status line.

        `generated_first`: the provider generates the whole answer before its status line (a
        non-streamed call), so once the request was sent, a read timeout or a broken connection
        may leave a billed answer behind: accepted, never retried elsewhere. A stream's status
        line comes before generation: no status line in time is a timeout another deployment
        may take.
        """
        request = httpx.Request(
            "POST",
            self._url,
            content=json.dumps(body, separators=(",", ":")).encode(),
            headers={"content-type": "application/json", "host": self._host, **headers},
            extensions={"timeout": self._timeout},
        )
        try:
            return self._transport.handle_request(request)
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            raise ProviderTimeoutError(f"the provider could not be reached in time ({type(error).__name__})") from None
        except httpx.TimeoutException as error:
            raise ProviderTimeoutError(
                f"the provider did not answer in time ({type(error).__name__})", accepted=generated_first
            ) from None
        except (httpx.ConnectError, httpx.WriteError) as error:
            raise ProviderError(f"the provider could not be reached ({type(error).__name__})") from None
        except httpx.TransportError as error:
            raise ProviderError(
                f"the provider's connection broke before it answered ({type(error).__name__})", accepted=generated_first
            ) from None

    def _raise_for_status(self, response: httpx.Response, content: bytes) -> None:
        """`content` is the answer's body, already read (and decoded)."""
        if not response.is_error:
            return
        try:
            message = self._error_text(json.loads(content))
        except (ValueError, KeyError, TypeError):
            message = content[:200].decode(errors="replace")
        text = f"the provider answered {response.status_code}: {message}"
        request_id = response.headers.get(self._request_id_header)
        if response.status_code == 429:
            raise ProviderThrottledError(
                text, provider_request_id=request_id, retry_after_s=retry_after(response.headers.get("retry-after"))
            )
        kind = ProviderRejectedError if response.status_code in REJECTED else ProviderError
        raise kind(text, status=response.status_code, provider_request_id=request_id)


def retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header given in seconds ("2", "0.5"); None otherwise (an
    HTTP date is rare from APIs and not worth trusting the clock skew for)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 3600 else None
