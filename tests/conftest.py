import os
from collections.abc import Callable, Iterator
from threading import Thread

import httpx
import pytest
from botocore.credentials import Credentials

from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster_local.aws import make_moto_server
from paymaster_local.stack import free_port


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def aws_url() -> Iterator[str]:
    """moto over HTTP with DynamoDB requests serialised, as the local stack runs it."""
    port = free_port()
    server = make_moto_server("127.0.0.1", port)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


@pytest.fixture(scope="session")
def wire_to() -> Callable[[str], DynamoDBWire]:
    """The gateway's DynamoDB client for an endpoint, with throwaway credentials."""

    def wire(endpoint: str) -> DynamoDBWire:
        return DynamoDBWire(
            httpx.HTTPTransport(),
            endpoint_url=endpoint,
            timeout=httpx.Timeout(2.0, connect=0.5),
            region="us-east-1",
            credentials=Credentials("local", "local"),
            max_attempts=1,
        )

    return wire


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `aws` need a deployed stack and credentials: skipped unless PAYMASTER_AWS_TESTS=1."""
    if os.environ.get("PAYMASTER_AWS_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="needs a deployed stack: PAYMASTER_AWS_TESTS=1 PAYMASTER_AWS_URL=… (tests/aws)")
    for item in items:
        if item.get_closest_marker("aws"):
            item.add_marker(skip)
