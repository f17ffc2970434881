"""One JSON-over-HTTPS provider endpoint, spoken through a connection pool's transport.

The providers share everything below the wire format: the request is sent straight through an
`httpx.BaseTransport` (HTTPTransport in AWS, MockTransport in tests) — an httpx.Client's cookie,
redirect and hook handling costs 0.13 ms a call and does nothing for an API call — with the
deployment's timeouts as the request's `timeout` extension; and every failure becomes the error
the caller is shown:

    timeout (connect, first byte, mid-stream)   ProviderTimeoutError
    unreachable, broken connection              ProviderError
    400 / 404 / 413 / 422                       ProviderRejectedError (the caller's request is wrong)
    any other error status                      ProviderError, with the provider's message and request id
"""

import json
from collections.abc import Callable, Generator
from typing import Any

import httpx

from paymaster.domain.errors import ProviderError, ProviderRejectedError, ProviderTimeoutError
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
        self._request_id_header = request_id_header
        self._error_text = error_text

    def post(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[Any, str | None]:
        """The JSON answer and the provider's request id."""
        response = self._open(body, headers)
        try:
            response.read()
        except httpx.TransportError as error:
            raise ProviderError(f"the provider's answer broke off ({type(error).__name__})") from None
        finally:
            response.close()
        self._raise_for_status(response)
        try:
            return response.json(), response.headers.get(self._request_id_header)
        except ValueError:
            raise ProviderError("the provider's answer is not JSON", status=response.status_code) from None

    def lines(self, body: dict[str, Any], headers: dict[str, str]) -> Generator[str, None, None]:
        """The streamed answer's lines; closing the generator closes the connection."""
        response = self._open(body, headers)
        try:
            if response.is_error:
                response.read()
                self._raise_for_status(response)
            try:
                yield from response.iter_lines()
            except httpx.TimeoutException:
                raise ProviderTimeoutError("the provider stopped sending mid-stream") from None
            except httpx.TransportError as error:
                raise ProviderError(f"the provider's stream broke ({type(error).__name__})") from None
        finally:
            response.close()

    def _open(self, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        request = httpx.Request(
            "POST",
            self._url,
            content=json.dumps(body, separators=(",", ":")).encode(),
            headers={"content-type": "application/json", "host": self._host, **headers},
            extensions={"timeout": self._timeout},
        )
        try:
            return self._transport.handle_request(request)
        except httpx.TimeoutException as error:
            raise ProviderTimeoutError(f"the provider did not answer in time ({type(error).__name__})") from None
        except httpx.TransportError as error:
            raise ProviderError(f"the provider could not be reached ({type(error).__name__})") from None

    def _raise_for_status(self, response: httpx.Response) -> None:
        if not response.is_error:
            return
        try:
            message = self._error_text(response.json())
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        kind = ProviderRejectedError if response.status_code in REJECTED else ProviderError
        raise kind(
            f"the provider answered {response.status_code}: {message}",
            status=response.status_code,
            provider_request_id=response.headers.get(self._request_id_header),
        )
