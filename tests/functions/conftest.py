"""Fixtures for the entry-point tests: the sample REST API event, fresh tables, the app."""

import json
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from paymaster.adapters.memory import MemoryCounterStore
from paymaster.adapters.policy_file import load_policy
from paymaster_local.resources import create_resources
from tests.functions.gateway import EVENT, POLICY, RecordingProvider, lambda_entry


@pytest.fixture
def event() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(EVENT.read_text())
    return loaded


@pytest.fixture
def provider() -> RecordingProvider:
    return RecordingProvider()


@pytest.fixture
def aws(aws_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Fresh tables in the session's moto server; boto3 and the gateway pointed at it."""
    httpx.post(f"{aws_url}/moto-api/reset").raise_for_status()
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return create_resources(aws_url, load_policy(POLICY))


@pytest.fixture(params=[True, False], ids=["lambda-one-request-at-a-time", "worker-threads"])
def client(request: pytest.FixtureRequest, provider: RecordingProvider) -> TestClient:
    """The gateway app on the in-memory counter store: what is tested is the entry point."""
    return lambda_entry(load_policy(POLICY), MemoryCounterStore(), provider, one_request_at_a_time=request.param)
