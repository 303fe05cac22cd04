"""The greeter image's Dockerfile: hadolint, and the essentials checked one by one."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    joined = DOCKERFILE.replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(name + " ")]


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run([str(hadolint), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_pinned_slim_python_311_unless_a_build_argument_names_another() -> None:
    assert instructions("FROM") == ["${PYTHON_IMAGE}"]
    (default,) = [arg.split("=", 1)[1] for arg in instructions("ARG") if arg.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", default), default


def test_dependencies_install_from_the_lock_file_before_the_code_is_copied() -> None:
    copies = instructions("COPY")
    runs = instructions("RUN")
    assert copies[0] == "pyproject.toml uv.lock ./"
    assert any("uv sync --frozen --no-dev --no-install-project" in run for run in runs)


def test_every_package_of_the_project_is_copied_in() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    copied = {c.split()[0] for c in instructions("COPY")}
    assert set(packages["packages"]) <= copied
    for source in copied:
        assert (ROOT / source).exists(), source


def test_runs_as_a_non_root_user_and_serves_with_the_project_config() -> None:
    (user,) = instructions("USER")
    assert user not in ("root", "0")
    assert instructions("EXPOSE") == ["8000"]
    assert instructions("CMD") == ['["greeter-serve"]']
    assert instructions("STOPSIGNAL") == ["SIGTERM"]
    assert instructions("HEALTHCHECK") == []  # the compose file's greeter service has it (test_compose.py)
