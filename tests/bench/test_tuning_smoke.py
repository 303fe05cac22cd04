"""The tuning benchmark at its smallest, end to end, on the variants that change what the runtime parses (the
transport and its pool in module.yaml, the state backend in flink-conf, the egress producer's and the ingress
consumer's properties): each must start a real job and greet every record exactly once. Keeps the benchmark
working; its figures at this size mean nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import tuning

pytestmark = pytest.mark.e2e

VARIANTS = (
    "okhttp",
    "heap-state",
    "producer-defaults",
    "pool-size-16",
    "consumer-fetch-batching",
    "no-runtime-metrics",
)
SMOKE = ["--variants", ",".join(VARIANTS), "--names", "10,1000", "--messages", "1000", "--warmup", "0"]
SMOKE += ["--repeat", "1", "--rate", "200", "--latency-seconds", "2"]


@pytest.mark.timeout(600)
def test_variants_start_real_jobs_and_greet_every_record_exactly_once(tmp_path: Path) -> None:
    out = tmp_path / "tuning.json"

    code = tuning.main([*SMOKE, "--out", str(out)])

    result = json.loads(out.read_text())
    assert code == 0
    assert list(result["variants"]) == list(VARIANTS)
    for name in VARIANTS:
        (round_,) = result["variants"][name]["rounds"]
        for names in ("10", "1000"):
            backlog = round_["throughput"][names]
            assert backlog["correct"], backlog["problems"]
            assert backlog["greetings"] == 1000
            assert backlog["cpu_seconds_per_1000_greetings_total"] > 0
        assert round_["latency"]["correct"], round_["latency"]["problems"]
        assert round_["latency"]["greetings"] == 400
        assert round_["job_failures"] == 0
        summary = result["variants"][name]["summary"]
        assert summary["correct"] and summary["failed_deliveries"] == 0
        # the whole stack's peak memory: Kafka, the JobManager, the TaskManager and the greeter, each a JVM or more
        assert summary["rss_mb@1000"] > 4 * 50
    table = tuning.markdown(result)
    assert [row.split(" | ")[0] for row in table[2:]] == [f"| {name}" for name in VARIANTS]
    assert all(row.endswith("| 0 | 0 | yes |") for row in table[2:])
    # Each variant really ran with its setting, read back from the stack's rendered files and the greeter's log.
    ran = {name: result["variants"][name]["rounds"][0]["ran_with"] for name in VARIANTS}
    assert ran["okhttp"]["transport"] == "io.statefun.transports.v1/okhttp"
    assert ran["heap-state"]["state.backend"] == "hashmap"
    assert ran["heap-state"]["transport"] == "io.statefun.transports.v1/async"
    assert ran["producer-defaults"]["producer"] == {"linger.ms": "0", "batch.size": "16384"}
    assert ran["pool-size-16"]["pool_size"] == 16 and ran["okhttp"]["pool_size"] is None
    assert ran["consumer-fetch-batching"]["consumer"] == {"fetch.min.bytes": "32768", "fetch.max.wait.ms": "100"}
    assert ran["okhttp"]["consumer"] == {} and {r["mode"] for r in ran.values()} == {"cluster"}
    assert ran["okhttp"]["producer"] == {"linger.ms": "20", "batch.size": "262144"}
    assert {r["state.backend"] for name, r in ran.items() if name != "heap-state"} == {"rocksdb"}
    assert {r["greeter_worker_class"] for r in ran.values()} == {"greeter.server.worker.GreeterWorker"}
    # The reporter ran, and was scraped every second from the JobManager and the TaskManager, in every variant but
    # the one that switches it off.
    scrapes = {name: result["variants"][name]["rounds"][0]["runtime_metrics_scrapes"] for name in VARIANTS}
    assert ran["no-runtime-metrics"]["prometheus_reporter"] is None
    assert scrapes["no-runtime-metrics"] == {"served": 0, "failed": 0}
    for name in VARIANTS[:-1]:
        assert ran[name]["prometheus_reporter"] == "local.greeter.metrics.LoopbackPrometheusReporterFactory"
        assert scrapes[name]["served"] >= 2 and scrapes[name]["failed"] == 0, (name, scrapes[name])
