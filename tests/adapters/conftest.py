"""A real (moto) DynamoDB behind HTTP, serialised like the local stack's, shared by the session."""

import logging
from collections.abc import Iterator
from threading import Thread
from typing import Any

import boto3
import httpx
import pytest

from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster_local.aws import make_moto_server
from paymaster_local.resources import COUNTERS_TABLE, create_resources
from paymaster_local.stack import free_port
from tests.policies import policy_with


@pytest.fixture(scope="session")
def aws_url() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = make_moto_server("127.0.0.1", port)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


@pytest.fixture
def dynamodb(aws_url: str) -> Any:
    """A DynamoDB client on fresh tables: moto is reset before each test."""
    httpx.post(f"{aws_url}/moto-api/reset").raise_for_status()
    create_resources(aws_url, policy_with([]))
    return boto3.client(
        "dynamodb",
        endpoint_url=aws_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


@pytest.fixture
def store(dynamodb: Any) -> DynamoDBCounterStore:
    return DynamoDBCounterStore(dynamodb, COUNTERS_TABLE)
