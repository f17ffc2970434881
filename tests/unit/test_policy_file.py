"""`paymaster policy validate` names every problem with its line and path in the file."""

from pathlib import Path

import pytest

from paymaster.cli import main

REPO = Path(__file__).resolve().parents[2]

BROKEN = """\
version: 1
providers:
  openai: {kind: openai, base_url: https://api.openai.com/v1}
models:
  m:
    deployments: [{provider: openai, model: x}]
    max_output_tokens: 10
    context_window: 100
teams:
  t:
    apps:
      a:
        principals: [{name: p, arn: "arn:aws:iam::111111111111:role/p"}]
rules:
  - name: ok
    limit: 5
    unit: requests_per_minute
  - name: fractional
    limit: 1.5
    unit: tokens_per_minute
    time_zone: Mars/Olympus
"""


def test_demo_policy_validates(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "validate", str(REPO / "policy" / "demo.yaml")]) == 0
    assert "valid — 2 teams, 9 models, 4 providers" in capsys.readouterr().out


def test_every_error_is_reported_with_its_line_and_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(BROKEN)

    assert main(["policy", "validate", str(policy)]) == 1

    problems = capsys.readouterr().err.splitlines()[1:]
    assert problems == [
        "  policy.yaml:6 models.m.price: Field required",
        "  policy.yaml:21 rules.1.time_zone: Value error, unknown time zone 'Mars/Olympus' (use an IANA name like "
        "Europe/Berlin)",
    ]


def test_not_yaml_is_an_error_not_a_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("teams: [unclosed")

    assert main(["policy", "validate", str(policy)]) == 1
    assert "invalid policy" in capsys.readouterr().err
