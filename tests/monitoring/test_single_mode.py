"""The default stack (the single-mode runtime: one JVM serving the job's and its tasks' metrics) under a real
Prometheus that scrapes it and evaluates deploy/monitoring/alerts.yml every second: an idle pipeline raises no
alert; every panel of the dashboard shows data under load; the greeter killed fires GreeterDown and
StatefunRemoteInvocationFailures, which resolve once it is back; the runtime killed fires FlinkJobManagerDown.

One stack for the module, its tests in this order: the idle window first, before any poison record (a dead letter
keeps GreeterDeadLetters up for 5 minutes, by design), the faults last.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stack.faults import kill, respawn

from .live import (
    ALERTS,
    Monitored,
    alert_durations,
    every_panel_shows_the_load,
    fire_and_resolve,
    load,
    monitored_stack,
    no_alert_fires,
    wait_for_throughput,
)

pytestmark = pytest.mark.e2e

# Past the longest `for:`, so any rule whose condition holds on an idle pipeline has time to fire.
IDLE_MARGIN_S = 30


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    folder = tmp_path_factory.mktemp("monitoring-single")
    with monitored_stack(folder, "monitoring single", rules=(ALERTS,), mode="single") as stack:
        yield stack


@pytest.mark.timeout(900)
def test_an_idle_pipeline_raises_no_alert(monitored: Monitored) -> None:
    with load(monitored):
        wait_for_throughput(monitored)
    window = max(alert_durations(monitored.prometheus).values()) + IDLE_MARGIN_S
    pending = no_alert_fires(monitored.prometheus, window)
    seen = ", ".join(f"{name} at {at:.0f} s" for name, at in sorted(pending.items())) or "none"
    print(f"\n[alert] idle for {window:.0f} s: none fired; pending for a while, never firing: {seen}", flush=True)


@pytest.mark.timeout(300)
def test_every_panel_shows_data_under_load(monitored: Monitored) -> None:
    every_panel_shows_the_load(monitored, jvms=1)


@pytest.mark.timeout(600)
def test_the_greeter_killed_fires_its_alerts_until_it_is_back(monitored: Monitored) -> None:
    stack = monitored.stack
    with load(monitored):
        wait_for_throughput(monitored)
        fire_and_resolve(
            monitored,
            ("GreeterDown", "StatefunRemoteInvocationFailures"),
            fault=lambda: kill(stack, "greeter"),
            repair=lambda: respawn(stack, "greeter"),
            # The failures' rate looks back 1 minute: it falls to 0 a minute after the last failed attempt.
            resolve_within_s=90,
        )


@pytest.mark.timeout(600)
def test_the_runtime_killed_fires_jobmanager_down_until_it_is_back(monitored: Monitored) -> None:
    stack = monitored.stack
    with load(monitored):
        wait_for_throughput(monitored)
        fire_and_resolve(
            monitored,
            ("FlinkJobManagerDown",),
            fault=lambda: kill(stack, "runtime"),
            repair=lambda: respawn(stack, "runtime"),
            resolve_within_s=30,
        )
