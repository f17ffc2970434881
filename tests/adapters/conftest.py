"""The counter store on a fresh counters table in the session's serialised moto server; a
scripted Bedrock endpoint per test module."""

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import httpx
import pytest

from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster_local.resources import COUNTERS_TABLE, create_resources
from tests.adapters.scripted_bedrock import ScriptedBedrock, handler, serve_http
from tests.policies import policy_with


@pytest.fixture(scope="session")
def counters_table(aws_url: str) -> tuple[Any, dict[str, Any]]:
    """A boto3 DynamoDB client on the stand-in, and the counters table's definition as the local
    stack creates it — read back once with DescribeTable, so it is defined in one place."""
    httpx.post(f"{aws_url}/moto-api/reset").raise_for_status()
    create_resources(aws_url, policy_with([]))
    client = boto3.client(
        "dynamodb", endpoint_url=aws_url, region_name="us-east-1", aws_access_key_id="l", aws_secret_access_key="l"
    )
    table = client.describe_table(TableName=COUNTERS_TABLE)["Table"]
    definition = {
        "TableName": COUNTERS_TABLE,
        "BillingMode": table["BillingModeSummary"]["BillingMode"],
        "AttributeDefinitions": table["AttributeDefinitions"],
        "KeySchema": table["KeySchema"],
        "GlobalSecondaryIndexes": [
            {"IndexName": index["IndexName"], "KeySchema": index["KeySchema"], "Projection": index["Projection"]}
            for index in table["GlobalSecondaryIndexes"]
        ],
    }
    return client, definition


@pytest.fixture
def dynamodb(
    aws_url: str, wire_to: Callable[[str], DynamoDBWire], counters_table: tuple[Any, dict[str, Any]]
) -> DynamoDBWire:
    """The gateway's DynamoDB client on a fresh counters table: moto is reset before each test
    (which makes the stand-in forget its client tokens too) and the table created again. Only
    that table: the whole local stack costs ten times as much to create."""
    client, definition = counters_table
    httpx.post(f"{aws_url}/moto-api/reset").raise_for_status()
    client.create_table(**definition)
    return wire_to(aws_url)


@pytest.fixture
def store(dynamodb: DynamoDBWire) -> DynamoDBCounterStore:
    return DynamoDBCounterStore(dynamodb, COUNTERS_TABLE)


@pytest.fixture(scope="module")
def scripted_server() -> Iterator[tuple[str, list[ScriptedBedrock]]]:
    """A scripted Bedrock endpoint (`scripted_bedrock`): its URL, and the script it follows."""
    current = [ScriptedBedrock()]
    with serve_http(handler(current)) as url:
        yield url, current


@pytest.fixture
def scripted(scripted_server: tuple[str, list[ScriptedBedrock]]) -> Iterator[ScriptedBedrock]:
    """A fresh script for the endpoint: queue replies on it, read what it received."""
    scripted_server[1][0] = fresh = ScriptedBedrock()
    yield fresh
    fresh.release.set()
