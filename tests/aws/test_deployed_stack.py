"""Against a deployed stack, with the caller's own AWS credentials: skipped unless asked for.

    PAYMASTER_AWS_TESTS=1 PAYMASTER_AWS_URL=<the ApiUrl output> [PAYMASTER_AWS_MODEL=nova-lite] \
        .venv/bin/python -m pytest tests/aws

The credentials (the default boto3 chain) must be a principal the policy maps to an app, allowed
`execute-api:Invoke` (README, "Calling from an app"). The chat test makes one real, small
provider call on that app's team — it costs a fraction of a cent and counts against its caps.
"""

import os
import re

import httpx
import pytest
from openai import OpenAI

from paymaster import names
from paymaster.client import SigV4Auth

pytestmark = pytest.mark.aws


@pytest.fixture(scope="module")
def base_url() -> str:
    url = os.environ.get("PAYMASTER_AWS_URL")
    if not url:
        pytest.fail("set PAYMASTER_AWS_URL to the PaymasterGateway stack's ApiUrl output")
    return url.rstrip("/")


@pytest.fixture(scope="module")
def signed(base_url: str) -> httpx.Client:
    """Signed for the region in the URL (https://<id>.execute-api.<region>.amazonaws.com/…), else
    the credentials' own."""
    found = re.search(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com", base_url)
    region = found[1] if found else os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return httpx.Client(auth=SigV4Auth(region), timeout=60)


def test_an_unsigned_call_is_refused_by_api_gateway_before_any_function_runs(base_url: str) -> None:
    response = httpx.get(f"{base_url}/usage", timeout=30)

    assert response.status_code == 403
    # API Gateway's own refusal, in the OpenAI shape the stack's gateway responses give it.
    assert response.json()["error"]["type"] == "MISSING_AUTHENTICATION_TOKEN"


def test_a_signed_caller_sees_its_own_team_s_usage(base_url: str, signed: httpx.Client) -> None:
    response = signed.get(f"{base_url}/usage")

    assert response.status_code == 200, response.text
    usage = response.json()
    assert usage["object"] == "usage"
    assert usage["team"]
    assert usage["app"]
    assert isinstance(usage["rules"], list)


def test_a_signed_chat_completion_is_answered_and_metered(base_url: str, signed: httpx.Client) -> None:
    client = OpenAI(base_url=base_url, api_key="unused", http_client=signed)
    model = os.environ.get("PAYMASTER_AWS_MODEL", "nova-lite")

    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Say OK."}], max_tokens=5
    )
    completion = raw.parse()

    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert completion.usage.total_tokens > 0
    assert float(raw.headers[names.HEADER_COST]) > 0
