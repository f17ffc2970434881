"""What the gateway answers a request it will not serve: a 4xx in OpenAI's error shape, never a 500."""

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from unittest import mock

import boto3
import httpx
import openai
import pytest
from botocore.auth import SigV4Auth as BotocoreSigV4
from botocore.awsrequest import AWSRequest
from openai import OpenAI

from paymaster_local.stack import LocalStack
from tests.e2e_local.conftest import OUTSIDER

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def signed(
    stack: LocalStack,
    session: boto3.Session,
    body: bytes,
    *,
    region: str = "us-east-1",
    at: datetime | None = None,
) -> dict[str, str]:
    request = AWSRequest(method="POST", url=stack.url + CHAT, data=body, headers={"content-type": "application/json"})
    signer = BotocoreSigV4(session.get_credentials().get_frozen_credentials(), "execute-api", region)
    if at is None:
        signer.add_auth(request)
    else:
        with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
            signer.add_auth(request)
    return dict(request.headers.items())


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert error["message"]
    return dict(error)


def test_unsigned_request_is_refused(stack: LocalStack) -> None:
    response = httpx.post(stack.url + CHAT, json=BODY)

    error = assert_error(response, 403, "invalid_signature")
    assert error["type"] == "authentication_error"


def test_wrong_secret_is_refused(stack: LocalStack) -> None:
    key_id, _ = stack.credentials.access_keys["search-ranker"]
    impostor = boto3.Session(aws_access_key_id=key_id, aws_secret_access_key="not-the-secret")
    body = json.dumps(BODY).encode()

    response = httpx.post(stack.url + CHAT, content=body, headers=signed(stack, impostor, body))

    error = assert_error(response, 403, "invalid_signature")
    assert "does not match" in str(error["message"])


def test_tampered_body_is_refused(stack: LocalStack, profile_session: Callable[[str], boto3.Session]) -> None:
    body = json.dumps(BODY).encode()
    headers = signed(stack, profile_session("search-ranker"), body)
    tampered = body.replace(b"gpt-4o-mini", b"nova-lite\x20\x20")

    response = httpx.post(stack.url + CHAT, content=tampered, headers=headers)

    assert_error(response, 403, "invalid_signature")


def test_signature_older_than_five_minutes_is_refused(
    stack: LocalStack, profile_session: Callable[[str], boto3.Session]
) -> None:
    body = json.dumps(BODY).encode()
    headers = signed(stack, profile_session("search-ranker"), body, at=datetime.now(UTC) - timedelta(minutes=6))

    response = httpx.post(stack.url + CHAT, content=body, headers=headers)

    error = assert_error(response, 403, "invalid_signature")
    assert "expired" in str(error["message"]).lower()


def test_signature_for_another_region_is_refused(
    stack: LocalStack, profile_session: Callable[[str], boto3.Session]
) -> None:
    body = json.dumps(BODY).encode()
    headers = signed(stack, profile_session("search-ranker"), body, region="eu-west-1")

    response = httpx.post(stack.url + CHAT, content=body, headers=headers)

    assert_error(response, 403, "invalid_signature")


def test_valid_signature_from_a_principal_no_team_claims_is_refused(
    signed_http: Callable[[str], httpx.Client],
) -> None:
    response = signed_http(OUTSIDER).post(CHAT, json=BODY)

    error = assert_error(response, 403, "unknown_principal")
    assert error["type"] == "permission_error"
    assert "999999999999:role/outsider" in str(error["message"])


def test_malformed_json_is_a_400(signed_http: Callable[[str], httpx.Client]) -> None:
    response = signed_http("search-ranker").post(
        CHAT, content=b'{"model": "gpt-4o-mini", "messages": [', headers={"content-type": "application/json"}
    )

    error = assert_error(response, 400, "invalid_request")
    assert error["type"] == "invalid_request_error"


def test_missing_messages_is_a_400_naming_the_field(openai_for: Callable[[str], OpenAI]) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        openai_for("search-ranker").post("/chat/completions", body={"model": "gpt-4o-mini"}, cast_to=httpx.Response)

    assert raised.value.param == "messages"  # type: ignore[attr-defined]
    assert raised.value.code == "invalid_request"


def test_unknown_model_is_a_404(openai_for: Callable[[str], OpenAI]) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        openai_for("search-ranker").chat.completions.create(
            model="gpt-9-imaginary", messages=[{"role": "user", "content": "hi"}]
        )

    assert raised.value.code == "model_not_found"


def test_model_the_team_may_not_use_is_a_404(openai_for: Callable[[str], OpenAI]) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        openai_for("search-ranker").chat.completions.create(
            model="claude-haiku", messages=[{"role": "user", "content": "hi"}]
        )

    assert raised.value.code == "model_not_found"


def test_body_over_the_limit_is_a_413(signed_http: Callable[[str], httpx.Client]) -> None:
    huge = "x" * (4 * 1024 * 1024)
    response = signed_http("search-ranker").post(
        CHAT, json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": huge}]}
    )

    assert_error(response, 413, "payload_too_large")


def test_unknown_route_is_a_404_in_openai_shape(signed_http: Callable[[str], httpx.Client]) -> None:
    response = signed_http("search-ranker").get("/v1/nothing-here")

    assert_error(response, 404, "not_found")
