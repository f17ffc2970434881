"""Build the third-party dependencies layer for the gateway Lambda.

Installs the `[project] dependencies` of pyproject.toml (the one list of what runs in Lambda) as
binary wheels for the Lambda platform (paymaster_infra.target: CPython 3.13, arm64) into
`build/layers/deps/python`, the layout Lambda mounts as `/opt/python`. Runs before
`cdk synth`/`cdk deploy`; needs network access to PyPI.

    python infra/build_layers.py [--out build/layers/deps]
"""

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from paymaster_infra.target import PIP_IMPLEMENTATION, PIP_PLATFORMS, PYTHON_VERSION, UV_PLATFORM

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "build" / "layers" / "deps"


def runtime_dependencies(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    with pyproject.open("rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


def pip_command(target: Path, requirements: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-compile",
        "--target", str(target),
        *(arg for platform in PIP_PLATFORMS for arg in ("--platform", platform)),
        "--implementation", PIP_IMPLEMENTATION,
        "--python-version", PYTHON_VERSION,
        "--only-binary=:all:",
        *requirements,
    ]  # fmt: skip


def uv_command(uv: str, target: Path, requirements: list[str]) -> list[str]:
    return [
        uv, "pip", "install", "--quiet",
        "--target", str(target),
        "--python-platform", UV_PLATFORM,
        "--python-version", PYTHON_VERSION,
        "--only-binary", ":all:",
        *requirements,
    ]  # fmt: skip


def install_command(target: Path, requirements: list[str]) -> list[str]:
    """pip when the interpreter has it, otherwise uv (uv-made virtualenvs ship without pip)."""
    if importlib.util.find_spec("pip") is not None:
        return pip_command(target, requirements)
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("build_layers: neither pip nor uv is available; `pip install uv`")
    return uv_command(uv, target, requirements)


def build_deps_layer(out: Path) -> Path:
    """Rebuild `out/python` from scratch so that removed dependencies leave nothing behind."""
    target = out / "python"
    shutil.rmtree(out, ignore_errors=True)
    target.mkdir(parents=True)
    # The command is built from constants and pyproject.toml, never from outside input.
    subprocess.run(install_command(target, runtime_dependencies()), check=True)  # noqa: S603
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="layer asset directory")
    args = parser.parse_args()
    target = build_deps_layer(args.out.resolve())
    print(f"deps layer: {target}")


if __name__ == "__main__":
    main()
