"""Synthesise the paymaster app once per session, with a stand-in for what tests can't build.

The dependencies layer needs PyPI, so it is an empty `python/` folder here; the tokenizer files
come from the repository when they are there, else from an empty stand-in. The policy file is
the repository's demo policy (synth validates it).
"""

import json
import sys
from pathlib import Path
from typing import Any

import pytest

INFRA_DIR = Path(__file__).resolve().parents[2] / "infra"
sys.path.insert(0, str(INFRA_DIR))

from aws_cdk import App  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from paymaster_infra.config import (  # noqa: E402
    DEFAULT_POLICY_FILE,
    DEFAULT_TOKENIZERS_DIR,
    REPO_ROOT,
    AppConfig,
)
from paymaster_infra.deployment import Paymaster, add_paymaster  # noqa: E402

OPS_EMAILS = ("platform@example.com", "oncall@example.com")


@pytest.fixture(scope="session")
def config(tmp_path_factory: pytest.TempPathFactory) -> AppConfig:
    inputs = tmp_path_factory.mktemp("inputs")
    (inputs / "deps" / "python").mkdir(parents=True)

    tokenizers_dir = REPO_ROOT / DEFAULT_TOKENIZERS_DIR
    if not (tokenizers_dir / "tiktoken").is_dir():
        tokenizers_dir = inputs / "tokenizers"
        (tokenizers_dir / "tiktoken").mkdir(parents=True)

    return AppConfig(
        deps_dir=inputs / "deps",
        policy_file=REPO_ROOT / DEFAULT_POLICY_FILE,
        tokenizers_dir=tokenizers_dir,
        staging_dir=inputs / "staging",
        ops_emails=OPS_EMAILS,
    )


@pytest.fixture(scope="session")
def outdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cdk.out")


@pytest.fixture(scope="session")
def paymaster(config: AppConfig, outdir: Path) -> Paymaster:
    """The synthesised app. Synth runs cdk-nag and raises on any unacknowledged finding."""
    app = App(outdir=str(outdir))
    deployed = add_paymaster(app, config)
    app.synth()
    return deployed


@pytest.fixture(scope="session")
def state_template(paymaster: Paymaster) -> Template:
    return Template.from_stack(paymaster.state)


@pytest.fixture(scope="session")
def gateway_template(paymaster: Paymaster) -> Template:
    return Template.from_stack(paymaster.gateway)


@pytest.fixture(scope="session")
def validation_report(paymaster: Paymaster, outdir: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((outdir / "validation-report.json").read_text())
    return report
