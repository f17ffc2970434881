"""The `paymaster` command.

paymaster local [--policy FILE] [--port N] [--real-endpoint NAME[=env:VAR|file:PATH]]...
                                            run the local stack (needs the dev install)
paymaster policy validate FILE              check a policy file; every error with its place
"""

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType

from paymaster.adapters.policy_file import PolicyFileError, load_policy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="paymaster", description="paymaster, the exact LLM gateway")
    commands = parser.add_subparsers(dest="command", required=True)

    local = commands.add_parser("local", help="run the local stack in the foreground")
    local_cli = _local_cli()
    if local_cli is not None:
        local_cli.add_arguments(local)

    policy = commands.add_parser("policy", help="policy file tools")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    validate = policy_commands.add_parser("validate", help="validate a policy file")
    validate.add_argument("file", type=Path)

    args = parser.parse_args(argv)
    if args.command == "local":
        if local_cli is None:
            parser.error("the local stack needs the development install: `make run` or `uv sync --extra dev`")
        return int(local_cli.run(args))
    return _validate(args.file)


def _local_cli() -> ModuleType | None:
    """The local stack's CLI, present in the development install only."""
    try:
        return importlib.import_module("paymaster_local.cli")
    except ImportError:
        return None


def _validate(path: Path) -> int:
    try:
        policy = load_policy(path)
    except PolicyFileError as error:
        print(f"{path}: invalid policy", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(f"{path}: valid — {len(policy.teams)} teams, {len(policy.models)} models, {len(policy.providers)} providers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
