"""The memory profile at its smallest, end to end, in both modes: every process measured, every JVM's heap and
native memory read with jcmd. Keeps the profile working; its figures at this size mean
nothing beyond being a JVM's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import profile_memory

pytestmark = pytest.mark.e2e

RUNTIME = {"single": {"runtime"}, "cluster": {"jobmanager", "taskmanager"}}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", ["single", "cluster"])
def test_each_process_and_jvm_is_measured_after_start_and_after_each_backlog(mode: str, tmp_path: Path) -> None:
    out = tmp_path / "memory.json"

    code = profile_memory.main(["--mode", mode, "--names", "10,1000", "--messages", "1000", "--out", str(out)])

    result = json.loads(out.read_text())
    assert code == 0 and result["mode"] == mode
    assert list(result["phases"]) == ["idle", "after 10 names", "after 1000 names"]
    for phase in result["phases"].values():
        processes = phase["processes"]
        assert set(processes) == {"kafka", "greeter"} | RUNTIME[mode]
        assert all(entry["rss_mb"] > 0 and entry["peak_rss_mb"] > 0 for entry in processes.values())
        for name in {"kafka"} | RUNTIME[mode]:
            heap = processes[name]["heap_mb"]
            assert 0 < heap["used"] <= heap["committed"], name
            nmt = processes[name]["nmt_committed_mb"]
            # what the collector reports in use fits in the heap NMT says is committed (read just after)
            assert heap["used"] <= nmt["Java Heap"]
            assert nmt["total"] > nmt["Java Heap"] + nmt["Class"]
    idle = result["phases"]["idle"]["processes"]
    assert all(entry["rss_mb"] <= entry["peak_rss_mb"] for entry in idle.values())  # the peak read after, since start
    assert result["phases"]["after 1000 names"]["greetings_per_s"] > 0
