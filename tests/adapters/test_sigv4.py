"""The local verifier accepts exactly what API Gateway's AWS_IAM auth accepts."""

import hashlib
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from botocore.auth import SigV4Auth as BotocoreSigV4
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from paymaster.adapters.sigv4 import LocalCredential, SigV4Authenticator
from paymaster.client import SigV4Auth
from paymaster.domain.errors import AuthenticationError
from paymaster.ports import HttpRequest

KEY, SECRET = "AKIAEXAMPLEKEY000001", "secret-of-the-search-team"
ARN = "arn:aws:sts::111111111111:assumed-role/search-ranker/paymaster-local"
URL = "http://127.0.0.1:8787/v1/chat/completions"
BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'


def verifier(now: datetime | None = None) -> SigV4Authenticator:
    return SigV4Authenticator({KEY: LocalCredential(SECRET, ARN)}, now=lambda: now or datetime.now(UTC))


def signed_with_client_helper(url: str = URL, body: bytes = BODY, token: str | None = None) -> HttpRequest:
    """Signs with the helper apps use, and returns the request as the server would see it."""
    request = httpx.Request("POST", url, content=body, headers={"content-type": "application/json"})
    flow = SigV4Auth(region="us-east-1", credentials=Credentials(KEY, SECRET, token)).sync_auth_flow(request)
    sent = next(flow)
    return HttpRequest("POST", str(sent.url), {k.lower(): v for k, v in sent.headers.items()}, sent.content)


def test_request_signed_by_the_client_helper_verifies_as_its_principal() -> None:
    assert verifier().principal_arn(signed_with_client_helper()) == ARN


def test_query_string_and_session_token_are_part_of_the_signature() -> None:
    request = signed_with_client_helper(url=URL + "?b=2&a=1", token="session-token")

    assert "x-amz-security-token" in request.headers
    assert verifier().principal_arn(request) == ARN
    with pytest.raises(AuthenticationError):
        verifier().principal_arn(HttpRequest(request.method, URL + "?b=3&a=1", request.headers, request.body))


def test_client_that_signs_every_header_and_the_payload_hash_verifies() -> None:
    """curl --aws-sigv4 and others sign more headers, x-amz-content-sha256 included."""
    headers = {
        "content-type": "application/json",
        "user-agent": "curl/8.5.0",
        "x-amz-content-sha256": hashlib.sha256(BODY).hexdigest(),
    }
    aws = AWSRequest(method="POST", url=URL, data=BODY, headers=headers)
    BotocoreSigV4(Credentials(KEY, SECRET), "execute-api", "us-east-1").add_auth(aws)
    arrived = {k.lower(): v for k, v in aws.headers.items()} | {"host": "127.0.0.1:8787"}
    request = HttpRequest("POST", URL, arrived, BODY)

    assert verifier().principal_arn(request) == ARN


def test_unsigned_payload_is_refused_because_the_body_would_be_unprotected() -> None:
    aws = AWSRequest(method="POST", url=URL, data=BODY, headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    BotocoreSigV4(Credentials(KEY, SECRET), "execute-api", "us-east-1").add_auth(aws)
    arrived = {k.lower(): v for k, v in aws.headers.items()} | {"host": "127.0.0.1:8787"}
    request = HttpRequest("POST", URL, arrived, BODY)

    with pytest.raises(AuthenticationError, match="signed hash"):
        verifier().principal_arn(request)


@pytest.mark.parametrize("change", ["body", "method", "path", "signed header"])
def test_any_change_after_signing_breaks_the_signature(change: str) -> None:
    request = signed_with_client_helper()
    headers = dict(request.headers)
    if change == "signed header":
        headers["content-type"] = "text/plain"
    tampered = HttpRequest(
        "PUT" if change == "method" else request.method,
        URL.replace("chat", "chat2") if change == "path" else request.url,
        headers,
        request.body + b" " if change == "body" else request.body,
    )

    with pytest.raises(AuthenticationError, match="does not match"):
        verifier().principal_arn(tampered)


def test_signature_within_five_minutes_of_server_time_verifies_either_way() -> None:
    request = signed_with_client_helper()
    signed_at = datetime.strptime(request.headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)

    assert verifier(now=signed_at + timedelta(minutes=4, seconds=59)).principal_arn(request) == ARN
    assert verifier(now=signed_at - timedelta(minutes=4, seconds=59)).principal_arn(request) == ARN
    with pytest.raises(AuthenticationError, match="expired"):
        verifier(now=signed_at + timedelta(minutes=5, seconds=1)).principal_arn(request)
    with pytest.raises(AuthenticationError, match="expired"):
        verifier(now=signed_at - timedelta(minutes=5, seconds=1)).principal_arn(request)


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "Missing Authentication Token"),
        ("Bearer sk-123", "not an AWS4-HMAC-SHA256"),
        (
            "AWS4-HMAC-SHA256 Credential=AKIAUNKNOWN000000000/20261129/us-east-1/execute-api/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
            "security token included in the request is invalid",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={KEY}/20261129/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
            "scoped to region 'us-east-1' and service 'execute-api'",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={KEY}/20261129/us-east-1/execute-api/aws4_request, "
            "SignedHeaders=x-amz-date, Signature=" + "0" * 64,
            "host header must be signed",
        ),
    ],
)
def test_malformed_or_foreign_authorization_is_refused(authorization: str | None, message: str) -> None:
    headers = {"host": "127.0.0.1:8787", "x-amz-date": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")}
    if authorization:
        headers["authorization"] = authorization.replace("20261129", headers["x-amz-date"][:8])

    with pytest.raises(AuthenticationError, match=message):
        verifier().principal_arn(HttpRequest("POST", URL, headers, BODY))
