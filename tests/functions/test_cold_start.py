"""A cold start builds only what the first request needs: no boto3, no botocore session, no
command-line modules; a Bedrock client is made at its deployment's first call, once, and its
calls load none of botocore's client machinery."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from paymaster import composition, names
from paymaster.adapters.bedrock_runtime import BedrockRuntimeWire
from paymaster.adapters.policy_file import load_policy
from paymaster.adapters.settings import Settings
from paymaster_local.fakes import serve_in_thread
from paymaster_local.fakes.bedrock_api import create_bedrock_app
from tests.contract.recordings import boto3_answer, chat_call

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "policy" / "demo.yaml"
# What a cold start used to import for nothing the first request needs (docs/BENCHMARKS.md).
NOT_AT_COLD_START = ["boto3", "botocore.session", "botocore.credentials", "s3transfer", "urllib3", "rich", "pygments"]
# What a Bedrock deployment's first calls used to import: botocore's client and its HTTP stack.
NOT_ON_BEDROCK_CALLS = [
    "boto3",
    "botocore.session",
    "botocore.client",
    "botocore.endpoint",
    "botocore.config",
    "botocore.credentials",
    "urllib3",
    "urllib3.connectionpool",
]


def lambda_environment(home: Path) -> dict[str, str]:
    """The gateway function's environment in Lambda (the CDK app's settings, the role's credentials)."""
    python_settings = {name: value for name, value in os.environ.items() if name.startswith("PYTHON")}
    return python_settings | {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "AWS_REGION": "eu-central-1",
        "AWS_ACCESS_KEY_ID": "ASIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "token",
        names.ENV_POLICY_FILE: str(POLICY),
        names.ENV_COUNTERS_TABLE: "counters",
        names.ENV_LEDGER_TABLE: "ledger",
        names.ENV_SETTLEMENT_QUEUE_URL: "https://sqs.eu-central-1.amazonaws.com/111111111111/settlements",
        names.ENV_EVENT_BUS: "paymaster-events",
        names.ENV_IDENTITY: "request-context",
        names.ENV_ONE_REQUEST_AT_A_TIME: "true",
    }


def test_building_the_lambda_app_imports_no_aws_sdk_session_and_no_cli_modules(tmp_path: Path) -> None:
    script = (
        "import json, sys\n"
        "from paymaster.composition import gateway_app\n"
        "gateway_app()\n"
        f"print(json.dumps([name for name in {NOT_AT_COLD_START!r} if sys.modules.get(name)]))\n"
    )

    run = subprocess.run(
        [sys.executable, "-c", script], env=lambda_environment(tmp_path), capture_output=True, text=True, check=True
    )

    assert json.loads(run.stdout) == []


def test_a_bedrock_deployment_s_calls_import_no_botocore_session_client_or_urllib3(tmp_path: Path) -> None:
    """Converse, ConverseStream and InvokeModel through the providers the composition builds, in a
    process as Lambda starts it: botocore's client machinery and urllib3 never load."""
    chat = {"model": "nova-lite", "messages": [{"role": "user", "content": "hello"}]}
    script = (
        "import json, os, sys\n"
        "from paymaster.composition import build_providers\n"
        "from paymaster.adapters.policy_file import load_policy\n"
        "from paymaster.adapters.settings import Settings\n"
        "from paymaster.domain.chat import ChatRequest\n"
        "from paymaster.domain.embeddings import EmbeddingRequest\n"
        "from paymaster.domain.policy import Deployment\n"
        "from paymaster.ports import EmbeddingCall, ProviderCall\n"
        "settings = Settings.from_environ(os.environ)\n"
        "chat, embeddings = build_providers(load_policy(settings.policy_file), settings)\n"
        "nova = Deployment(provider='bedrock-us-east-1', model='us.amazon.nova-lite-v1:0')\n"
        f"call = ProviderCall(request=ChatRequest.model_validate({chat!r}), deployment=nova, max_output_tokens=8)\n"
        "chat['bedrock-us-east-1'].complete(call)\n"
        "list(chat['bedrock-us-east-1'].stream(call))\n"
        "titan = Deployment(provider='bedrock-us-east-1', model='amazon.titan-embed-text-v2:0')\n"
        "request = EmbeddingRequest.model_validate({'model': 'titan', 'input': ['a', 'b']})\n"
        "embeddings['bedrock-us-east-1'].embed(EmbeddingCall(request=request, deployment=titan))\n"
        f"print(json.dumps([name for name in {NOT_ON_BEDROCK_CALLS!r} if sys.modules.get(name)]))\n"
    )
    with serve_in_thread(create_bedrock_app(chunk_delay_s=0)) as fake:
        environment = lambda_environment(tmp_path) | {"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": fake}
        run = subprocess.run(
            [sys.executable, "-c", script], env=environment, capture_output=True, text=True, check=True
        )

    assert json.loads(run.stdout) == []


def test_a_bedrock_client_is_made_at_its_deployment_s_first_call_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    built: list[dict[str, Any]] = []

    class RecordingWire(BedrockRuntimeWire):
        def __init__(self, transport: httpx.BaseTransport, **options: Any) -> None:
            built.append(options)
            super().__init__(transport, **options)

        def converse(self, **arguments: Any) -> dict[str, Any]:
            return boto3_answer("Converse", "bedrock/converse_response_text.json")

    monkeypatch.setattr(composition, "BedrockRuntimeWire", RecordingWire)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_USE_FIPS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(policy_file=POLICY, counters_table="counters", settlement_queue_url="https://sqs.local/q")
    chat, _ = composition.build_providers(load_policy(POLICY), settings)

    assert built == []

    call = chat_call("bedrock/converse_request_expected.json", "bedrock-us-west-2")
    chat["bedrock-us-west-2"].complete(call)
    chat["bedrock-us-west-2"].complete(call)

    (options,) = built
    assert options["region"] == "us-west-2"
    assert options["endpoint_url"] == "https://bedrock-runtime.us-west-2.amazonaws.com"
    assert options["credentials"].get_frozen_credentials().access_key == "AKIDEXAMPLE"
    assert options["timeout"] == httpx.Timeout(30, connect=2)  # the provider's timeouts in policy/demo.yaml
