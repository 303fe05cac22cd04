"""deploy/k8s/components/kafka-sasl on the real cluster: the demo applied with it, through the user's kustomization,
against a Kafka in the cluster that speaks only SASL_SSL (SCRAM-SHA-512) and allows only stack/kafka_auth.py's
grants (tests/k8s/overlays/kafka-sasl), every login from its own Secret as deploy/k8s/README.md makes them. The
runtime's exactly-once egress, the topics Job, the generator and the master's wait each log in as their own
principal; the product's verifier, run in the cluster as the README runs the consumer, with the consumer's Secret,
finds every request greeted exactly once; no password is in any object but the Secrets, nor in any pod's log.

It runs in a namespace of its own after test_operations.py has deleted the demo (the node has room for one stack),
on the images and cluster the folder shares, and deletes its namespace when done (without waiting: it is the
folder's last module, and the cluster's teardown follows).
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from stack.kafka_auth import CONSUMER, CONSUMER_GROUP_PREFIX
from tests.support.net import free_port

from .cluster import Cluster
from .conftest import RUN, since
from .demo import (
    DEPLOYMENTS,
    K8S,
    MASTER,
    VERIFY_ARGS,
    VERIFY_IMAGE,
    Kubectl,
    PortForward,
    first_committed,
    stop_generators,
    verify_in_cluster,
)
from .secured_kafka import NAMESPACE, SECRETS, SecuredKafka, consumer_overrides, create_acls, write_kustomization

pytestmark = pytest.mark.timeout(900)

SECURED = RUN / "secured-kafka"


@dataclass
class Secured:
    kubectl: Kubectl
    kafka: SecuredKafka
    bootstrap: str  # this machine's, through the port-forward
    timings: dict[str, float]


@pytest.fixture(scope="module")
def secured(cluster: Cluster, imported_images: dict[str, float]) -> Iterator[Secured]:
    """The storage, then the user's kustomization applied in NAMESPACE; the ACLs created once the broker is ready
    (the clients wait or retry until then), and waited for as a user waits."""
    root = Kubectl(cluster)
    kubectl = Kubectl(cluster, NAMESPACE)
    # One stack at a time on a node of 2 CPUs: the demo's pods (test_operations.py deletes them) are gone first.
    root.until("no pod of the demo left", lambda: not root.json("pods")["items"], 300)
    started = time.monotonic()
    root("create", "namespace", NAMESPACE)
    kafka_forward: PortForward | None = None
    try:
        kubectl("apply", "-k", str(K8S / "storage" / "single-node"))
        kafka_port = free_port()
        kafka = write_kustomization(SECURED / "user", kafka_port)
        kubectl("apply", "-k", str(kafka.folder))
        timings: dict[str, float] = {}
        kubectl.waits("rollout", "status", "deployment/kafka", timeout=300)
        timings["apply_to_kafka_ready_s"] = since(started)
        kafka_forward = PortForward(
            cluster, "deployment/kafka", kafka_port, 9094, SECURED / "port-forward-kafka.log", NAMESPACE
        )
        kafka_forward.wait()
        bootstrap = f"127.0.0.1:{kafka_port}"
        create_acls(kafka, bootstrap)
        kubectl.waits("wait", "--for=condition=complete", "job", "-l", "app.kubernetes.io/name=topics", timeout=300)
        timings["apply_to_topics_job_complete_s"] = since(started)
        consumer = kafka.security(CONSUMER).librdkafka()
        first_committed(bootstrap, "greetings", 600, consumer, group_prefix=f"{CONSUMER_GROUP_PREFIX}k8s-")
        timings["apply_to_first_greeting_s"] = since(started)
        for deployment in DEPLOYMENTS[1:]:
            kubectl.waits("rollout", "status", f"deployment/{deployment}", timeout=300)
        kubectl.waits("wait", "--for=condition=Ready", "pod", "-l", MASTER, timeout=300)
        timings["apply_to_rolled_out_s"] = since(started)
        yield Secured(kubectl, kafka, bootstrap, timings)
    finally:
        if kafka_forward is not None:
            kafka_forward.stop()
        kubectl.save_logs(SECURED / "logs")
        # Not waited for (the greeter's drain alone takes 20 s a pod): the last module of the folder, so the
        # cluster's teardown, which leaves nothing behind, follows.
        root("delete", "namespace", NAMESPACE, "--wait=false")
        print(f"[k8s secured kafka] in all {since(started)} s")


def test_the_demo_on_a_secured_kafka_greets_every_request_exactly_once(secured: Secured) -> None:
    print(f"[k8s secured kafka] {json.dumps(secured.timings)}")
    (SECURED / "timings.json").write_text(json.dumps(secured.timings, indent=2) + "\n")
    generator = secured.kubectl.one("jobs", "app.kubernetes.io/name=generator")
    assert not generator["status"].get("succeeded"), "the generator finished: it runs 10 minutes"
    stop_generators(secured.kubectl)

    name = "verify-secured"
    overrides = consumer_overrides(name, VERIFY_IMAGE, VERIFY_ARGS)
    greetings, names = verify_in_cluster(secured.kubectl, name, [f"--overrides={overrides}"])

    assert greetings >= 10 and names >= 1
    # Every client got in and was allowed what it did at once: no login or ACL refusal on the way, and the job never
    # restarted (the ACLs exist before the topics, so before any client gets past its wait).
    logs = {
        deployment: secured.kubectl("logs", f"deployment/{deployment}", "--all-containers", timeout=60)
        for deployment in ("statefun-worker", "statefun-master")
    }
    for deployment, text in logs.items():
        refusals = re.findall(r"\w+(?:Authorization|Authentication)Exception", text)
        assert refusals == [], f"{deployment}: {sorted(set(refusals))}"
    assert re.search(r"Job Greeter \(\w+\) switched from state \w+ to RUNNING", logs["statefun-master"])
    assert "to RESTARTING" not in logs["statefun-master"]


def test_no_password_is_in_an_object_but_the_secrets_nor_in_a_log(secured: Secured) -> None:
    objects = secured.kubectl("get", "configmaps,deployments,jobs,pods,services", "-o", "json")
    secrets = secured.kubectl.json("secrets")["items"]
    logs = "".join(
        secured.kubectl("logs", pod["metadata"]["name"], "--all-containers", check=False, timeout=60)
        for pod in secured.kubectl.json("pods")["items"]
    )
    assert len(secured.kafka.passwords) >= 5
    for principal, password in secured.kafka.passwords.items():
        assert password not in objects, f"{principal}'s password in an object that is not a Secret"
        assert password not in logs, f"{principal}'s password in a pod's log"
    assert "LoginModule" not in objects, "a JAAS line in an object that is not a Secret"
    # ... and they are where the README puts them: the broker's, and one Secret per client with its own login only.
    names = {re.sub(r"-[a-z0-9]{10}$", "", s["metadata"]["name"]) for s in secrets if s["type"] == "Opaque"}
    assert names == {"kafka-broker", *(f"greeter-kafka-{principal}" for principal in SECRETS)}
    for each in secrets:
        if each["metadata"]["name"].startswith("greeter-kafka-"):
            principal = re.sub(r"-[a-z0-9]{10}$", "", each["metadata"]["name"]).removeprefix("greeter-kafka-")
            assert sorted(each["data"]) == sorted(SECRETS[principal]), principal
            for key, value in each["data"].items():
                assert f'username="{principal}"' in base64.b64decode(value).decode() or key != "client.jaas"
