"""The images deploy/k8s runs, made without a registry and saved into one archive for `Cluster.import_image`.

The greeter's is built from the repository's own Dockerfile by `docker compose build greeter`, as tests/compose builds
it (its base the Python stand-in, whose build context carried the machine's CA bundle for PyPI); the runtime and
Kafka are the stand-ins of tests/compose/images.py. Each is tagged under REGISTRY_PATH, so that the names containerd
gives them (`docker.io/greeter-ci/...`: a name without a registry host is Docker Hub's) are the registry
deploy/k8s/components/registry points at once edited as its README says. The Docker engine runs only while the
images are built and saved (tests/compose/engine.py), before the cluster starts: dockerd and the cluster never run
at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.compose.engine import docker, running_engine
from tests.compose.images import build_standins
from tests.compose.project import ComposeProject

# Docker Hub's namespace `greeter-ci`: the stand-ins' tags, and where the registry component is pointed.
REGISTRY_PATH: Final = "greeter-ci"
REGISTRY: Final = f"docker.io/{REGISTRY_PATH}"
GREETER_TAG: Final = "local"
COMPOSE_GREETER: Final = "statefun-greeter:local"  # the tag docker-compose.yml gives the image it builds


@dataclass(frozen=True)
class StackImages:
    """One `docker save` archive holding the stack's images, and how long making it took."""

    archive: Path
    names: tuple[str, ...]  # as containerd names them once imported
    seconds: float


def build_and_save(folder: Path) -> StackImages:
    """Start the engine (installed if missing), build the stand-ins and the greeter, save the three images into one
    archive in `folder`, stop the engine."""
    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "stack-images.tar"
    archive.unlink(missing_ok=True)
    with running_engine(folder / "dockerd.log"):
        standins = build_standins()
        # The compose file's own build of the greeter service: the same Dockerfile, context and build argument.
        ComposeProject("greeter-k8s-images", {"PYTHON_IMAGE": standins["PYTHON_IMAGE"]}).run("build", "greeter")
        greeter = f"{REGISTRY_PATH}/statefun-greeter:{GREETER_TAG}"
        docker("tag", COMPOSE_GREETER, greeter)
        tags = (greeter, standins["KAFKA_IMAGE"], standins["STATEFUN_IMAGE"])
        for tag in tags[1:]:
            assert tag.startswith(f"{REGISTRY_PATH}/"), f"the stand-in {tag} is not under {REGISTRY_PATH}/"
        # One archive: the layers the images share (the Debian base) are written and imported once.
        docker("save", "--output", str(archive), *tags)
    return StackImages(archive, tuple(f"docker.io/{tag}" for tag in tags), round(time.monotonic() - started, 1))
