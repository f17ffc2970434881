"""The counter store on fresh tables in the session's serialised moto server."""

from collections.abc import Callable

import httpx
import pytest

from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster_local.resources import COUNTERS_TABLE, create_resources
from tests.policies import policy_with


@pytest.fixture
def dynamodb(aws_url: str, wire_to: Callable[[str], DynamoDBWire]) -> DynamoDBWire:
    """The gateway's DynamoDB client on fresh tables: moto is reset before each test."""
    httpx.post(f"{aws_url}/moto-api/reset").raise_for_status()
    create_resources(aws_url, policy_with([]))
    return wire_to(aws_url)


@pytest.fixture
def store(dynamodb: DynamoDBWire) -> DynamoDBCounterStore:
    return DynamoDBCounterStore(dynamodb, COUNTERS_TABLE)
