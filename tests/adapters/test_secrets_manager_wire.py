"""The thin Secrets Manager client signs as botocore does and answers and fails as boto3 would."""

import json
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from paymaster.adapters.aws_environment import StaticCredentials
from paymaster.adapters.secrets import SecretCache, SecretsManagerWire

NOW = datetime(2026, 11, 29, 18, 25, 38, tzinfo=UTC)


def wire_to(endpoint: str, transport: httpx.BaseTransport | None = None) -> SecretsManagerWire:
    return SecretsManagerWire(
        transport or httpx.HTTPTransport(),
        endpoint_url=endpoint,
        region="us-east-1",
        credentials=StaticCredentials("local", "local"),
        sleep=lambda _: None,
    )


def boto3_client(aws_url: str) -> Any:
    return boto3.client(
        "secretsmanager",
        endpoint_url=aws_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


@pytest.fixture
def aws(aws_url: str) -> str:
    httpx.post(f"{aws_url}/moto-api/reset").raise_for_status()
    return aws_url


@pytest.mark.parametrize("token", [None, "session-token-from-sts"])
def test_signature_is_the_one_botocore_computes(token: str | None) -> None:
    endpoint = "https://secretsmanager.eu-west-1.amazonaws.com"
    secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    payload = json.dumps({"SecretId": "paymaster/providers/openai"}).encode()
    wire = SecretsManagerWire(
        httpx.MockTransport(lambda _: httpx.Response(200, json={})),
        endpoint_url=endpoint,
        region="eu-west-1",
        credentials=StaticCredentials("AKIDEXAMPLE", secret_key, token),
    )
    request = AWSRequest(
        method="POST",
        url=endpoint + "/",
        data=payload,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "secretsmanager.GetSecretValue"},
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        SigV4Auth(Credentials("AKIDEXAMPLE", secret_key, token), "secretsmanager", "eu-west-1").add_auth(request)

    ours = wire.signed_headers("GetSecretValue", payload, NOW)

    assert ours["authorization"] == request.headers["Authorization"]
    assert ours.get("x-amz-security-token") == request.headers.get("X-Amz-Security-Token")


def test_a_secret_reads_as_boto3_reads_it(aws: str) -> None:
    boto3_client(aws).create_secret(Name="paymaster/providers/openai", SecretString="sk-test")

    assert wire_to(aws).get_secret_value(SecretId="paymaster/providers/openai")["SecretString"] == "sk-test"
    assert SecretCache(lambda: wire_to(aws)).get("paymaster/providers/openai") == "sk-test"


def test_a_missing_secret_fails_as_boto3_fails(aws: str) -> None:
    with pytest.raises(ClientError) as theirs:
        boto3_client(aws).get_secret_value(SecretId="nope")
    with pytest.raises(ClientError) as ours:
        wire_to(aws).get_secret_value(SecretId="nope")

    assert ours.value.response["Error"]["Code"] == theirs.value.response["Error"]["Code"]
    assert ours.value.response["Error"]["Message"] == theirs.value.response["Error"]["Message"]
    assert ours.value.operation_name == theirs.value.operation_name == "GetSecretValue"


def test_throttling_is_retried_then_answered() -> None:
    answers = [
        httpx.Response(400, json={"__type": "ThrottlingException", "message": "Rate exceeded"}),
        httpx.Response(200, json={"Name": "k", "SecretString": "sk-test"}),
    ]

    client = wire_to("https://secretsmanager.us-east-1.amazonaws.com", httpx.MockTransport(lambda _: answers.pop(0)))

    assert client.get_secret_value(SecretId="k")["SecretString"] == "sk-test"
