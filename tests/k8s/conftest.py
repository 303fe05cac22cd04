"""A real single-node Kubernetes cluster (tests/k8s/cluster), shared by this folder's tests: installed by its
`install` script (binaries built once into a cache outside the repository), brought up in run/tests/k8s/cluster,
and always torn down by PID, leaving nothing on the machine (the teardown fails the last test if it did).

When a collected test uses the stack's images (stack_images.py), they are built and saved before the cluster
starts, so that the Docker engine that builds them and the cluster never run at once."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from stack.config import REPO_ROOT

from .cluster import Cluster, running_cluster
from .stack_images import StackImages, build_and_save

RUN = REPO_ROOT / "run" / "tests" / "k8s"


@pytest.fixture(scope="package")
def stack_images() -> StackImages:
    """The greeter, runtime and Kafka images in one archive (RUN/images), made with the Docker engine."""
    return build_and_save(RUN / "images")


@pytest.fixture(scope="package")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    if any("stack_images" in getattr(item, "fixturenames", ()) for item in request.session.items):
        request.getfixturevalue("stack_images")  # the engine is up and down before the cluster starts
    with running_cluster(RUN / "cluster") as running:
        (RUN / "timings.json").write_text(json.dumps(running.timings, indent=2) + "\n")
        yield running
