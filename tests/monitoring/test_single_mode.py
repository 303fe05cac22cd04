"""The default stack (the single-mode runtime: one JVM serving the job's and its tasks' metrics) scraped by a real
Prometheus every second: every panel of the dashboard shows data under load."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .live import (
    Monitored,
    load,
    monitored_stack,
    reads_the_load,
    send_poison,
    send_refused_request,
    wait_for_every_panel,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    with monitored_stack(tmp_path_factory.mktemp("monitoring-single"), "monitoring single", mode="single") as stack:
        yield stack


@pytest.mark.timeout(300)
def test_every_panel_shows_data_under_load(monitored: Monitored) -> None:
    with load(monitored):
        poison = send_poison(monitored)
        send_refused_request(monitored)
        took = wait_for_every_panel(monitored.prometheus, 120)
        print(f"\n[monitoring] single mode: every panel had data {took:.0f} s after the load started", flush=True)
        reads_the_load(monitored, jvms=1, dead_letters=poison)
