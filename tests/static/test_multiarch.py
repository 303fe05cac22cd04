"""The greeter image on linux/arm64 as on linux/amd64: every package it installs (`uv sync --frozen --no-dev`,
as the Dockerfile runs it) has, in uv.lock, a wheel that installs on CPython 3.11 for aarch64 under Debian
bookworm's glibc 2.36 (the base image's), or a pure-Python one. No compiler is in the slim image, so an sdist
alone would not do; and no package is pinned to an x86-only build."""

from __future__ import annotations

import subprocess
import tomllib
from functools import cache
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".tools" / "uv" / "bin" / "uv"
GLIBC_MINOR = 36  # Debian bookworm
# The environment markers of CPython 3.11 on Linux (platform_machine set per architecture).
LINUX_CPYTHON_311 = {
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "platform_machine": "aarch64",
    "platform_system": "Linux",
    "sys_platform": "linux",
    "os_name": "posix",
    "python_version": "3.11",
    "python_full_version": "3.11.14",
}


def platform_tags(machine: str) -> set[Tag]:
    platforms = [f"manylinux_2_{minor}_{machine}" for minor in range(GLIBC_MINOR, 16, -1)]
    platforms += [f"manylinux2014_{machine}", f"linux_{machine}"]
    if machine == "x86_64":
        platforms += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    tags = cpython_tags((3, 11), abis=["cp311", "abi3", "none"], platforms=platforms)
    return {*tags, *compatible_tags((3, 11), "cp311", platforms)}


@cache
def image_requirements() -> list[Requirement]:
    """What the image installs: uv.lock exported without the dev group and the project, as `uv sync` reads it."""
    exported = subprocess.run(
        [str(UV), "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes", "--no-header"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = [line.strip() for line in exported.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [Requirement(line) for line in lines]


def lock_wheels() -> dict[str, list[str]]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {
        canonicalize_name(package["name"]): [wheel["url"].rsplit("/", 1)[1] for wheel in package.get("wheels", [])]
        for package in lock["package"]
    }


def installable(wheels: list[str], machine: str) -> list[str]:
    supported = platform_tags(machine)
    return [wheel for wheel in wheels if parse_wheel_filename(wheel)[3] & supported]


def test_the_image_installs_the_packages_of_the_lock_file() -> None:
    names = {canonicalize_name(requirement.name) for requirement in image_requirements()}
    assert {"apache-flink-statefun", "flask", "gunicorn", "protobuf", "uvloop", "confluent-kafka"} <= names
    assert not names & {"pytest", "mypy", "ruff"}  # the dev group stays out


@pytest.mark.parametrize("machine", ["aarch64", "x86_64"])
def test_every_package_of_the_image_has_a_wheel_for_the_architecture(machine: str) -> None:
    wheels = lock_wheels()
    environment = {**LINUX_CPYTHON_311, "platform_machine": machine}
    missing = []
    for requirement in image_requirements():
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        if not installable(wheels[canonicalize_name(requirement.name)], machine):
            missing.append(str(requirement))
    assert missing == [], f"no {machine} wheel in uv.lock for: {missing}"


def test_the_check_tells_an_x86_only_package_apart() -> None:
    x86_only = ["uvloop-0.22.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"]
    assert installable(x86_only, "aarch64") == []
    assert installable(x86_only, "x86_64") == x86_only
    # glibc newer than bookworm's does not count, a pure-Python wheel does.
    assert installable(["x-1-cp311-cp311-manylinux_2_39_aarch64.whl"], "aarch64") == []
    assert installable(["x-1-py3-none-any.whl"], "aarch64") == ["x-1-py3-none-any.whl"]
    assert Marker("platform_machine == 'x86_64'").evaluate(LINUX_CPYTHON_311) is False
