"""`paymaster local`'s own answers: a policy it cannot use, and the snippet it prints."""

import argparse
from pathlib import Path

import pytest

from paymaster.domain.policy import Policy
from paymaster_local.cli import banner, run, snippet_model
from paymaster_local.credentials import write_local_credentials
from paymaster_local.stack import LocalStack
from tests.policies import DEMO, demo_raw


def test_a_missing_policy_file_is_one_line_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code = run(argparse.Namespace(policy=Path("missing.yaml"), port=0, state_dir=Path("unused")))

    err = capsys.readouterr().err
    assert code == 2
    assert err == "paymaster local: missing.yaml: cannot read the file: No such file or directory\n"


def test_an_invalid_policy_file_is_one_line_naming_its_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nproviders: {}\n")

    code = run(argparse.Namespace(policy=policy, port=0, state_dir=tmp_path))

    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith(f"paymaster local: {policy}: policy.yaml:2 providers:")


def test_the_snippet_names_a_chat_model_the_profile_s_team_may_call() -> None:
    raw = demo_raw()
    raw["teams"]["search"]["models"] = ["text-embedding-3-small", "nova-lite"]
    policy = Policy.model_validate(raw)

    assert snippet_model(policy, "search-ranker") == "nova-lite"
    assert snippet_model(policy, "support-assistant") == "claude-haiku"


def test_every_command_the_banner_prints_continues_its_lines_as_a_shell_would(tmp_path: Path) -> None:
    """A command split over lines ends each with ` \\`; an f-string's lone backslash would
    instead join the lines and print one unusable line."""
    credentials = write_local_credentials(Policy.model_validate(demo_raw()), tmp_path / "credentials")
    stack = LocalStack(
        url="http://127.0.0.1:8787",
        aws_url="http://127.0.0.1:5000",
        providers_url="http://127.0.0.1:5001",
        credentials=credentials,
        policy_file=DEMO,
        state_dir=tmp_path,
        events_queue_url="http://127.0.0.1:5000/123456789012/paymaster-cost-events",
    )

    lines = banner(stack).splitlines()

    for command in (
        ".venv/bin/paymaster ledger",
        ".venv/bin/paymaster events tail --queue-url http://",
        ".venv/bin/paymaster report",
    ):
        (index,) = [number for number, line in enumerate(lines) if line.strip().startswith(command)]
        assert lines[index - 1].endswith(" \\")
        assert lines[index - 1].strip().startswith("AWS_ENDPOINT_URL=http://127.0.0.1:5000")
