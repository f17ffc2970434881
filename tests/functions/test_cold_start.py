"""A cold start builds only what the first request needs: no boto3, no botocore session, no
command-line modules; a Bedrock client is made at its deployment's first call, once."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from paymaster import composition, names
from paymaster.adapters import aws_environment
from paymaster.adapters.policy_file import load_policy
from paymaster.adapters.settings import Settings
from tests.contract.recordings import StubBedrockRuntime, boto3_answer, chat_call

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "policy" / "demo.yaml"
# What a cold start used to import for nothing the first request needs (docs/BENCHMARKS.md).
NOT_AT_COLD_START = ["boto3", "botocore.session", "botocore.credentials", "s3transfer", "urllib3", "rich", "pygments"]


def test_building_the_lambda_app_imports_no_aws_sdk_session_and_no_cli_modules(tmp_path: Path) -> None:
    python_settings = {name: value for name, value in os.environ.items() if name.startswith("PYTHON")}
    lambda_environment = python_settings | {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AWS_REGION": "eu-central-1",
        "AWS_ACCESS_KEY_ID": "ASIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "token",
        names.ENV_POLICY_FILE: str(POLICY),
        names.ENV_COUNTERS_TABLE: "counters",
        names.ENV_SETTLEMENT_QUEUE_URL: "https://sqs.eu-central-1.amazonaws.com/111111111111/settlements",
        names.ENV_EVENT_BUS: "paymaster-events",
        names.ENV_IDENTITY: "request-context",
        names.ENV_ONE_REQUEST_AT_A_TIME: "true",
    }
    script = (
        "import json, sys\n"
        "from paymaster.composition import gateway_app\n"
        "gateway_app()\n"
        f"print(json.dumps([name for name in {NOT_AT_COLD_START!r} if sys.modules.get(name)]))\n"
    )

    run = subprocess.run(
        [sys.executable, "-c", script], env=lambda_environment, capture_output=True, text=True, check=True
    )

    assert json.loads(run.stdout) == []


class RecordingSession:
    """botocore's session as the composition uses it: `create_client` is recorded."""

    def __init__(self) -> None:
        self.created: list[tuple[str, dict[str, Any]]] = []

    def create_client(self, service: str, **kwargs: Any) -> StubBedrockRuntime:
        self.created.append((service, kwargs))
        return StubBedrockRuntime(answer=boto3_answer("Converse", "bedrock/converse_response_text.json"))


def test_a_bedrock_client_is_made_at_its_deployment_s_first_call_once(monkeypatch: pytest.MonkeyPatch) -> None:
    session = RecordingSession()
    monkeypatch.setattr(aws_environment, "botocore_session", lambda: session)
    settings = Settings(policy_file=POLICY, counters_table="counters", settlement_queue_url="https://sqs.local/q")
    chat, _ = composition.build_providers(load_policy(POLICY), settings)

    assert session.created == []

    call = chat_call("bedrock/converse_request_expected.json", "bedrock-us-west-2")
    chat["bedrock-us-west-2"].complete(call)
    chat["bedrock-us-west-2"].complete(call)

    ((service, options),) = session.created
    assert service == "bedrock-runtime"
    assert options["region_name"] == "us-west-2"
    assert options["config"].read_timeout == 30  # the provider's first_byte_s in policy/demo.yaml
