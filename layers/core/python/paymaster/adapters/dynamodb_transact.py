"""Conditional TransactWriteItems, as the counter store and the ledger both send them.

A transaction is cancelled as a whole. Its `CancellationReasons` say why, item by item: a
`ConditionalCheckFailed` is an answer (the caller's conditions decide what it means: a cap
reached, a settlement already applied, a ledger entry already written); `TransactionConflict`
(another transaction on one of the items) and throttling are load, retried here with jittered
exponential backoff and then reported as StoreUnavailableError. The wire itself (`aws_json`)
already repeats throttled, 5xx and unanswered requests, which conditions make safe.
"""

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ConnectionClosedError, ReadTimeoutError

from paymaster.domain.errors import StoreOutcomeUnknownError, StoreUnavailableError

CONFLICT_RETRIES = 4
_RETRYABLE_REASONS = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
_UNAVAILABLE_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "ResourceNotFoundException",
    "AccessDeniedException",
    "UnrecognizedClientException",
}

Reasons = list[dict[str, Any]]


class Transactions:
    """`client` is a boto3 DynamoDB client (or `DynamoDBWire`); `store` names the store in errors."""

    def __init__(
        self,
        client: Any,
        store: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._store = store
        self._sleep = sleep
        self._jitter = jitter

    def write(self, items: list[dict[str, Any]], token: str | None = None) -> Reasons | None:
        """None when the transaction committed; the per-item reasons when a condition failed.

        Conflicts and throttling are retried with jittered exponential backoff (5 ms, 10, 20, 40,
        each × 0.5–1.5), then reported as StoreUnavailableError so the caller decides. `token`
        makes a repeat of a transaction that committed an answered no-op (DynamoDB's
        ClientRequestToken, 10 minutes).
        """
        request: dict[str, Any] = {"TransactItems": items}
        if token is not None:
            request["ClientRequestToken"] = token
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                with store_errors(self._store):
                    self._client.transact_write_items(**request)
                return None
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
                reasons: Reasons = error.response.get("CancellationReasons", [])
                codes = {reason.get("Code") for reason in reasons}
                if "ConditionalCheckFailed" in codes:
                    return reasons
                if not codes & _RETRYABLE_REASONS or attempt == CONFLICT_RETRIES:
                    raise StoreUnavailableError(f"{self._store} cancelled the transaction: {codes}") from None
                self._sleep(0.005 * (2**attempt) * (0.5 + self._jitter()))
        raise AssertionError("unreachable")


@contextmanager
def store_errors(store: str) -> Iterator[None]:
    """DynamoDB failing to answer (throttling, 5xx, network, credentials) → StoreUnavailableError,
    or StoreOutcomeUnknownError where the request may have applied. `store` names it in the message.

    A cancelled transaction passes through: its reasons say whether a condition refused it.
    """
    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code != "TransactionCanceledException" and status >= 500:
            raise StoreOutcomeUnknownError(f"{store} failed: {code}") from None
        if code != "TransactionCanceledException" and code in _UNAVAILABLE_CODES:
            raise StoreUnavailableError(f"{store} failed: {code}") from None
        raise
    except (ReadTimeoutError, ConnectionClosedError) as error:
        raise StoreOutcomeUnknownError(f"{store} did not answer: {type(error).__name__}") from None
    except BotoCoreError as error:
        raise StoreUnavailableError(f"{store} is unreachable: {type(error).__name__}") from None
