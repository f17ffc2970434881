"""One table from each domain error to its HTTP status and OpenAI error type."""

import math
from typing import Any

from starlette.responses import JSONResponse

from paymaster import names
from paymaster.domain import errors
from paymaster.domain.limits import amount_text
from paymaster.domain.metering import Bill
from paymaster.domain.money import format_usd

_RESPONSES: dict[type[errors.PaymasterError], tuple[int, str]] = {
    errors.AuthenticationError: (403, "authentication_error"),
    errors.UnknownPrincipalError: (403, "permission_error"),
    errors.InvalidRequestError: (400, "invalid_request_error"),
    errors.PayloadTooLargeError: (413, "invalid_request_error"),
    errors.ModelNotFoundError: (404, "invalid_request_error"),
    errors.ProviderRejectedError: (400, "invalid_request_error"),
    errors.RateLimitedError: (429, "rate_limit_error"),
    errors.BudgetExhaustedError: (429, "insufficient_quota"),
    errors.StoreUnavailableError: (503, "server_error"),
    errors.ProviderTimeoutError: (504, "server_error"),
    errors.ProviderThrottledError: (429, "rate_limit_error"),
    errors.ProviderError: (502, "server_error"),
    errors.GatewayFailureError: (500, "server_error"),
}


def bill_headers(bill: Bill) -> dict[str, str]:
    """What a request was charged and on what basis; on every answer of a settled request."""
    return {names.HEADER_COST: format_usd(bill.cost), names.HEADER_BILLED_ON: bill.basis}


def error_body(message: str, kind: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape, which the openai SDK turns into its typed exceptions."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def status_and_type(error: errors.PaymasterError) -> tuple[int, str]:
    for cls in type(error).__mro__:
        if cls in _RESPONSES:
            return _RESPONSES[cls]
    return 500, "server_error"


def error_response(error: errors.PaymasterError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The error in OpenAI's shape; with what the request was charged when it was (`bill_headers`)."""
    status, kind = status_and_type(error)
    body = error_body(error.message, kind, error.code, error.param)
    headers = dict(headers or {})
    if error.bill is not None:
        headers |= bill_headers(error.bill)
    if isinstance(error, errors.LimitRefusedError):
        body["error"]["paymaster"] = refusal_details(error)
        headers |= refusal_headers(error)
    elif isinstance(error, errors.ProviderThrottledError):
        # Every deployment throttled: the openai SDK may retry, after the provider's own wait.
        headers["x-should-retry"] = "true"
        if error.retry_after_s is not None:
            headers["retry-after"] = str(max(1, math.ceil(error.retry_after_s)))
    return JSONResponse(body, status_code=status, headers=headers)


def refusal_details(error: errors.LimitRefusedError) -> dict[str, Any]:
    """What the rule, its scope and its window looked like when it refused."""
    refusal = error.refusal
    rule = refusal.rule
    return {
        "rule": rule.name,
        "scope": refusal.hold.bucket,
        "unit": rule.unit,
        "limit": amount_text(rule, rule.cap),
        "used": amount_text(rule, refusal.used),
        "remaining": amount_text(rule, refusal.remaining),
        "requested": amount_text(rule, refusal.hold.amount),
        "window": refusal.hold.window.id,
        "resets_at": refusal.hold.window.end.isoformat(),
    }


def refusal_headers(error: errors.LimitRefusedError) -> dict[str, str]:
    """Headers the openai SDK acts on: a rate limit says when to retry; a spent budget says don't.

    `x-ratelimit-*` follow OpenAI's names (`-requests` or `-tokens` by the rule's measure).
    """
    refusal = error.refusal
    wait = math.ceil(refusal.hold.window.seconds_left(error.now))
    if isinstance(error, errors.BudgetExhaustedError):
        return {"x-should-retry": "false"}
    measure = "requests" if refusal.rule.measure == "requests" else "tokens"
    return {
        "retry-after": str(max(1, wait)),
        "x-should-retry": "true",
        f"x-ratelimit-limit-{measure}": str(refusal.rule.cap),
        f"x-ratelimit-remaining-{measure}": str(refusal.remaining),
        f"x-ratelimit-reset-{measure}": f"{max(1, wait)}s",
    }
