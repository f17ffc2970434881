"""Provider API keys from AWS Secrets Manager, fetched once per container and kept for a while.

A key is never logged, put in an event or returned in an error.
"""

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from paymaster.adapters.aws_environment import CredentialSource
from paymaster.adapters.aws_json import AwsJsonApi

DEFAULT_TTL_S = 300.0
# A key is fetched while a caller waits: give up well before the provider's own timeouts would.
DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=2.0)
_RETRYABLE = {"ThrottlingException", "InternalServiceError"}


class SecretCache:
    """`get(name)` returns the secret's string, refetching it after `ttl_s` (key rotation)."""

    def __init__(self, client: Any, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> str:
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None and self._clock() - cached[0] < self._ttl_s:
                return cached[1]
            value = str(self._client.get_secret_value(SecretId=name)["SecretString"])
            self._cache[name] = (self._clock(), value)
            return value


class SecretsManagerWire(AwsJsonApi):
    """The one Secrets Manager call the gateway makes, with a boto3 client's shapes and errors
    (`aws_json`): importing boto3 would cost the first request that needs a key about 0.5 s."""

    def __init__(
        self,
        transport: httpx.BaseTransport,
        *,
        endpoint_url: str,
        region: str,
        credentials: CredentialSource,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(
            transport,
            service="secretsmanager",
            target_prefix="secretsmanager.",
            content_type="application/x-amz-json-1.1",
            retryable=_RETRYABLE,
            endpoint_url=endpoint_url,
            region=region,
            credentials=credentials,
            timeout=timeout,
            max_attempts=max_attempts,
            sleep=sleep,
        )

    def get_secret_value(self, *, SecretId: str) -> dict[str, Any]:
        return self.call("GetSecretValue", {"SecretId": SecretId})
