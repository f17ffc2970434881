"""The paymaster CDK app.

    cdk deploy                                   # from infra/, after python build_layers.py
    python infra/app.py [-c key=value ...]       # synth only: no credentials, CLI or Docker

Context keys (paths relative to the repository root): deployFile (one deployment: account,
region, policy file, API shape; paymaster_infra/deploy_file.py), depsDir, policyFile,
tokenizersDir, stagingDir; see paymaster_infra/config.py for the defaults. Without deployFile the
stacks are env-agnostic (or in the CDK CLI's default account and region) with the demo policy.
"""

import argparse
import os
import sys
from pathlib import Path

from aws_cdk import App

from paymaster_infra.config import AppConfig, ConfigError
from paymaster_infra.deployment import add_paymaster, stack_environment

DEFAULT_OUTDIR = Path(__file__).resolve().parent / "cdk.out"


def _context_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def main() -> None:
    parser = argparse.ArgumentParser(description="Synthesise the paymaster stacks.")
    parser.add_argument("-c", "--context", type=_context_pair, action="append", default=[])
    args = parser.parse_args()
    # The CDK CLI passes its output folder (and context) through the environment.
    app = App(outdir=os.environ.get("CDK_OUTDIR") or str(DEFAULT_OUTDIR), context=dict(args.context))
    try:
        config = AppConfig.from_context(app.node)
        add_paymaster(app, config, env=stack_environment(config))
    except ConfigError as error:
        sys.exit(f"paymaster: {error}")
    app.synth()


if __name__ == "__main__":
    main()
