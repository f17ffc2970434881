"""Provider API keys from AWS Secrets Manager, fetched once per container and kept for a while.

A key is never logged, put in an event or returned in an error.
"""

import threading
import time
from collections.abc import Callable
from typing import Any

DEFAULT_TTL_S = 300.0


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
