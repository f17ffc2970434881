"""Local identity: verify AWS Signature Version 4 the way API Gateway's AWS_IAM auth does.

In AWS, API Gateway verifies the signature and Lambda sees only the caller's ARN. Locally the
gateway recomputes the signature with botocore from the signed headers, the exact URL and the
body, against credentials the local stack generated, and compares in constant time.

Refused: no or malformed `Authorization`; an unknown access key; a scope other than
`<date>/<region>/execute-api/aws4_request`; `X-Amz-Date` more than 5 minutes from now; a body whose
hash is not the one signed (`UNSIGNED-PAYLOAD` included); any signature mismatch.
"""

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from paymaster import names
from paymaster.domain.errors import AuthenticationError
from paymaster.ports import HttpRequest

MAX_SKEW = timedelta(minutes=5)
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/(?P<service>[^/,\s]+)"
    r"/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;_.-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


@dataclass(frozen=True, slots=True)
class LocalCredential:
    secret_access_key: str
    principal_arn: str


def load_local_credentials(path: Path) -> dict[str, LocalCredential]:
    """The access-key table the local stack writes: `{"AKIA...": {"secret": ..., "arn": ...}}`."""
    raw = json.loads(path.read_text())
    return {key: LocalCredential(entry["secret"], entry["arn"]) for key, entry in raw.items()}


class _Recompute(SigV4Auth):  # type: ignore[misc]  # botocore ships no type hints
    """botocore's signer, told which headers the client signed instead of choosing them."""

    def __init__(self, credentials: Credentials, region: str, signed: list[str]) -> None:
        super().__init__(credentials, names.SIGV4_SERVICE, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        chosen = HTTPHeaders()
        for name in self._signed:
            chosen[name] = request.headers.get(name, "")
        return chosen


class SigV4Authenticator:
    def __init__(
        self,
        credentials: Mapping[str, LocalCredential],
        *,
        region: str = names.LOCAL_REGION,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._credentials = credentials
        self._region = region
        self._now = now

    def principal_arn(self, request: HttpRequest) -> str:
        header = request.headers.get("authorization")
        if not header:
            raise AuthenticationError("Missing Authentication Token: sign the request with AWS SigV4 (execute-api).")
        match = _AUTHORIZATION.match(header)
        if match is None:
            raise AuthenticationError("The Authorization header is not an AWS4-HMAC-SHA256 signature.")
        credential = self._credentials.get(match["key"])
        if credential is None:
            raise AuthenticationError("The security token included in the request is invalid.")
        if match["region"] != self._region or match["service"] != names.SIGV4_SERVICE:
            raise AuthenticationError(
                f"Credential should be scoped to region '{self._region}' and service '{names.SIGV4_SERVICE}'."
            )
        timestamp = self._timestamp(request, match["date"])
        signed = match["signed"].split(";")
        if "host" not in signed:
            raise AuthenticationError("The host header must be signed.")

        body_hash = hashlib.sha256(request.body).hexdigest()
        claimed_hash = request.headers.get("x-amz-content-sha256")
        if claimed_hash is not None and claimed_hash != body_hash:
            raise AuthenticationError("The request body does not match its signed hash; sign the payload.")
        aws_request = AWSRequest(
            method=request.method,
            url=request.url,
            headers={name: request.headers.get(name, "") for name in signed},
            data=request.body,
        )
        aws_request.context["timestamp"] = timestamp
        signer = _Recompute(Credentials(match["key"], credential.secret_access_key), self._region, signed)
        string_to_sign = signer.string_to_sign(aws_request, signer.canonical_request(aws_request))
        expected = signer.signature(string_to_sign, aws_request)
        if not hmac.compare_digest(expected, match["signature"]):
            raise AuthenticationError("The request signature we calculated does not match the signature you provided.")
        return credential.principal_arn

    def _timestamp(self, request: HttpRequest, scope_date: str) -> str:
        amz_date = request.headers.get("x-amz-date", "")
        try:
            signed_at = datetime.strptime(amz_date, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
        except ValueError:
            raise AuthenticationError("X-Amz-Date is missing or not in the form YYYYMMDDTHHMMSSZ.") from None
        if amz_date[:8] != scope_date:
            raise AuthenticationError("The credential scope date does not match X-Amz-Date.")
        if abs(self._now() - signed_at) > MAX_SKEW:
            raise AuthenticationError("Signature expired: X-Amz-Date is more than 5 minutes from the server's time.")
        return amz_date
