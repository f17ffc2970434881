"""The whole local stack, started once per test session and driven by real clients."""

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml
from openai import AsyncOpenAI, OpenAI

from paymaster.client import SigV4Auth
from paymaster_local.credentials import session_for
from paymaster_local.stack import LocalStack, free_port, local_stack
from tests.policies import policy_with

REPO = Path(__file__).resolve().parents[2]
DEMO_POLICY = REPO / "policy" / "demo.yaml"
OUTSIDER = "outsider"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    state = tmp_path_factory.mktemp("local-stack")
    with (
        (state / "gateway.log").open("wb") as log,
        local_stack(
            DEMO_POLICY,
            port=free_port(),
            state_dir=state,
            gateway_output=log,
            unclaimed_principals={OUTSIDER: "arn:aws:iam::999999999999:role/outsider"},
        ) as running,
    ):
        yield running


@contextmanager
def stack_with_rules(rules: list[dict[str, Any]], state: Path) -> Iterator[LocalStack]:
    """A local stack serving the demo's teams, providers and models under `rules`; its policy
    file and logs in `state`."""
    policy_file = state / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(json.loads(policy_with(rules).model_dump_json(exclude_none=True))))
    with (
        (state / "gateway.log").open("wb") as log,
        local_stack(policy_file, port=free_port(), state_dir=state, gateway_output=log) as running,
    ):
        yield running


@pytest.fixture(scope="session")
def profile_session(stack: LocalStack) -> Callable[[str], boto3.Session]:
    """A boto3 session for a profile of the generated shared-credentials file, as an app has."""
    return partial(session_for, stack.credentials)


@pytest.fixture
def signed_http(stack: LocalStack, profile_session: Callable[[str], boto3.Session]) -> Callable[[str], httpx.Client]:
    def client(profile: str) -> httpx.Client:
        return httpx.Client(base_url=stack.url, auth=SigV4Auth(session=profile_session(profile)), timeout=30)

    return client


@pytest.fixture
def openai_for(stack: LocalStack, profile_session: Callable[[str], boto3.Session]) -> Callable[[str], OpenAI]:
    def client(profile: str) -> OpenAI:
        auth = SigV4Auth(session=profile_session(profile))
        return OpenAI(base_url=stack.url + "/v1", api_key="unused", http_client=httpx.Client(auth=auth), max_retries=0)

    return client


@pytest.fixture
def async_openai_for(
    stack: LocalStack, profile_session: Callable[[str], boto3.Session]
) -> Callable[[str], AsyncOpenAI]:
    def client(profile: str) -> AsyncOpenAI:
        auth = SigV4Auth(session=profile_session(profile))
        return AsyncOpenAI(
            base_url=stack.url + "/v1", api_key="unused", http_client=httpx.AsyncClient(auth=auth), max_retries=0
        )

    return client
