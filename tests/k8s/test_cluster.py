"""The cluster itself, as the deploy/k8s tests will use it: an image loaded without a registry runs as a
Deployment, its Service resolves through CoreDNS from another pod and answers, `kubectl exec` and `logs` work,
a claim on the default StorageClass binds and a non-root container writes to it; and pods reach nothing beyond the
cluster's own networks."""

from __future__ import annotations

from pathlib import Path

import pytest

from .cluster import Cluster
from .cluster.cluster import CLUSTER_DOMAIN, DNS_IP, K8S_VERSION, NODE_NAME
from .cluster.images import busybox_image

# The first test pays for the cluster's start (and, on a new machine, for building Kubernetes: about 10 minutes).
pytestmark = pytest.mark.timeout(2400)

WEB_IMAGE = "localhost/greeter-k8s/web:test"
PAGE = "hello from the greeter's cluster\n"

SMOKE = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: smoke}}
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
          command: [httpd, -f, -v, -p, "8080", -h, /www]
          ports: [{{containerPort: 8080}}]
          readinessProbe:
            httpGet: {{path: /index.html, port: 8080}}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: smoke}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
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
