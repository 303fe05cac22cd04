"""The cluster itself, as the deploy/k8s tests will use it: an image loaded without a registry runs as a
Deployment, its Service resolves through CoreDNS from another pod and answers, `kubectl exec` and `logs` work,
a claim on the default StorageClass binds and a non-root container writes to it; pods reach nothing beyond the
cluster's own networks; and a NetworkPolicy is enforced (kube-router), by a daemon with only the rights it needs
and listening on nothing."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from .cluster import Cluster
from .cluster.cluster import CLUSTER_DOMAIN, DNS_IP, K8S_VERSION, KUBE_ROUTER_USER, NODE_NAME
from .cluster.images import busybox_image

# The first test pays for the cluster's start (and, on a new machine, for building Kubernetes: about 10 minutes).
pytestmark = pytest.mark.timeout(2400)

WEB_IMAGE = "localhost/greeter-k8s/web:test"
PAGE = "hello from the greeter's cluster\n"


def web_behind_a_service(namespace: str, httpd_flags: str = "") -> str:
    """A busybox httpd Deployment serving /www on 8080, ready once it serves, behind the Service `web` (port 80)."""
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {namespace}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
        - name: httpd
          image: {WEB_IMAGE}
          imagePullPolicy: Never
          command: [httpd, -f, {httpd_flags}-p, "8080", -h, /www]
          ports: [{{containerPort: 8080}}]
          readinessProbe:
            httpGet: {{path: /index.html, port: 8080}}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {namespace}}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


SMOKE = (
    web_behind_a_service("smoke", httpd_flags="-v, ")
    + f"""
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: smoke}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
    - name: client
      image: {WEB_IMAGE}
      imagePullPolicy: Never
      command: [sleep, "3600"]
"""
)

VOLUME = """
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: smoke}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 16Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: writer, namespace: smoke}
spec:
  terminationGracePeriodSeconds: 0
  securityContext: {runAsUser: 1000, runAsGroup: 1000}
  containers:
    - name: writer
      image: localhost/greeter-k8s/web:test
      imagePullPolicy: Never
      command: [sh, -c, "echo written by uid $(id -u) > /data/proof && exec sleep 3600"]
      volumeMounts: [{name: data, mountPath: /data}]
  volumes:
    - name: data
      persistentVolumeClaim: {claimName: data}
"""

# A Deployment behind a Service, in a namespace of its own, and two client pods: only one of them has the label
# the policy admits.
ACCESS_LABEL = "web-access"
GUARDED = (
    """
apiVersion: v1
kind: Namespace
metadata: {name: guarded}
---
"""
    + web_behind_a_service("guarded")
    + f"""
---
apiVersion: v1
kind: Pod
metadata: {{name: labelled, namespace: guarded, labels: {{{ACCESS_LABEL}: granted}}}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
    - {{name: client, image: {WEB_IMAGE}, imagePullPolicy: Never, command: [sleep, "3600"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: unlabelled, namespace: guarded}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
    - {{name: client, image: {WEB_IMAGE}, imagePullPolicy: Never, command: [sleep, "3600"]}}
"""
)
POLICY = f"""
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: web-from-labelled-pods, namespace: guarded}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  policyTypes: [Ingress]
  ingress:
    - from: [{{podSelector: {{matchLabels: {{{ACCESS_LABEL}: granted}}}}}}]
      ports: [{{protocol: TCP, port: 8080}}]
"""
# How long a client may try: kube-router rejects a connection the policy denies, which fails within about a second
# here. (`timeout`, since Debian 12's static busybox wget crashes when given its own -T.)
CONNECT_TIMEOUT_S = 5
POLICY_DEADLINE_S = 60.0  # kube-router syncs on the policy's and the pods' events, well within a second here


@pytest.fixture(scope="module")
def smoke(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    """The web image loaded, the smoke namespace with the Deployment, its Service and a client pod, Ready."""
    tar = busybox_image(tmp_path_factory.mktemp("images") / "web.tar", WEB_IMAGE, {"/www/index.html": PAGE})
    cluster.import_image(tar)
    cluster.kubectl("create", "namespace", "smoke")
    cluster.kubectl("apply", "-f", "-", input=SMOKE)
    cluster.kubectl("-n", "smoke", "wait", "--for=condition=Available", "deployment/web", "--timeout=120s")
    cluster.kubectl("-n", "smoke", "wait", "--for=condition=Ready", "pod/client", "--timeout=120s")
    # A Service answers once kube-proxy has written its rules for the ready endpoint, a sync after the pod's
    # readiness (until then its address is rejected: "No route to host"); the API shows no sign of that sync.
    cluster.wait("the web Service answering the client pod", lambda: _service_answers(cluster), timeout=60)
    return cluster  # the cluster's teardown deletes every workload (quicker than deleting the namespace)


def _service_answers(cluster: Cluster) -> bool:
    try:
        cluster.kubectl(
            "-n", "smoke", "exec", "client", "--", "timeout", "5", "wget", "-q", "-O", "/dev/null", "http://web/"
        )
    except RuntimeError:  # kubectl's exit code: wget's failure
        return False
    return True


def test_node_is_ready_at_the_built_version(cluster: Cluster) -> None:
    assert cluster.node_ready()
    assert K8S_VERSION in cluster.kubectl("version")
    nodes = cluster.kubectl("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}")
    assert nodes == NODE_NAME
    assert cluster.deployment_available("kube-system", "coredns")


def test_deployment_serves_through_a_service_name(smoke: Cluster) -> None:
    fqdn = f"web.smoke.svc.{CLUSTER_DOMAIN}"
    cluster_ip = smoke.kubectl("-n", "smoke", "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")

    lookup = smoke.kubectl("-n", "smoke", "exec", "client", "--", "nslookup", fqdn)
    page = smoke.kubectl("-n", "smoke", "exec", "client", "--", "timeout", "10", "wget", "-q", "-O", "-", "http://web/")

    assert DNS_IP in lookup
    assert cluster_ip in lookup
    assert page == PAGE


def test_exec_and_logs(smoke: Cluster) -> None:
    smoke.kubectl("-n", "smoke", "exec", "client", "--", "wget", "-q", "-O", "/dev/null", "http://web/index.html")

    client_ip = smoke.kubectl("-n", "smoke", "get", "pod", "client", "-o", "jsonpath={.status.podIP}")
    logs = smoke.kubectl("-n", "smoke", "logs", "deployment/web")
    whoami = smoke.kubectl("-n", "smoke", "exec", "deploy/web", "--", "id", "-u")

    assert f"[::ffff:{client_ip}]:" in logs  # httpd -v logs each client's address: the pod's own, not translated
    assert whoami.strip() == "0"


def test_claim_binds_and_a_non_root_container_writes(smoke: Cluster) -> None:
    smoke.kubectl("apply", "-f", "-", input=VOLUME)
    smoke.kubectl("-n", "smoke", "wait", "--for=condition=Ready", "pod/writer", "--timeout=120s")

    phase = smoke.kubectl("-n", "smoke", "get", "pvc", "data", "-o", "jsonpath={.status.phase}")
    storage_class = smoke.kubectl("-n", "smoke", "get", "pvc", "data", "-o", "jsonpath={.spec.storageClassName}")
    proof = smoke.kubectl("-n", "smoke", "exec", "writer", "--", "cat", "/data/proof")

    assert phase == "Bound"
    assert storage_class == "local-path"
    assert proof == "written by uid 1000\n"
    volumes = list(Path(smoke.layout.volumes).iterdir())
    assert len(volumes) == 1, volumes  # the volume lives in the cluster's folder


def test_pods_reach_nothing_beyond_the_clusters_networks(smoke: Cluster) -> None:
    routes = smoke.kubectl("-n", "smoke", "exec", "client", "--", "ip", "route")
    # A route lookup only: it sends nothing (203.0.113.1 is a documentation address).
    lookup = smoke.kubectl("-n", "smoke", "exec", "client", "--", "ip", "route", "get", "203.0.113.1", check=False)
    outside = smoke.kubectl("-n", "smoke", "exec", "client", "--", "nslookup", "example.com", check=False)

    assert "default" not in routes, routes
    assert "10.244.0.0/16" in routes
    assert "10.96.0.0/16" in routes
    assert "unreachable" in lookup.lower(), lookup
    assert "can't find example.com: SERVFAIL" in outside, outside  # CoreDNS answers cluster names only


def _fetch(cluster: Cluster, pod: str, url: str) -> tuple[str, float]:
    """What wget in the pod got from `url` (the page, or wget's complaint), and how long it took."""
    start = time.monotonic()
    argv = ["timeout", str(CONNECT_TIMEOUT_S), "wget", "-q", "-O", "-", url]
    output = cluster.kubectl("-n", "guarded", "exec", pod, "--", *argv, check=False)
    return output, time.monotonic() - start


def test_network_policy_admits_only_labelled_pods(smoke: Cluster) -> None:
    """Both clients reach the web Service; with the policy, only the labelled one does, whether through the Service
    or to the pod's address, and the other is refused within seconds; with the policy deleted, both do again. Each state
    is waited for (kube-router applies a change on the API's events), and how long it took is reported."""
    cluster = smoke
    cluster.kubectl("apply", "-f", "-", input=GUARDED)
    cluster.kubectl("-n", "guarded", "wait", "--for=condition=Available", "deployment/web", "--timeout=120s")
    cluster.kubectl(
        "-n", "guarded", "wait", "--for=condition=Ready", "pod/labelled", "pod/unlabelled", "--timeout=120s"
    )
    pod_ip = cluster.kubectl("-n", "guarded", "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].status.podIP}")
    service, direct = "http://web/", f"http://{pod_ip}:8080/"

    def reach(pod: str, url: str = service) -> bool:
        return _fetch(cluster, pod, url)[0] == PAGE

    took = {
        "both_reach_before_s": cluster.wait(
            "both clients reach the web Service",
            lambda: reach("unlabelled") and reach("labelled"),
            timeout=POLICY_DEADLINE_S,
        )
    }

    cluster.kubectl("apply", "-f", "-", input=POLICY)
    took["policy_enforced_s"] = cluster.wait(
        "the policy shuts out the unlabelled client while the labelled one still gets in",
        lambda: not reach("unlabelled") and reach("labelled"),
        timeout=POLICY_DEADLINE_S,
    )
    denied, denied_s = _fetch(cluster, "unlabelled", service)
    denied_direct, _ = _fetch(cluster, "unlabelled", direct)
    assert "Connection refused" in denied, denied  # kube-router REJECTs: the connection itself fails, not DNS
    assert "Connection refused" in denied_direct, denied_direct
    assert denied_s < CONNECT_TIMEOUT_S, denied_s
    assert reach("labelled") and reach("labelled", direct)

    cluster.kubectl("-n", "guarded", "delete", "networkpolicy", "web-from-labelled-pods")
    took["policy_lifted_s"] = cluster.wait(
        "with the policy deleted, the unlabelled client gets in again",
        lambda: reach("unlabelled") and reach("unlabelled", direct),
        timeout=POLICY_DEADLINE_S,
    )
    report = {
        **{name: round(seconds, 1) for name, seconds in took.items()},
        "denied_connection_s": round(denied_s, 1),
        "kube_router_rss_mib": cluster.rss_mib("kube-router"),
    }
    print(f"[network policy] {json.dumps(report)}")
    (cluster.work_dir.parent / "network-policy-timings.json").write_text(json.dumps(report, indent=2) + "\n")


def test_kube_router_reads_what_it_needs_and_changes_nothing(cluster: Cluster) -> None:
    def can(*argv: str) -> bool:
        answer = cluster.kubectl("auth", "can-i", *argv, f"--as={KUBE_ROUTER_USER}", check=False)
        return answer.splitlines()[0] == "yes"

    kinds = ("pods", "namespaces", "nodes", "services", "endpoints", "networkpolicies.networking.k8s.io")
    for kind in (*kinds, "endpointslices.discovery.k8s.io"):
        assert can("list", kind) and can("watch", kind), kind
    assert can("get", f"nodes/{NODE_NAME}")
    for verb, kind in (
        ("get", "secrets"),
        ("get", "pods"),
        ("create", "pods"),
        ("update", "nodes"),
        ("patch", "networkpolicies.networking.k8s.io"),
        ("get", "configmaps"),
    ):
        assert not can(verb, kind), (verb, kind)


def test_kube_router_listens_on_nothing(cluster: Cluster) -> None:
    pid = cluster.daemon_pid("kube-router")
    sockets = subprocess.run(["ss", "-Hltunp"], capture_output=True, text=True, check=True).stdout
    assert f"pid={pid}," not in sockets, sockets
