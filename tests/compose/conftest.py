"""The container stack for real: a Docker engine this session starts (engine.py), the stand-in images
(images.py), and one compose project of the repository's docker-compose.yml shared by the module's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stack.config import REPO_ROOT
from tests.support.net import free_port

from .engine import running_engine
from .images import build_standins
from .project import ComposeProject

LOGS = REPO_ROOT / "run" / "tests" / "compose"


@pytest.fixture(scope="package")
def engine() -> Iterator[None]:
    """The engine runs for this folder's tests only: dockerd's iptables rules stay out of the others' way."""
    with running_engine(LOGS / "dockerd.log"):
        yield


@pytest.fixture(scope="package")
def standin_images(engine: None) -> dict[str, str]:
    return dict(build_standins())


@pytest.fixture(scope="module")
def project(standin_images: dict[str, str]) -> Iterator[ComposeProject]:
    """A fresh project (anything left by an earlier run removed first), removed with its volumes after."""
    env = {
        **standin_images,
        "KAFKA_HOST_PORT": str(free_port()),
        "FLINK_UI_HOST_PORT": str(free_port()),
        "PROMETHEUS_HOST_PORT": str(free_port()),  # the monitoring profile's, started by its test
        "GREETER_RATE": "50",
        "GREETER_NAMES": "20",
    }
    compose = ComposeProject("greeter-compose-test", env)
    compose.run("down", "--volumes", "--remove-orphans")
    try:
        yield compose
    finally:
        compose.save_logs(LOGS / f"{compose.name}.log")
        compose.run("down", "--volumes", "--remove-orphans", check=False)
