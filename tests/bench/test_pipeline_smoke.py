"""The pipeline benchmark at its smallest, end to end: a fresh stack and the Quix Streams peer beside it, and the
floor in the greeter's place in turn (--with-floor), a backlog and a fixed-rate run through each, one after the
other. Keeps the benchmark working; its figures at this size mean nothing. Builds the peer's virtualenv first
(scripts/bench-venv quix, from PyPI)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench import pipeline
from stack import daemons
from stack.config import StackConfig

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SMOKE = [
    "--names",
    "10",
    "--messages",
    "1000",
    "--warmup",
    "0",
    "--repeat",
    "1",
    "--rate",
    "200",
    "--latency-seconds",
    "2",
]
SMOKE += ["--checkpoint-interval-ms", "1000"]  # the 3-interval settle wait after each backlog stays short
SMOKE += ["--latency-also-at-ms", "2000", "--with-floor"]
SYSTEMS = ("statefun", "quix", "floor")


@pytest.mark.timeout(600)  # 167-251 s with the floor on a loaded machine
def test_every_system_verifies_and_the_result_has_every_field(tmp_path: Path) -> None:
    subprocess.run([str(ROOT / "scripts" / "bench-venv"), "quix"], check=True, timeout=240)
    out = tmp_path / "pipeline.json"

    code = pipeline.main([*SMOKE, "--out", str(out), "--run-dir", str(tmp_path / "run")])

    result = json.loads(out.read_text())
    (point,) = result["points"]
    (round_,) = point["rounds"]
    for system in SYSTEMS:
        backlog, trickle = round_[system]["throughput"], round_[system]["latency"]
        assert backlog["correct"], backlog["problems"]
        assert trickle["correct"], trickle["problems"]
        assert backlog["greetings"] == 1000
        assert trickle["greetings"] == 400
        # None when the whole backlog became visible in one transaction, likely at this size
        assert backlog["greetings_per_s_first_to_last"] is None or backlog["greetings_per_s_first_to_last"] > 0
        assert backlog["greetings_per_s_from_first_sent"] > 0
        assert 0 < trickle["p50_ms"] <= trickle["p99_ms"] <= trickle["max_ms"]
        for measure in (backlog, trickle):
            assert measure["cpu_seconds_per_1000_greetings_total"] > 0
            assert measure["peak_rss_mb"]["kafka"] > 0
            assert measure["failed_deliveries"] == 0  # no retried delivery inside a measured window
        summary = point["summary"][system]
        assert summary["correct"]
        assert set(summary["throughput.greetings_per_s_from_first_sent"]) == {"min", "median"}
    assert result["mode"] == "cluster"  # the default: the container and Kubernetes topology
    charged = {"kafka", "greeter", *daemons.runtime_names(StackConfig(mode="cluster"))}
    assert set(round_["statefun"]["throughput"]["cpu_seconds_per_1000_greetings"]) == charged
    assert set(round_["floor"]["throughput"]["cpu_seconds_per_1000_greetings"]) == charged  # in the greeter's place
    assert set(round_["quix"]["throughput"]["cpu_seconds_per_1000_greetings"]) == {"kafka", "quix"}
    assert round_["quix"]["throughput"]["peak_rss_mb"]["quix"] > 0
    assert round_["statefun"]["throughput"]["messages_per_request"] >= 1
    # Every ratio is this run's own medians divided, never a figure from elsewhere.
    for name, numerator, denominator in pipeline.RATIOS:
        ratios = point["summary"][name]
        assert "throughput.greetings_per_s_from_first_sent" in ratios and "latency.p99_ms" in ratios
        for key, ratio in ratios.items():
            ours, theirs = point["summary"][numerator][key]["median"], point["summary"][denominator][key]["median"]
            assert ratio == round(ours / theirs, 2), key
    # The floor took the greeter's port for its backlog, gave it back for our latency run, and took it again.
    assert result["floor"]["function_server_swaps"] == 3
    assert point["state_bytes"]["quix"]["rocksdb"] > 0
    assert result["peer_up_seconds"] > 0
    assert result["job_failures"] == 0
    assert result["failed_deliveries"] == 0  # the keep-alive worker: no delivery failed and was retried
    (other,) = result["latency_at_other_intervals"]
    assert other["checkpoint_interval_ms"] == 2000
    (other_point,) = other["points"]
    for system in SYSTEMS:
        (other_round,) = [r[system]["latency"] for r in other_point["rounds"]]
        assert other_round["correct"], other_round["problems"]
        assert other_round["greetings"] == 400
        assert other_point["summary"][system]["latency.p99_ms"]["median"] > 0
    assert other["job_failures"] == 0 and other["failed_deliveries"] == 0
    assert other["floor"]["function_server_swaps"] == 1
    assert code == 0
