"""The cluster-mode stack (a JobManager and a TaskManager, each with its own reporter port, the topology of the
container stacks) under a real Prometheus that scrapes it and evaluates deploy/monitoring/alerts.yml every second:
every panel of the dashboard shows data under load, one memory and GC line per JVM; the TaskManager killed fires
FlinkJobRestarted (the job restarts) and FlinkTaskManagerDown, which resolves once it is back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stack.faults import kill, respawn

from .live import (
    ALERTS,
    Monitored,
    every_panel_shows_the_load,
    fire_and_resolve,
    load,
    monitored_stack,
    wait_for_throughput,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    folder = tmp_path_factory.mktemp("monitoring-cluster")
    with monitored_stack(folder, "monitoring cluster", rules=(ALERTS,), mode="cluster") as stack:
        yield stack


@pytest.mark.timeout(300)
def test_every_panel_shows_data_under_load(monitored: Monitored) -> None:
    every_panel_shows_the_load(monitored, jvms=2)


@pytest.mark.timeout(600)
def test_the_taskmanager_killed_fires_the_restart_alert(monitored: Monitored) -> None:
    stack = monitored.stack
    with load(monitored):
        wait_for_throughput(monitored)
        fire_and_resolve(
            monitored,
            ("FlinkJobRestarted", "FlinkTaskManagerDown"),
            fault=lambda: kill(stack, "taskmanager"),
            repair=lambda: respawn(stack, "taskmanager"),
            resolve_within_s=30,
            # FlinkJobRestarted stays up for 5 minutes after a restart, by design: only the TaskManager's resolves.
            resolving=("FlinkTaskManagerDown",),
        )
        wait_for_throughput(monitored)  # the job runs again on the new TaskManager
