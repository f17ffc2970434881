"""One table from each domain error to its HTTP status and OpenAI error type."""

from typing import Any

from starlette.responses import JSONResponse

from paymaster.domain import errors

_RESPONSES: dict[type[errors.PaymasterError], tuple[int, str]] = {
    errors.AuthenticationError: (403, "authentication_error"),
    errors.UnknownPrincipalError: (403, "permission_error"),
    errors.InvalidRequestError: (400, "invalid_request_error"),
    errors.PayloadTooLargeError: (413, "invalid_request_error"),
    errors.ModelNotFoundError: (404, "invalid_request_error"),
    errors.ProviderRejectedError: (400, "invalid_request_error"),
    errors.ProviderTimeoutError: (504, "server_error"),
    errors.ProviderError: (502, "server_error"),
}


def error_body(message: str, kind: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape, which the openai SDK turns into its typed exceptions."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def status_and_type(error: errors.PaymasterError) -> tuple[int, str]:
    for cls in type(error).__mro__:
        if cls in _RESPONSES:
            return _RESPONSES[cls]
    return 500, "server_error"


def error_response(error: errors.PaymasterError, headers: dict[str, str] | None = None) -> JSONResponse:
    status, kind = status_and_type(error)
    return JSONResponse(error_body(error.message, kind, error.code, error.param), status_code=status, headers=headers)
