"""Build the third-party dependencies layer for the gateway Lambda.

Installs exactly what `uv.lock` pins for the runtime dependencies (the `[project] dependencies` of
pyproject.toml and everything they pull in; not the `dev` extra, not paymaster itself, which ships
in the core layer) as binary wheels for the Lambda platform (paymaster_infra.target: CPython 3.13,
arm64) into `build/layers/deps/python`, the layout Lambda mounts as `/opt/python`. Every wheel is
checked against the lock's sha256. Runs before `cdk synth`/`cdk deploy`; needs uv (`make venv`
installs it, or `pip install uv`) and network access to PyPI, or uv's cache holding the wheels
(`--prefer-cache` tries the cache alone first).

`--python PATH` builds the same set for that interpreter's version and platform instead: what
`make smoke` (infra/smoke.py) boots on this machine.

    python infra/build_layers.py [--out build/layers/deps] [--python PATH] [--prefer-cache]
"""

import argparse
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from paymaster_infra.target import PYTHON_VERSION, UV_PLATFORM

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "build" / "layers" / "deps"


@dataclass(frozen=True)
class Platform:
    """Where the layer's wheels must run, as uv's options that select them."""

    name: str
    uv_options: tuple[str, ...]


LAMBDA = Platform(f"lambda-cp{PYTHON_VERSION.replace('.', '')}-{UV_PLATFORM}", (
    "--python-platform", UV_PLATFORM, "--python-version", PYTHON_VERSION,
))  # fmt: skip


def interpreter_platform(python: str) -> Platform:
    """The platform and version of the interpreter at `python` (uv reads its tags)."""
    return Platform(f"interpreter-{python}", ("--python", python))


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


def install_command(
    uv: str, target: Path, requirements: Path, platform: Platform = LAMBDA, *, offline: bool = False
) -> list[str]:
    """Install a requirements file for `platform` (Lambda's by default), every wheel's hash checked;
    `offline`: from uv's cache only."""
    return [
        uv, "pip", "install", "--quiet",
        "--target", str(target),
        *platform.uv_options,
        "--only-binary", ":all:",
        "--require-hashes",
        "--requirements", str(requirements),
        *(["--offline"] if offline else []),
    ]  # fmt: skip


def build_deps_layer(out: Path, uv: str, platform: Platform = LAMBDA, *, prefer_cache: bool = False) -> Path:
    """Rebuild `out/python` from scratch so that removed dependencies leave nothing behind.

    `prefer_cache`: install from uv's cache alone first (no network, a fraction of a second), and
    from the registry only when the cache lacks a wheel or the index's answer for it.
    """
    target = out / "python"
    with tempfile.TemporaryDirectory(prefix="paymaster-deps-") as scratch:
        requirements = Path(scratch) / "requirements.txt"
        # The commands are built from constants and paths, never from outside input.
        subprocess.run(export_command(uv, requirements), check=True)  # noqa: S603
        shutil.rmtree(out, ignore_errors=True)
        target.mkdir(parents=True)
        if prefer_cache:
            cached = install_command(uv, target, requirements, platform, offline=True)
            if subprocess.run(cached, check=False, capture_output=True).returncode == 0:  # noqa: S603
                return target
            shutil.rmtree(target)
            target.mkdir()
        subprocess.run(install_command(uv, target, requirements, platform), check=True)  # noqa: S603
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="layer asset directory")
    parser.add_argument("--python", help="build for this interpreter instead of Lambda's platform")
    parser.add_argument("--prefer-cache", action="store_true", help="try uv's cache alone before the registry")
    args = parser.parse_args()
    platform = LAMBDA if args.python is None else interpreter_platform(args.python)
    target = build_deps_layer(args.out.resolve(), find_uv(), platform, prefer_cache=args.prefer_cache)
    print(f"deps layer ({platform.name}): {target}")


if __name__ == "__main__":
    main()
