"""A real single-node Kubernetes cluster (tests/k8s/cluster), shared by this folder's tests: installed by its
`install` script (binaries built once into a cache outside the repository), brought up in run/tests/k8s/cluster,
and always torn down by PID, leaving nothing on the machine (the teardown fails the last test if it did)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from stack.config import REPO_ROOT

from .cluster import Cluster, running_cluster

RUN = REPO_ROOT / "run" / "tests" / "k8s"


@pytest.fixture(scope="package")
def cluster() -> Iterator[Cluster]:
    with running_cluster(RUN / "cluster") as running:
        (RUN / "timings.json").write_text(json.dumps(running.timings, indent=2) + "\n")
        yield running
