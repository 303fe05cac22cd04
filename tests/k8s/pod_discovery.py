"""What Prometheus's Kubernetes discovery (role `pod`) makes of live pods, as file-discovery target groups: Debian's
Prometheus 2.42, the one here, is built without Kubernetes discovery, so tests/k8s hands it the pods this way and
runs deploy/monitoring/prometheus/kubernetes.yml's relabelling on them as written. The labels are those of
Prometheus's discovery/kubernetes/pod.go: per pod its namespace, name, address, phase, labels and annotations (each
name with the characters a label name cannot hold made `_`), and one target per container port, or per container
(init containers too) when it declares none."""

from __future__ import annotations

import re
from typing import Any

META = "__meta_kubernetes_"


def _name(key: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def _pod_labels(pod: dict[str, Any]) -> dict[str, str]:
    metadata, status = pod["metadata"], pod["status"]
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
    labels = {
        f"{META}namespace": metadata["namespace"],
        f"{META}pod_name": metadata["name"],
        f"{META}pod_ip": status["podIP"],
        f"{META}pod_phase": status["phase"],
        f"{META}pod_ready": str(ready).lower(),
        f"{META}pod_node_name": pod["spec"].get("nodeName", ""),
    }
    for kind, values in (("label", metadata.get("labels", {})), ("annotation", metadata.get("annotations", {}))):
        for key, value in values.items():
            labels[f"{META}pod_{kind}_{_name(key)}"] = value
            labels[f"{META}pod_{kind}present_{_name(key)}"] = "true"
    return labels


def pod_target_groups(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One file-discovery target group per pod that has an address."""
    groups = []
    for pod in pods:
        if not pod["status"].get("podIP"):
            continue  # discovery gives a pod no target before it has an address
        ip = pod["status"]["podIP"]
        spec = pod["spec"]
        for init, containers in ((False, spec["containers"]), (True, spec.get("initContainers", []))):
            for container in containers:
                common = {
                    **_pod_labels(pod),
                    f"{META}pod_container_name": container["name"],
                    f"{META}pod_container_image": container["image"],
                    f"{META}pod_container_init": str(init).lower(),
                }
                ports = container.get("ports", [])
                if not ports:  # an anonymous target at the pod's address alone
                    groups.append({"targets": [ip], "labels": common})
                for port in ports:
                    number = str(port["containerPort"])
                    groups.append({
                        "targets": [f"{ip}:{number}"],
                        "labels": {
                            **common,
                            f"{META}pod_container_port_name": port.get("name", ""),
                            f"{META}pod_container_port_number": number,
                            f"{META}pod_container_port_protocol": port.get("protocol", "TCP"),
                        },
                    })  # fmt: skip
    return groups


def with_file_discovery(config: dict[str, Any], targets_file: str, scrape_interval: str) -> dict[str, Any]:
    """`config` with each job's kubernetes_sd_configs replaced by the file of pod_target_groups, every other
    setting of the job (its relabelling above all) kept, and the scrape interval given."""
    jobs = []
    for job in config["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs") == [{"role": "pod"}], job["job_name"]
        jobs.append({**job, "file_sd_configs": [{"files": [targets_file]}]})
    return {
        **config,
        "global": {**config.get("global", {}), "scrape_interval": scrape_interval},
        "scrape_configs": jobs,
    }
