"""The modes benchmark at its smallest, end to end: one round of each mode on a fresh stack. Keeps the
benchmark working and its processes charged to the right mode; its figures at this size mean nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import modes

pytestmark = pytest.mark.e2e

SMOKE = ["--repeat", "1", "--names", "10", "--messages", "1000", "--warmup", "0", "--idle-seconds", "2"]


@pytest.mark.timeout(480)
def test_each_mode_is_measured_on_its_own_processes_and_verifies(tmp_path: Path) -> None:
    out = tmp_path / "modes.json"

    code = modes.main([*SMOKE, "--out", str(out)])

    result = json.loads(out.read_text())
    (round_,) = result["rounds"]
    runtime = {"single": {"runtime"}, "cluster": {"jobmanager", "taskmanager"}}
    for mode in ("single", "cluster"):
        measured = round_[mode]
        backlog = measured["backlog"]
        assert backlog["correct"], backlog["problems"]
        assert backlog["greetings"] == 1000
        assert set(backlog["peak_rss_mb"]) == {"kafka", "greeter"} | runtime[mode]
        assert set(measured["idle"]["peak_rss_mb"]) == {"kafka", "greeter"} | runtime[mode]
        assert measured["idle"]["peak_rss_mb_total"] == sum(measured["idle"]["peak_rss_mb"].values())
        # The first greeting comes after the job runs: both are timed from the start of `up`.
        assert 0 < measured["up_seconds"] < measured["first_greeting_seconds"]
        assert measured["job_failures"] == 0
        assert result["summary"][mode]["backlog.greetings_per_s_from_first_sent"] > 0
    assert result["correct"] and code == 0
