"""A fresh account: a provider's API-key secret absent, another's empty, through the whole local
stack (signed openai SDK → gateway process → moto's Secrets Manager → fake providers).

Neither is a 500 nor a charge: the route moves to the next deployment, and with none left the
caller gets a 502 in OpenAI's shape with the hold released. `paymaster secrets set` fills them.
"""

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import boto3
import openai
import pytest
from openai import OpenAI

from paymaster.adapters.policy_file import load_policy
from paymaster.cli import check_secrets, set_secret
from paymaster_local.stack import LocalStack, free_port, local_stack
from tests.e2e_local.conftest import DEMO_POLICY
from tests.e2e_local.test_faults import (
    GPT,
    NOVA,
    QUESTION,
    SEARCH,
    SONNET_BEDROCK,
    SUPPORT,
    Fakes,
    budget,
    client,
    fakes,
)

__all__ = ["budget", "client", "fakes"]  # the fixtures, shared with test_faults

OPENAI_SECRET = "paymaster/providers/openai"
ANTHROPIC_SECRET = "paymaster/providers/anthropic"


def secrets_client(stack: LocalStack) -> Any:
    return boto3.client(
        "secretsmanager",
        endpoint_url=stack.aws_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The demo policy's stack with OpenAI's secret deleted and Anthropic's blank, before any call."""
    state = tmp_path_factory.mktemp("missing-secrets-stack")
    with (
        (state / "gateway.log").open("wb") as log,
        local_stack(DEMO_POLICY, port=free_port(), state_dir=state, gateway_output=log) as running,
    ):
        secrets = secrets_client(running)
        secrets.delete_secret(SecretId=OPENAI_SECRET, ForceDeleteWithoutRecovery=True)
        secrets.put_secret_value(SecretId=ANTHROPIC_SECRET, SecretString="   ")
        yield running


def test_deploy_s_check_names_the_absent_and_the_empty_secret(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys  # noqa: PLC0415

    assert check_secrets(secrets_client(stack), load_policy(DEMO_POLICY), out=sys.stdout) == 1
    lines = capsys.readouterr().out.splitlines()
    assert f"missing  {OPENAI_SECRET}  (provider openai)" in lines
    assert f"empty    {ANTHROPIC_SECRET}  (provider anthropic)" in lines


def test_an_absent_secret_falls_back_and_only_the_fallback_is_charged(
    client: Callable[[str], OpenAI], fakes: Fakes, budget: Callable[[str, str], tuple[Decimal, Decimal]]
) -> None:
    before, _ = budget(SEARCH, "search-monthly")

    answer = client(SEARCH).chat.completions.with_raw_response.create(model=GPT, messages=QUESTION, max_tokens=20)

    assert answer.status_code == 200
    assert answer.headers["x-paymaster-deployment"] == f"bedrock-us-east-1/{NOVA}"
    assert fakes.calls() == [("bedrock", NOVA, None)]  # OpenAI never called
    used, reserved = budget(SEARCH, "search-monthly")
    assert used > before
    assert reserved == 0


def test_an_empty_secret_falls_back_to_the_next_deployment(
    client: Callable[[str], OpenAI], fakes: Fakes, budget: Callable[[str, str], tuple[Decimal, Decimal]]
) -> None:
    answer = client(SUPPORT).chat.completions.with_raw_response.create(
        model="claude-sonnet-4", messages=QUESTION, max_tokens=20
    )

    assert answer.status_code == 200
    assert answer.headers["x-paymaster-deployment"] == f"bedrock-us-east-1/{SONNET_BEDROCK}"
    assert fakes.calls() == [("bedrock", SONNET_BEDROCK, None)]
    assert budget(SUPPORT, "support-monthly")[1] == 0


def test_with_no_deployment_left_the_caller_gets_a_502_and_nothing_is_held_or_charged(
    client: Callable[[str], OpenAI], fakes: Fakes, budget: Callable[[str, str], tuple[Decimal, Decimal]]
) -> None:
    before = budget(SEARCH, "search-monthly")
    fakes.fail(NOVA, {"status": 503})  # the fallback down too: the absent key is all that is left

    with pytest.raises(openai.APIStatusError) as raised:
        client(SEARCH).chat.completions.create(model=GPT, messages=QUESTION, max_tokens=20)

    assert raised.value.status_code == 502
    body = raised.value.response.json()["error"]
    assert set(body) >= {"message", "type", "code"}
    assert budget(SEARCH, "search-monthly") == before


def test_a_key_set_with_the_cli_is_used_once_the_failure_is_forgotten(stack: LocalStack) -> None:
    secrets = secrets_client(stack)
    assert set_secret(secrets, OPENAI_SECRET, "sk-new") == "created"
    assert set_secret(secrets, ANTHROPIC_SECRET, "sk-ant-new") == "updated"
    assert secrets.get_secret_value(SecretId=OPENAI_SECRET)["SecretString"] == "sk-new"
    assert check_secrets(secrets, load_policy(DEMO_POLICY)) == 0
