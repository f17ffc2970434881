"""Errors the use cases raise. Each carries what the caller needs to act on it.

The HTTP layer maps each class to one status and OpenAI error type (`paymaster.api.errors`);
nothing here knows about HTTP.
"""

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from paymaster.domain.limits import Refusal
    from paymaster.domain.metering import Bill


class PaymasterError(Exception):
    """Base of every error paymaster answers deliberately.

    `bill`: what the request was charged, when it was admitted and settled before it failed — so
    that the answer says so (a provider that accepted the call may bill it).
    """

    code: str = "paymaster_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.bill: Bill | None = None

    def __str__(self) -> str:
        return self.message  # which a handler may extend with what it learned on the way


class AuthenticationError(PaymasterError):
    """The request is not signed, or its signature does not verify."""

    code = "invalid_signature"


class UnknownPrincipalError(PaymasterError):
    """The signature is valid but no team in the policy claims the caller's IAM principal."""

    code = "unknown_principal"


class InvalidRequestError(PaymasterError):
    """The body is not a request paymaster can serve (bad JSON, missing field, wrong type)."""

    code = "invalid_request"


class PayloadTooLargeError(PaymasterError):
    """The body is over the gateway's documented size limit."""

    code = "payload_too_large"


class ModelNotFoundError(PaymasterError):
    """The model is not in the policy, or the caller's team may not use it."""

    code = "model_not_found"


class ProviderError(PaymasterError):
    """The provider answered with an error the gateway cannot hide from the caller.

    `accepted`: the provider had accepted the call (answered 200) before it failed — a stream
    that broke, an answer that could not be read — so it may bill it; the call is metered, never
    released, and never retried elsewhere.
    """

    code = "provider_error"
    accepted_by_default = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        provider_request_id: str | None = None,
        accepted: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.provider_request_id = provider_request_id
        self.accepted = self.accepted_by_default if accepted is None else accepted


class ProviderResponseError(ProviderError):
    """The provider accepted the call, then its answer broke off or could not be read."""

    accepted_by_default = True


class ProviderThrottledError(ProviderError):
    """The provider refused the call for its own rate limit (429, ThrottlingException)."""

    code = "provider_rate_limited"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 429,
        provider_request_id: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, status=status, provider_request_id=provider_request_id)
        self.retry_after_s = retry_after_s


class ProviderKeyUnavailableError(ProviderError):
    """The gateway has no usable API key for the provider (its secret is missing, empty or
    unreadable): the call never left the gateway, so another deployment may take it."""

    code = "provider_key_unavailable"


class ProviderTimeoutError(ProviderError):
    """The provider did not answer within the deployment's timeout."""

    code = "provider_timeout"


class ProviderRejectedError(ProviderError):
    """The provider refused the request as invalid (its 400/404/413/422): the caller's to fix."""

    code = "provider_rejected_request"


class LimitRefusedError(PaymasterError):
    """A rule refused the request before the provider was called. `refusal` says which and why."""

    def __init__(self, message: str, refusal: "Refusal", now: datetime) -> None:
        super().__init__(message)
        self.refusal = refusal
        self.now = now


class RateLimitedError(LimitRefusedError):
    """A rate limit is full for this window; retrying after the window resets will work."""

    code = "rate_limit_exceeded"


class BudgetExhaustedError(LimitRefusedError):
    """A budget cannot afford the request; retrying before it resets will not help."""

    code = "insufficient_quota"


class GatewayFailureError(PaymasterError):
    """Something failed that paymaster did not foresee, after the request was admitted: settled as
    if the provider had billed the whole hold (it may have), logged with the cause, answered 500."""

    code = "internal_error"


class StoreUnavailableError(PaymasterError):
    """The counter store could not be reached, and a rule says to fail closed."""

    code = "counter_store_unavailable"


class LedgerUnavailableError(StoreUnavailableError):
    """The ledger could not be read, so the spend `GET /v1/usage` reports cannot be told: the
    whole answer is a 503 rather than a 200 whose spend a script could take for $0."""

    code = "ledger_unavailable"


class StoreOutcomeUnknownError(StoreUnavailableError):
    """The counter store did not answer a write it may have applied (a timeout, a connection
    broken after the request was sent, a 5xx), even when asked again."""


class NoticeNotSentError(PaymasterError):
    """A notice (budget alarm, forecast, digest) could not be handed to its topic now: the
    message it came from is delivered again, and after its retries lands on a dead-letter queue."""

    code = "notice_not_sent"


class EventNotPublishedError(PaymasterError):
    """The bus did not take an event a scheduled job must publish (a MonthClosed): the invocation
    fails, its schedule retries it, and the next run publishes what the first one recorded."""

    code = "event_not_published"


class MonthNotOverError(PaymasterError):
    """A month close asked for before the month's last calls can be in the ledger (its end plus
    `domain.schedules.MONTH_CLOSE_MARGIN`): a report written then would miss them for good."""

    code = "month_not_over"

    def __init__(self, team: str, month: str, closable_at: datetime) -> None:
        super().__init__(
            f"{team}'s {month} cannot be closed before {closable_at.isoformat()}: "
            "its last calls may not be in the ledger yet"
        )
        self.team = team
        self.month = month
        self.closable_at = closable_at
