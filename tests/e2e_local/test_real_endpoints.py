"""`paymaster local --real-endpoint`: a provider served by the endpoint its policy names.

A developer's own OpenAI-compatible server (a vLLM, say) is played by a second fake-providers
server that accepts only one key, started apart from a local stack of its own. Two providers of a
small policy point at it, one taking the key from an environment variable, one from a file; the
demo's providers stay on the stack's fakes.
"""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
import yaml
from openai import OpenAI

from paymaster import names
from paymaster.client import SigV4Auth
from paymaster_local.credentials import session_for
from paymaster_local.fakes import API_KEY_ENV
from paymaster_local.real_endpoints import parse_choice
from paymaster_local.resources import FAKE_API_KEY
from paymaster_local.stack import LocalStack, free_port, local_stack
from tests.policies import demo_raw

DEVELOPER_KEY = "sk-dev-vllm-e2e-5f1c"  # what the developer's server accepts, and nothing else
KEY_VARIABLE = "PM_E2E_DEV_VLLM_KEY"
ENV_MODEL, FILE_MODEL = "meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct"
SEARCH = "search-ranker"


def dev_model(provider: str, model: str) -> dict[str, Any]:
    return {
        "deployments": [{"provider": provider, "model": model}],
        "max_output_tokens": 1000,
        "context_window": 8000,
        "price": {"input": 0, "output": 0, "source": "a server on the developer's machine", "as_of": "2026-12-01"},
    }


@pytest.fixture(scope="module")
def developer_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m paymaster_local.fakes` with its accepted key set, as a developer's vLLM would run."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("developer-server") / "server.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PAYMASTER_")}
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "paymaster_local.fakes", "--port", str(port)],
            env=env | {API_KEY_ENV: DEVELOPER_KEY},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(url + "/_fake/calls", timeout=1)
                    break
                except httpx.TransportError:
                    assert server.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.1)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=10)


@pytest.fixture(scope="module")
def real_stack(tmp_path_factory: pytest.TempPathFactory, developer_server: str) -> Iterator[LocalStack]:
    state = tmp_path_factory.mktemp("real-endpoints-stack")
    raw = demo_raw()
    raw["providers"] |= {
        "dev-vllm": {
            "kind": "openai",
            "base_url": f"{developer_server}/v1",
            "api_key_secret": "paymaster/providers/dev-vllm",
        },
        "dev-vllm-file": {
            "kind": "openai",
            "base_url": f"{developer_server}/v1",
            "api_key_secret": "paymaster/providers/dev-vllm-file",
        },
    }
    raw["models"] |= {"dev-llama": dev_model("dev-vllm", ENV_MODEL), "dev-qwen": dev_model("dev-vllm-file", FILE_MODEL)}
    raw["teams"]["search"]["models"] += ["dev-llama", "dev-qwen"]
    policy_file = state / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    key_file = state / "dev-vllm.key"
    key_file.write_text(DEVELOPER_KEY + "\n")
    choices = [parse_choice(f"dev-vllm=env:{KEY_VARIABLE}"), parse_choice(f"dev-vllm-file=file:{key_file}")]

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_VARIABLE, DEVELOPER_KEY)
        with (
            (state / "gateway.log").open("wb") as log,
            local_stack(
                policy_file, port=free_port(), state_dir=state, gateway_output=log, real_endpoints=choices
            ) as running,
        ):
            yield running


@pytest.fixture
def client(real_stack: LocalStack) -> Iterator[OpenAI]:
    auth = SigV4Auth(session=session_for(real_stack.credentials, SEARCH))
    with OpenAI(
        base_url=real_stack.url + "/v1", api_key="unused", http_client=httpx.Client(auth=auth), max_retries=0
    ) as sdk:
        yield sdk


def models_called(real_stack: LocalStack, developer_server: str) -> dict[str, list[str]]:
    """The provider models each server was called for, in order, since the test began."""
    servers = {"developer": developer_server, "fakes": real_stack.providers_url}
    return {
        name: [call["model"] for call in httpx.get(url + "/_fake/calls").raise_for_status().json()["calls"]]
        for name, url in servers.items()
    }


@pytest.fixture(autouse=True)
def _fresh_call_logs(real_stack: LocalStack, developer_server: str) -> None:
    for url in (developer_server, real_stack.providers_url):
        httpx.delete(url + "/_fake/faults").raise_for_status()


def test_the_developer_server_refuses_the_key_the_fakes_are_given(developer_server: str) -> None:
    refused = httpx.post(
        developer_server + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {FAKE_API_KEY}"},
        json={"model": ENV_MODEL, "messages": [{"role": "user", "content": "hi"}]},
    )

    assert refused.status_code == 401


def test_a_chat_reaches_the_real_endpoint_with_the_key_from_the_environment(
    client: OpenAI, real_stack: LocalStack, developer_server: str
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="dev-llama", messages=[{"role": "user", "content": "hello vllm"}]
    )

    assert raw.parse().choices[0].message.content == "Echo: hello vllm"
    assert raw.headers["x-paymaster-deployment"] == f"dev-vllm/{ENV_MODEL}"
    assert models_called(real_stack, developer_server) == {"developer": [ENV_MODEL], "fakes": []}


def test_a_stream_reaches_the_real_endpoint_with_the_key_from_a_file(
    client: OpenAI, real_stack: LocalStack, developer_server: str
) -> None:
    stream = client.chat.completions.create(
        model="dev-qwen",
        messages=[{"role": "user", "content": "hello from a file"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "Echo: hello from a file"
    assert chunks[-1].usage is not None
    assert models_called(real_stack, developer_server) == {"developer": [FILE_MODEL], "fakes": []}


def test_providers_not_named_stay_on_the_fakes(client: OpenAI, real_stack: LocalStack, developer_server: str) -> None:
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    bedrock = client.chat.completions.create(model="nova-lite", messages=[{"role": "user", "content": "hi"}])

    assert completion.choices[0].message.content == bedrock.choices[0].message.content == "Echo: hi"
    assert models_called(real_stack, developer_server) == {
        "developer": [],
        "fakes": ["gpt-4o-mini", "us.amazon.nova-lite-v1:0"],
    }


def test_each_key_is_stored_under_its_providers_secret_and_the_others_keep_the_fakes_key(
    real_stack: LocalStack,
) -> None:
    secrets = boto3.client(
        "secretsmanager",
        endpoint_url=real_stack.aws_url,
        region_name=names.LOCAL_REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )

    def secret(name: str) -> str:
        return str(secrets.get_secret_value(SecretId=name)["SecretString"])

    assert secret("paymaster/providers/dev-vllm") == DEVELOPER_KEY
    assert secret("paymaster/providers/dev-vllm-file") == DEVELOPER_KEY
    assert secret("paymaster/providers/openai") == FAKE_API_KEY


def test_the_stack_reports_which_providers_go_to_real_endpoints(real_stack: LocalStack, developer_server: str) -> None:
    assert [endpoint.describe() for endpoint in real_stack.real_endpoints] == [
        f"dev-vllm → {developer_server}/v1 (key from env:{KEY_VARIABLE} in secret paymaster/providers/dev-vllm)",
        f"dev-vllm-file → {developer_server}/v1 (key from file:{real_stack.state_dir / 'dev-vllm.key'} "
        "in secret paymaster/providers/dev-vllm-file)",
    ]
