"""`paymaster local --real-endpoint`: parsing, checks against the policy, and what is shown."""

import signal
from pathlib import Path
from typing import Any

import pytest

from paymaster import cli
from paymaster.domain.policy import Policy
from paymaster_local.cli import banner
from paymaster_local.credentials import LocalCredentialFiles
from paymaster_local.real_endpoints import (
    KeySource,
    RealEndpoint,
    RealEndpointChoice,
    RealEndpointError,
    parse_choice,
    resolve,
)
from paymaster_local.stack import LocalStack
from tests.policies import DEMO, demo_raw

KEY = "sk-test-0123456789"
OLLAMA_URL = "http://127.0.0.1:11434/v1"


@pytest.fixture
def policy() -> Policy:
    """The demo policy plus a keyless Ollama and a second provider sharing OpenAI's secret."""
    raw: dict[str, Any] = demo_raw()
    raw["providers"] |= {
        "ollama": {"kind": "openai", "base_url": OLLAMA_URL},
        "openai-eu": {
            "kind": "openai",
            "base_url": "https://eu.api.openai.com/v1",
            "api_key_secret": "paymaster/providers/openai",
        },
    }
    return Policy.model_validate(raw)


def choices(*texts: str) -> list[RealEndpointChoice]:
    return [parse_choice(text) for text in texts]


# Parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ollama", RealEndpointChoice("ollama", None)),
        ("openai=env:OPENAI_API_KEY", RealEndpointChoice("openai", KeySource("env", "OPENAI_API_KEY"))),
        ("anthropic=file:~/.keys/anthropic", RealEndpointChoice("anthropic", KeySource("file", "~/.keys/anthropic"))),
        ("openai=file:/keys/a=b:c", RealEndpointChoice("openai", KeySource("file", "/keys/a=b:c"))),
    ],
)
def test_a_choice_names_a_provider_and_where_its_key_is(text: str, expected: RealEndpointChoice) -> None:
    assert parse_choice(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "'' is not NAME[=env:VAR|file:PATH]"),
        ("=env:KEY", "'=env:KEY' is not NAME[=env:VAR|file:PATH]"),
        ("openai=", "'openai=': the key source is env:VAR or file:PATH, not ''"),
        ("openai=env:", "'openai=env:': the key source is env:VAR or file:PATH, not 'env:'"),
        ("openai=file:", "'openai=file:': the key source is env:VAR or file:PATH, not 'file:'"),
        (
            "openai=vault:prod/key",
            "'openai=vault:prod/key': the key source is env:VAR or file:PATH, not 'vault:prod/key'",
        ),
        ("openai=OPENAI_API_KEY", "the key source is env:VAR or file:PATH, not 'OPENAI_API_KEY'"),
    ],
)
def test_a_malformed_choice_is_refused_in_one_line(text: str, message: str) -> None:
    with pytest.raises(RealEndpointError) as raised:
        parse_choice(text)

    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


# Resolving against the policy and the environment


def test_a_key_from_an_environment_variable_goes_with_the_policys_endpoint_and_secret(policy: Policy) -> None:
    (endpoint,) = resolve(policy, choices("openai=env:MY_OPENAI_KEY"), {"MY_OPENAI_KEY": f" {KEY}\n"})

    assert endpoint == RealEndpoint(
        provider="openai",
        base_url="https://api.openai.com/v1",
        secret_name="paymaster/providers/openai",
        key_source=KeySource("env", "MY_OPENAI_KEY"),
        api_key=KEY,
    )


def test_a_key_file_holds_the_key_on_one_line_and_a_tilde_is_the_home(
    policy: Policy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "anthropic.key").write_text(KEY + "\n")

    (endpoint,) = resolve(policy, choices("anthropic=file:~/anthropic.key"), {})

    assert (endpoint.base_url, endpoint.secret_name, endpoint.api_key) == (
        "https://api.anthropic.com",
        "paymaster/providers/anthropic",
        KEY,
    )


def test_a_server_without_a_secret_in_the_policy_needs_no_key(policy: Policy) -> None:
    assert resolve(policy, choices("ollama"), {}) == (RealEndpoint("ollama", OLLAMA_URL, None, None, None),)


def test_providers_sharing_a_secret_may_bring_the_same_key(policy: Policy) -> None:
    environ = {"OPENAI_API_KEY": KEY}

    resolved = resolve(policy, choices("openai=env:OPENAI_API_KEY", "openai-eu=env:OPENAI_API_KEY"), environ)

    assert [endpoint.provider for endpoint in resolved] == ["openai", "openai-eu"]


@pytest.mark.parametrize(
    ("given", "environ", "message"),
    [
        (
            ["gpt-4o-mini=env:KEY"],
            {"KEY": KEY},
            "--real-endpoint gpt-4o-mini: the policy has no such provider (it has anthropic, bedrock-us-east-1, "
            "bedrock-us-west-2, ollama, openai, openai-eu)",
        ),
        (
            ["bedrock-us-east-1"],
            {},
            "--real-endpoint bedrock-us-east-1: a Bedrock provider, and real Bedrock needs AWS credentials, which "
            "the local stack never uses; it stays on the fake Bedrock",
        ),
        (
            ["openai"],
            {},
            "--real-endpoint openai: the gateway reads its key from the secret paymaster/providers/openai; say where "
            "the key is, e.g. --real-endpoint openai=env:VAR or openai=file:PATH",
        ),
        (
            ["ollama=env:KEY"],
            {"KEY": KEY},
            "--real-endpoint ollama=env:KEY: the provider has no api_key_secret in the policy, so the gateway sends "
            "it no key; drop =env:KEY or add api_key_secret to the provider",
        ),
        (
            ["openai=env:OPENAI_API_KEY"],
            {},
            "--real-endpoint openai=env:OPENAI_API_KEY: the environment variable OPENAI_API_KEY is not set",
        ),
        (
            ["openai=env:OPENAI_API_KEY"],
            {"OPENAI_API_KEY": " \n"},
            "--real-endpoint openai=env:OPENAI_API_KEY: the environment variable OPENAI_API_KEY is empty",
        ),
        (
            ["ollama", "ollama"],
            {},
            "--real-endpoint ollama is given twice",
        ),
        (
            ["openai=env:KEY", "openai-eu=env:OTHER_KEY"],
            {"KEY": KEY, "OTHER_KEY": KEY + "-other"},
            "--real-endpoint openai and openai-eu share the secret paymaster/providers/openai but bring different "
            "keys (env:KEY, env:OTHER_KEY)",
        ),
    ],
)
def test_a_choice_the_policy_or_environment_cannot_satisfy_is_one_line_without_the_key(
    policy: Policy, given: list[str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(RealEndpointError) as raised:
        resolve(policy, choices(*given), environ)

    assert str(raised.value) == message
    assert KEY not in str(raised.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "there is no file {path}"),
        ("", "{path} is empty"),
        (
            f"OPENAI_API_KEY={KEY}\nANTHROPIC_API_KEY={KEY}\n",
            "{path} has more than one line; it should hold the key alone",
        ),
        (b"\xff\xfe\x00k", "{path} is not a text file"),
    ],
)
def test_a_key_file_that_cannot_give_one_key_is_one_line_without_its_content(
    policy: Policy, tmp_path: Path, content: str | bytes | None, problem: str
) -> None:
    path = tmp_path / "key"
    if isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, bytes):
        path.write_bytes(content)

    with pytest.raises(RealEndpointError) as raised:
        resolve(policy, choices(f"openai=file:{path}"), {})

    assert str(raised.value) == f"--real-endpoint openai=file:{path}: " + problem.format(path=path)
    assert KEY not in str(raised.value)


def test_a_key_file_that_is_a_directory_is_one_line(policy: Policy, tmp_path: Path) -> None:
    with pytest.raises(RealEndpointError) as raised:
        resolve(policy, choices(f"openai=file:{tmp_path}"), {})

    assert str(raised.value) == f"--real-endpoint openai=file:{tmp_path}: cannot read {tmp_path}: Is a directory"


def test_a_key_is_in_no_representation_of_the_endpoint(policy: Policy) -> None:
    (endpoint,) = resolve(policy, choices("openai=env:K"), {"K": KEY})

    assert KEY not in repr(endpoint)
    assert endpoint.describe() == (
        "openai → https://api.openai.com/v1 (key from env:K in secret paymaster/providers/openai)"
    )


# The command line and the banner


@pytest.fixture
def no_signal_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """`paymaster local` installs SIGINT/SIGTERM handlers; the test process keeps its own."""
    monkeypatch.setattr(signal, "signal", lambda *_: None)


@pytest.mark.usefixtures("no_signal_handlers")
def test_the_command_refuses_an_impossible_choice_in_one_line_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    argv = ["local", "--policy", str(DEMO), "--state-dir", str(state), "--real-endpoint", "bedrock-us-west-2"]

    status = cli.main(argv)

    assert status == 2
    assert capsys.readouterr().err.splitlines() == [
        "paymaster local: --real-endpoint bedrock-us-west-2: a Bedrock provider, and real Bedrock needs AWS "
        "credentials, which the local stack never uses; it stays on the fake Bedrock"
    ]
    assert not state.exists()


@pytest.mark.usefixtures("no_signal_handlers")
def test_the_command_refuses_a_malformed_choice_as_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["local", "--real-endpoint", "openai=$OPENAI_API_KEY"])

    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "paymaster local: error: argument --real-endpoint: 'openai=$OPENAI_API_KEY': the key source is env:VAR or "
        "file:PATH, not '$OPENAI_API_KEY' (none for a server that takes no key)"
    )


def stack_with(real_endpoints: tuple[RealEndpoint, ...], tmp_path: Path) -> LocalStack:
    files = LocalCredentialFiles(
        credentials=tmp_path / "credentials",
        config=tmp_path / "config",
        principals=tmp_path / "principals.json",
        access_keys={"search-ranker": ("AKIAEXAMPLE", "secret")},
    )
    return LocalStack(
        url="http://127.0.0.1:8787",
        aws_url="http://127.0.0.1:5000",
        providers_url="http://127.0.0.1:5001",
        credentials=files,
        policy_file=DEMO,
        state_dir=tmp_path,
        real_endpoints=real_endpoints,
    )


def test_the_banner_names_each_real_endpoint_and_its_key_source_never_the_key(policy: Policy, tmp_path: Path) -> None:
    real = resolve(policy, choices("openai=env:K", "ollama"), {"K": KEY})

    shown = banner(stack_with(real, tmp_path))

    assert (
        "  real endpoints (every other provider is served by the fakes):\n"
        "    openai → https://api.openai.com/v1 (key from env:K in secret paymaster/providers/openai)\n"
        f"    ollama → {OLLAMA_URL} (no key)\n"
    ) in shown
    assert KEY not in shown


def test_the_banner_says_when_every_provider_is_served_by_the_fakes(tmp_path: Path) -> None:
    assert "  every provider is served by the fakes (--real-endpoint NAME: by the policy's base_url)\n" in banner(
        stack_with((), tmp_path)
    )
