"""A real single-node Kubernetes cluster for tests: `running_cluster(work_dir)` (cluster.py); README.md says more."""

from .cluster import Cluster, running_cluster

__all__ = ["Cluster", "running_cluster"]
