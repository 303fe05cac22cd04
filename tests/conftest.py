"""How `scripts/test` shares the suite between its two pytest-xdist workers.

Each test module (or class) is one unit of work, as with `--dist loadscope`, so a module's fixtures start once. The
folders in SERIAL_GROUPS are one unit each, run one test after another on one worker:
- compose/ and k8s/ both start machine-wide daemons (a Docker engine, a Kubernetes cluster: containerd, iptables
  chains, the FORWARD policy), so they share one unit and never overlap;
- e2e/ shares one stack (package-scoped), started once rather than once per worker.

A scheduler of our own rather than `--dist loadgroup` with `xdist_group` marks: pytest-xdist 3.8 writes the group
into `item._nodeid`, which pytest 9 no longer reads, so those marks group nothing (tests/unit/test_worker_units.py
runs a suite on two workers and checks where each test ran).
"""

from __future__ import annotations

from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

SERIAL_GROUPS = {"compose": "containers", "k8s": "containers", "e2e": "e2e-stack"}


class ModuleOrFolderScheduling(LoadScopeScheduling):
    """`--dist loadscope` (a module or class per unit of work), with each SERIAL_GROUPS folder one unit."""

    def _split_scope(self, nodeid: str) -> str:
        top, _, rest = nodeid.partition("/")
        folder = rest.partition("/")[0]
        if top == "tests" and folder in SERIAL_GROUPS:
            return SERIAL_GROUPS[folder]
        return super()._split_scope(nodeid)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadScopeScheduling:
    return ModuleOrFolderScheduling(config, log)
