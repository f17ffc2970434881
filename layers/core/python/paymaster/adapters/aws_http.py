"""What the thin AWS clients (`aws_json`, `bedrock_runtime`) share: requests signed with SigV4 as
botocore signs them, and httpx's transport failures raised as botocore's exceptions.

Why sign here: botocore's general signer costs 0.2 ms a call, and importing it a cold start
0.15 s; what the clients send is a POST with a few headers they choose, so the signature is a
few lines. Tests pin it to botocore's `SigV4Auth` for each client.
"""

import functools
import hmac
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from hashlib import sha256
from urllib.parse import quote

import httpx
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from paymaster.adapters.aws_environment import FrozenCredentials


def signed_headers(
    credentials: FrozenCredentials,
    *,
    service: str,
    region: str,
    host: str,
    path: str,
    headers: Mapping[str, str],
    payload: bytes,
    now: datetime,
) -> dict[str, str]:
    """`headers` (lower-case names, every one signed) with `host`, `x-amz-date`, the session token
    and `authorization` added, for `POST path` with `payload`: what botocore's `SigV4Auth` adds.

    The canonical URI is the path as sent, percent-encoded once more, as botocore signs it for
    every service but S3: `/model/us.amazon.nova-lite-v1%3A0/converse` is signed as
    `/model/us.amazon.nova-lite-v1%253A0/converse`. (botocore also removes `.` and `..` segments;
    the paths sent here have none: a model id is one percent-encoded segment.)
    """
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    signed = {**headers, "host": host, "x-amz-date": amz_date}
    if credentials.token:
        signed["x-amz-security-token"] = credentials.token
    names = sorted(signed)
    signed_names = ";".join(names)
    canonical = "\n".join(
        [
            "POST",
            quote(path, safe="/~"),
            "",  # no query string
            *(f"{name}:{signed[name]}" for name in names),
            "",
            signed_names,
            sha256(payload).hexdigest(),
        ]
    )
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{sha256(canonical.encode()).hexdigest()}"
    key = _signing_key(credentials.secret_key, amz_date[:8], region, service)
    signature = hmac.new(key, to_sign.encode(), sha256).hexdigest()
    signed["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed_names}, Signature={signature}"
    )
    return signed


@functools.lru_cache(maxsize=8)
def _signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    """HMAC chain AWS4<secret> → day → region → service → aws4_request; one per day and key."""
    key = f"AWS4{secret}".encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), sha256).digest()
    return key


@contextmanager
def botocore_errors(endpoint_url: str) -> Iterator[None]:
    """httpx's failures to send a request or read its answer, as botocore's HTTP layer raises them:

        no connection in time (connecting, or waiting for one of the pool's)   ConnectTimeoutError
        refused, unresolvable                                                  EndpointConnectionError
        no answer in time (a read or a write)                                  ReadTimeoutError
        broken after the request was (perhaps) sent                           ConnectionClosedError

    Only the last two leave open whether the service saw the request.
    """
    try:
        yield
    except (httpx.ConnectTimeout, httpx.PoolTimeout):
        raise ConnectTimeoutError(endpoint_url=endpoint_url) from None
    except httpx.ConnectError:
        raise EndpointConnectionError(endpoint_url=endpoint_url) from None
    except httpx.TimeoutException:
        raise ReadTimeoutError(endpoint_url=endpoint_url) from None
    except httpx.TransportError as error:
        raise ConnectionClosedError(endpoint_url=endpoint_url) from error
