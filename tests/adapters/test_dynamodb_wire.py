"""The thin DynamoDB client signs as botocore does and fails as a boto3 client would."""

import json
from datetime import UTC, datetime
from unittest import mock

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError

from paymaster.adapters.dynamodb_wire import CONTENT_TYPE, DynamoDBWire

ENDPOINT = "https://dynamodb.eu-central-1.amazonaws.com"
NOW = datetime(2026, 11, 29, 18, 25, 38, tzinfo=UTC)


def wire(handler: httpx.MockTransport | None = None, token: str | None = None, attempts: int = 3) -> DynamoDBWire:
    return DynamoDBWire(
        handler or httpx.MockTransport(lambda _: httpx.Response(200, json={})),
        endpoint_url=ENDPOINT,
        region="eu-central-1",
        credentials=Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token),
        max_attempts=attempts,
        sleep=lambda _: None,
    )


def botocore_signature(payload: bytes, token: str | None) -> dict[str, str]:
    request = AWSRequest(
        method="POST",
        url=ENDPOINT + "/",
        data=payload,
        headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": "DynamoDB_20120810.TransactWriteItems"},
    )
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        SigV4Auth(credentials.get_frozen_credentials(), "dynamodb", "eu-central-1").add_auth(request)
    return {name.lower(): value for name, value in request.headers.items()}


@pytest.mark.parametrize("token", [None, "session-token-from-sts"])
def test_signature_is_the_one_botocore_computes(token: str | None) -> None:
    payload = json.dumps({"TransactItems": [{"Put": {"TableName": "t"}}]}).encode()

    ours = wire(token=token).signed_headers("TransactWriteItems", payload, NOW)
    theirs = botocore_signature(payload, token)

    assert ours["authorization"] == theirs["authorization"]
    assert ours["x-amz-date"] == theirs["x-amz-date"]
    assert ours.get("x-amz-security-token") == theirs.get("x-amz-security-token")


def test_cancelled_transaction_is_a_client_error_with_its_reasons() -> None:
    body = {
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "message": "Transaction cancelled",
        "CancellationReasons": [{"Code": "None"}, {"Code": "ConditionalCheckFailed", "Item": {"c": {"N": "5"}}}],
    }
    client = wire(httpx.MockTransport(lambda _: httpx.Response(400, json=body, headers={"x-amzn-requestid": "R1"})))

    with pytest.raises(ClientError) as raised:
        client.transact_write_items(TransactItems=[])

    assert raised.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert raised.value.response["CancellationReasons"] == body["CancellationReasons"]  # type: ignore[typeddict-item]
    assert raised.value.response["ResponseMetadata"]["RequestId"] == "R1"


def test_throttling_is_retried_then_reported() -> None:
    calls: list[str] = []
    throttled = {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException", "message": "slow down"}

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["x-amz-target"])
        return httpx.Response(400, json=throttled) if len(calls) < 3 else httpx.Response(200, json={"Items": []})

    assert wire(httpx.MockTransport(answer)).query(TableName="t") == {"Items": []}
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(ClientError, match="ThrottlingException"):
        wire(httpx.MockTransport(answer), attempts=2).query(TableName="t")


def test_validation_error_is_not_retried() -> None:
    calls: list[int] = []
    invalid = {"__type": "com.amazon.coral.validate#ValidationException", "message": "bad"}

    def answer(_: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(400, json=invalid)

    with pytest.raises(ClientError, match="ValidationException"):
        wire(httpx.MockTransport(answer)).batch_get_item(RequestItems={})
    assert len(calls) == 1


def test_unreachable_endpoint_is_botocore_s_connection_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(EndpointConnectionError):
        wire(httpx.MockTransport(refuse)).query(TableName="t")


def test_no_free_connection_in_time_is_a_connect_timeout_the_request_was_never_sent() -> None:
    def busy(request: httpx.Request) -> httpx.Response:
        raise httpx.PoolTimeout("every connection of the pool is in use", request=request)

    with pytest.raises(ConnectTimeoutError):
        wire(httpx.MockTransport(busy), attempts=1).query(TableName="t")
