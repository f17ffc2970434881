"""The deps layer is the lock's runtime set, installed for Lambda. Nothing here downloads a wheel."""

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

import build_layers
from paymaster_infra.config import REPO_ROOT


def flag_value(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_export_takes_the_locked_runtime_set_without_dev_extra_groups_or_project(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    command = build_layers.export_command("uv", requirements)
    assert command[:2] == ["uv", "export"]
    assert flag_value(command, "--project") == str(REPO_ROOT)
    assert flag_value(command, "--output-file") == str(requirements)
    assert flag_value(command, "--format") == "requirements.txt"
    assert {"--locked", "--no-default-groups", "--no-emit-project"} <= set(command)
    # Hashes stay in, so that the install checks every wheel against the lock.
    assert not {"--extra", "--all-extras", "--no-hashes", "--frozen"} & set(command)


def test_install_puts_the_exported_wheels_for_lambda_arm64_into_the_layer(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    command = build_layers.install_command("uv", tmp_path / "python", requirements)
    assert command[:3] == ["uv", "pip", "install"]
    assert flag_value(command, "--target") == str(tmp_path / "python")
    assert flag_value(command, "--python-platform") == "aarch64-manylinux_2_34"
    assert flag_value(command, "--python-version") == "3.13"
    assert flag_value(command, "--only-binary") == ":all:"
    assert flag_value(command, "--requirements") == str(requirements)
    assert "--require-hashes" in command


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group()).lower()


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed")
def test_exported_requirements_pin_the_lock_versions_of_runtime_dependencies_only(tmp_path: Path) -> None:
    """Runs the real export: it reads uv.lock and needs no network."""
    requirements = tmp_path / "requirements.txt"
    uv = shutil.which("uv")
    assert uv
    subprocess.run(build_layers.export_command(uv, requirements), check=True)
    pinned = {
        _name(line): line.split("==", 1)[1].split()[0]
        for line in requirements.read_text().splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    }

    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    locked = {_name(package["name"]): package["version"] for package in lock["package"] if "version" in package}
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(requirement) for requirement in project["dependencies"]}
    dev_only = {_name(requirement) for requirement in project["optional-dependencies"]["dev"]} - runtime

    assert pinned
    assert {name: locked[name] for name in pinned} == pinned
    assert runtime <= set(pinned)
    assert not dev_only & set(pinned)
    assert "paymaster" not in pinned


def test_install_for_an_interpreter_takes_its_version_and_platform_instead_of_lambdas(tmp_path: Path) -> None:
    platform = build_layers.interpreter_platform("/smoke/runtime/bin/python")
    command = build_layers.install_command("uv", tmp_path / "python", tmp_path / "requirements.txt", platform)
    assert flag_value(command, "--python") == "/smoke/runtime/bin/python"
    assert not {"--python-platform", "--python-version"} & set(command)
    assert {"--require-hashes", "--only-binary"} <= set(command)


def test_install_from_the_cache_alone_is_offline_and_otherwise_it_may_use_the_registry(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    assert "--offline" in build_layers.install_command("uv", tmp_path, requirements, offline=True)
    assert "--offline" not in build_layers.install_command("uv", tmp_path, requirements)
