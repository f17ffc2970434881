"""A scripted DynamoDB for what the local stand-in cannot do: cancel transactions for conflicts."""

import httpx
from botocore.credentials import Credentials

from paymaster.adapters.dynamodb_wire import DynamoDBWire


def conflicting(times: int) -> tuple[DynamoDBWire, list[int]]:
    """A DynamoDB that cancels the first `times` transactions with TransactionConflict."""
    attempts: list[int] = []
    cancelled = {
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "message": "Transaction cancelled, please refer cancellation reasons for specific reasons",
        "CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}],
    }

    def answer(_: httpx.Request) -> httpx.Response:
        attempts.append(1)
        return httpx.Response(400, json=cancelled) if len(attempts) <= times else httpx.Response(200, json={})

    client = DynamoDBWire(
        httpx.MockTransport(answer),
        endpoint_url="https://dynamodb.us-east-1.amazonaws.com",
        region="us-east-1",
        credentials=Credentials("a", "b"),
    )
    return client, attempts
