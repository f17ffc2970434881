"""Identity in AWS: the caller's ARN as API Gateway's AWS_IAM authorizer established it.

Lambda Web Adapter forwards the REST API request context as JSON in `x-amzn-request-context`
and overwrites any header of that name the client sent, so the ARN cannot be forged from outside.
"""

import json
from collections.abc import Mapping

from paymaster import names
from paymaster.domain.errors import AuthenticationError
from paymaster.ports import HttpRequest


class RequestContextAuthenticator:
    def principal_arn(self, request: HttpRequest) -> str:
        raw = request.headers.get(names.HEADER_REQUEST_CONTEXT)
        if raw is None:
            raise AuthenticationError("No API Gateway request context: the gateway must be called through API Gateway.")
        try:
            arn = json.loads(raw)["identity"]["userArn"]
        except (ValueError, KeyError, TypeError):
            raise AuthenticationError("The API Gateway request context carries no IAM identity.") from None
        if not isinstance(arn, str) or not arn:
            raise AuthenticationError("The API Gateway request context carries no IAM identity.")
        return arn


def request_id(headers: Mapping[str, str]) -> str | None:
    """API Gateway's request id, when the request came through it."""
    raw = headers.get(names.HEADER_REQUEST_CONTEXT)
    if raw is None:
        return None
    try:
        value = json.loads(raw).get("requestId")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
