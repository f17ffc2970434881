"""Provider API keys from AWS Secrets Manager, fetched once per container and kept for a while.

A key that cannot be had — the secret missing (a fresh account), empty, unreadable by the role,
Secrets Manager out of reach — is a failure of that provider before it saw the call: the route
moves on to the next deployment, nothing is charged, and the caller gets a 502 naming the
provider if none is left. The cause goes to the log. A failure is remembered for
`FAILURE_TTL_S` so that a missing secret costs one Secrets Manager call every few seconds, not
one per request, and a secret put right is picked up within that time.

A key is never logged, put in an event or returned in an error.
"""

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from paymaster.adapters.aws_json import AwsJsonApi
from paymaster.domain.errors import ProviderKeyUnavailableError

logger = Logger(service="paymaster")

DEFAULT_TTL_S = 300.0
FAILURE_TTL_S = 10.0
# A key is fetched while a caller waits: give up well before the provider's own timeouts would.
DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=2.0)
_RETRYABLE = {"ThrottlingException", "InternalServiceError"}


class SecretCache:
    """`get(name)` returns the secret's string, refetching it after `ttl_s` (key rotation).

    `client` builds the Secrets Manager client (`SecretsManagerWire`) on first use: the gateway
    need not pay for it before a provider with a key is called."""

    def __init__(
        self,
        client: Callable[[], Any],
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client_factory = client
        self._client: Any = None
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, str]] = {}
        self._failures: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> str:
        """The secret's value; SecretUnavailableError with the reason when there is no usable one."""
        with self._lock:
            now = self._clock()
            cached = self._cache.get(name)
            if cached is not None and now - cached[0] < self._ttl_s:
                return cached[1]
            failed = self._failures.get(name)
            if failed is not None and now - failed[0] < FAILURE_TTL_S:
                raise SecretUnavailableError(failed[1])
            try:
                value = self._fetch(name)
            except SecretUnavailableError as error:
                self._failures[name] = (now, error.reason)
                raise
            self._failures.pop(name, None)
            self._cache[name] = (now, value)
            return value

    def _fetch(self, name: str) -> str:
        try:
            if self._client is None:
                self._client = self._client_factory()
            answer = self._client.get_secret_value(SecretId=name)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "an error")
            raise SecretUnavailableError(f"Secrets Manager answered {code}") from None
        except BotoCoreError as error:
            raise SecretUnavailableError(f"Secrets Manager could not be reached ({type(error).__name__})") from None
        value = answer.get("SecretString")
        if not isinstance(value, str) or not value.strip():
            raise SecretUnavailableError("the secret has no value (SecretString is empty or missing)")
        return value.strip()


class SecretUnavailableError(Exception):
    """Why a secret has no usable value (for the log; the caller is told only which provider)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def api_key(secrets: SecretCache, provider: str, secret: str | None) -> Callable[[], str | None]:
    """The key source for `provider`: None for a provider without a key; otherwise the secret's
    value, or ProviderKeyUnavailableError naming the provider (the cause logged, never sent)."""
    if secret is None:
        return lambda: None

    def key() -> str:
        try:
            return secrets.get(secret)
        except SecretUnavailableError as error:
            logger.error(
                "provider API key unavailable", extra={"provider": provider, "secret": secret, "cause": error.reason}
            )
            raise ProviderKeyUnavailableError(
                f"The gateway has no usable API key for provider `{provider}`; the platform team must set "
                "its secret (the gateway's log says why)."
            ) from None

    return key


class SecretsManagerWire(AwsJsonApi):
    """The one Secrets Manager call the gateway makes, with a boto3 client's shapes and errors
    (`aws_json`): importing boto3 would cost the first request that needs a key about 0.5 s."""

    _service = "secretsmanager"
    _target_prefix = "secretsmanager."
    _content_type = "application/x-amz-json-1.1"
    _retryable = frozenset(_RETRYABLE)
    _default_timeout = DEFAULT_TIMEOUT

    def get_secret_value(self, *, SecretId: str) -> dict[str, Any]:
        return self.call("GetSecretValue", {"SecretId": SecretId})
