"""Which tests share a worker when `scripts/test` runs the suite on two (pytest-xdist, `--dist loadgroup`)."""

from __future__ import annotations

import pytest

# Folder -> the xdist group its tests run in, one after another on one worker:
# - compose/ and k8s/ each start machine-wide daemons (a Docker engine, a Kubernetes cluster: containerd, iptables
#   chains, the FORWARD policy), so they never run at the same time as each other;
# - e2e/ shares one session-scoped stack, started once rather than once per worker.
SERIAL_GROUPS = {"compose": "containers", "k8s": "containers", "e2e": "e2e-stack"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.parent.relative_to(item.config.rootpath / "tests").parts[0]
        if folder in SERIAL_GROUPS:
            item.add_marker(pytest.mark.xdist_group(SERIAL_GROUPS[folder]))
