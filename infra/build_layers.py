"""Build the third-party dependencies layer for the gateway Lambda.

Installs exactly what `uv.lock` pins for the runtime dependencies (the `[project] dependencies` of
pyproject.toml and everything they pull in; not the `dev` extra, not paymaster itself, which ships
in the core layer) as binary wheels for the Lambda platform (paymaster_infra.target: CPython 3.13,
arm64) into `build/layers/deps/python`, the layout Lambda mounts as `/opt/python`. Every wheel is
checked against the lock's sha256. Runs before `cdk synth`/`cdk deploy`; needs uv (`make venv`
installs it, or `pip install uv`) and network access to PyPI.

    python infra/build_layers.py [--out build/layers/deps]
"""

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from paymaster_infra.target import PYTHON_VERSION, UV_PLATFORM

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "build" / "layers" / "deps"


def find_uv() -> str:
    """uv on PATH, else the one the `uv` package put next to this interpreter."""
    uv = shutil.which("uv")
    if uv is not None:
        return uv
    try:
        from uv import find_uv_bin  # noqa: PLC0415
    except ImportError:
        raise SystemExit("build_layers: uv is needed to install the locked versions; `pip install uv`") from None
    return str(find_uv_bin())


def export_command(uv: str, requirements: Path, project: Path = REPO_ROOT) -> list[str]:
    """Write the lock's runtime set as a requirements file: pinned, with hashes and markers."""
    return [
        uv, "export", "--quiet",
        "--project", str(project),
        # Fail rather than ship versions pyproject.toml no longer asks for (`make lock` fixes it).
        "--locked",
        # No extras (so not `dev`) and no dependency groups: what runs in Lambda only.
        "--no-default-groups",
        "--no-emit-project",
        "--format", "requirements.txt",
        "--output-file", str(requirements),
    ]  # fmt: skip


def install_command(uv: str, target: Path, requirements: Path) -> list[str]:
    """Install a requirements file for the Lambda platform, every wheel's hash checked."""
    return [
        uv, "pip", "install", "--quiet",
        "--target", str(target),
        "--python-platform", UV_PLATFORM,
        "--python-version", PYTHON_VERSION,
        "--only-binary", ":all:",
        "--require-hashes",
        "--requirements", str(requirements),
    ]  # fmt: skip


def build_deps_layer(out: Path, uv: str) -> Path:
    """Rebuild `out/python` from scratch so that removed dependencies leave nothing behind."""
    target = out / "python"
    with tempfile.TemporaryDirectory(prefix="paymaster-deps-") as scratch:
        requirements = Path(scratch) / "requirements.txt"
        # The commands are built from constants and paths, never from outside input.
        subprocess.run(export_command(uv, requirements), check=True)  # noqa: S603
        shutil.rmtree(out, ignore_errors=True)
        target.mkdir(parents=True)
        subprocess.run(install_command(uv, target, requirements), check=True)  # noqa: S603
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="layer asset directory")
    args = parser.parse_args()
    target = build_deps_layer(args.out.resolve(), find_uv())
    print(f"deps layer: {target}")


if __name__ == "__main__":
    main()
