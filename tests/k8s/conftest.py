"""A real single-node Kubernetes cluster (tests/k8s/cluster), shared by this folder's tests: installed by its
`install` script (binaries built once into a cache outside the repository), brought up in run/tests/k8s/cluster,
and always torn down by PID, leaving nothing on the machine (the teardown fails the last test if it did).

When a collected test uses the stack's images (stack_images.py), they are built and saved before the cluster
starts, so that the Docker engine that builds them and the cluster never run at once. The demo applied as
deploy/k8s/README.md says is one for the folder: test_manifests.py checks it as applied, test_operations.py then
operates it as docs/operations.md says."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import yaml

from stack.config import REPO_ROOT
from tests.support.net import free_port

from .cluster import Cluster, running_cluster
from .demo import DEPLOYMENTS, K8S, MASTER, Demo, Kubectl, MasterRest, PortForward, first_committed, write_kustomization
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


def since(start: float) -> float:
    return round(time.monotonic() - start, 1)


@pytest.fixture(scope="package")
def imported_images(stack_images: StackImages, cluster: Cluster) -> dict[str, float]:
    """The stack's images imported into the cluster's containerd once, for every test that applies the stack; how
    long making and importing them took."""
    timings = {"images_built_and_saved_s": stack_images.seconds}
    started = time.monotonic()
    cluster.import_image(stack_images.archive)
    stack_images.archive.unlink()  # containerd keeps its own copy
    timings["images_imported_s"] = since(started)
    return timings


@pytest.fixture(scope="package")
def demo(stack_images: StackImages, cluster: Cluster, imported_images: dict[str, float]) -> Iterator[Demo]:
    """The images imported, the storage and the demo applied, and waited for as a user waits: each Deployment's
    rollout, the topics Job, the master Ready (its job runs all its tasks). Apply -> first greeting is timed from the
    machine through a port-forward to Kafka."""
    kubectl = Kubectl(cluster)
    timings = dict(imported_images)

    kubectl("apply", "-k", str(K8S / "storage" / "single-node"))
    kafka_port = free_port()
    folder = write_kustomization(RUN / "demo", kafka_port)
    rendered = kubectl("kustomize", str(folder))
    (folder / "rendered.yaml").write_text(rendered)
    kafka: PortForward | None = None
    rest = MasterRest(cluster, RUN)
    applied = time.monotonic()
    kubectl("apply", "-k", str(folder))
    try:
        kubectl.waits("rollout", "status", "deployment/kafka", timeout=300)
        timings["apply_to_kafka_ready_s"] = since(applied)
        kubectl.waits("wait", "--for=condition=complete", "job", "-l", "app.kubernetes.io/name=topics", timeout=300)
        timings["apply_to_topics_job_complete_s"] = since(applied)
        kafka = PortForward(cluster, "deployment/kafka", kafka_port, 9094, RUN / "port-forward-kafka.log")
        kafka.wait()
        bootstrap = f"127.0.0.1:{kafka_port}"
        first_committed(bootstrap, "greetings", deadline_s=600)
        timings["apply_to_first_greeting_s"] = since(applied)
        for deployment in DEPLOYMENTS[1:]:
            kubectl.waits("rollout", "status", f"deployment/{deployment}", timeout=300)
        kubectl.waits("wait", "--for=condition=Ready", "pod", "-l", MASTER, timeout=300)
        timings["apply_to_rolled_out_s"] = since(applied)
        rest()
        print(f"[k8s manifests] {json.dumps(timings)}")
        (RUN / "manifests-timings.json").write_text(json.dumps(timings, indent=2) + "\n")
        yield Demo(
            kubectl,
            stack_images.names,
            bootstrap,
            rest,
            folder,
            kafka_port,
            [doc for doc in yaml.safe_load_all(rendered) if doc],
            timings,
        )
    finally:
        rest.stop()
        if kafka is not None:
            kafka.stop()
        kubectl.save_logs(RUN / "logs")
