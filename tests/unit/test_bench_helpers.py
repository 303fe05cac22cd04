"""The benchmark's pure helpers: who expects how many greetings, percentiles, the sweep flags, the summary."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench import endpoint, load, pipeline
from bench.baseline import serve_shim, worktree
from bench.profile_greeter import shares
from clitools.signals import StopFlag
from consumer.reading.loop import Limits, Reader
from protos.generated.greeter_pb2 import GreetResponse

from .test_consumer_verify import FakeConsumer, FakeMessage, message


def test_expected_counts_spread_the_records_round_robin_and_leave_out_names_never_sent() -> None:
    assert load.expected_counts(["a", "b", "c"], 7) == {"a": 3, "b": 2, "c": 2}
    assert load.expected_counts(["a", "b", "c"], 2) == {"a": 1, "b": 1}


def test_the_greeting_reader_notes_each_greeting_read_and_each_record_that_is_none() -> None:
    keyed_by_another = FakeMessage(b"Bob", GreetResponse(name="Alice", greeting="Welcome Alice").SerializeToString())
    fake = FakeConsumer([message("Alice", 1), keyed_by_another, message("Alice", 2)])
    stop = StopFlag()
    reader = load.GreetingReader(Reader(fake, Limits(), stop, lambda _text: None), stop)
    reader.start()
    reader.wait_for(2, deadline_s=30)
    seen = reader.finish()
    assert [(name, greeting) for _visible, name, greeting in seen] == [
        ("Alice", "Welcome Alice"),
        ("Alice", "Nice to see you again Alice"),
    ]
    assert len(reader.invalid) == 1 and "key 'Bob' differs from the name 'Alice'" in reader.invalid[0]
    assert reader.error is None and not reader.is_alive()


def test_name_pools_are_distinct_and_new_each_time() -> None:
    first, second = load.name_pool("tp", 3), load.name_pool("tp", 3)
    assert len(set(first)) == 3
    assert not set(first) & set(second)


def test_nearest_rank_percentile() -> None:
    values = [float(v) for v in range(1, 101)]
    assert load.percentile(values, 0.5) == 50
    assert load.percentile(values, 0.99) == 99
    assert load.percentile([7.0], 0.99) == 7


def test_names_and_systems_flags() -> None:
    assert pipeline.names_list("1,100,10000") == [1, 100, 10_000]
    assert pipeline.names_list("100") == [100]
    assert pipeline.systems_list("quix,statefun") == ["statefun", "quix"]
    for bad in ("0", "a,b", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            pipeline.names_list(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        pipeline.systems_list("flink")


def test_a_change_is_judged_at_one_name_and_at_a_body_over_64_kib_by_default(tmp_path: Path) -> None:
    assert pipeline.parse([]).names == [1, 100, 1_000_000]
    bodies = endpoint.write_bodies(tmp_path)
    assert 1 in bodies and max(path.stat().st_size for path in bodies.values()) > 64 * 1024


def test_with_floor_adds_the_floor_to_the_systems_measured() -> None:
    assert pipeline.parse([]).systems == ["statefun", "quix"]
    assert pipeline.parse(["--with-floor"]).systems == ["statefun", "quix", "floor"]
    assert pipeline.parse(["--with-floor", "--systems", "statefun"]).systems == ["statefun", "floor"]


def test_the_floor_gets_names_of_its_own_and_the_peer_shares_ours() -> None:
    pools = pipeline.name_pools("tp100", 100, ["floor", "statefun", "quix"])
    assert pools["quix"] == pools["statefun"]
    assert not set(pools["floor"]) & set(pools["statefun"])  # the floor counts in the greeter's runtime
    assert [len(name) for name in pools["floor"]] == [len(name) for name in pools["statefun"]]


def _round(system_figures: dict[str, tuple[int, int]]) -> dict[str, Any]:
    return {
        system: {
            "throughput": {"correct": True, "greetings_per_s_first_to_last": rate},
            "latency": {"correct": True, "p50_ms": p50},
        }
        for system, (rate, p50) in system_figures.items()
    }


def test_summary_takes_min_and_median_and_the_ratio_of_the_medians() -> None:
    rounds = [
        _round({"statefun": (300, 1000), "quix": (100, 500)}),
        _round({"statefun": (200, 1200), "quix": (150, 700)}),
        _round({"statefun": (400, 1100), "quix": (200, 600)}),
    ]
    summary = pipeline.summarise(rounds, ["statefun", "quix"])
    assert summary["statefun"]["throughput.greetings_per_s_first_to_last"] == {"min": 200, "median": 300}
    assert summary["quix"]["latency.p50_ms"] == {"min": 500, "median": 600}
    assert summary["statefun_to_quix"]["throughput.greetings_per_s_first_to_last"] == 2.0
    assert summary["statefun"]["correct"] and summary["quix"]["correct"]
    assert "statefun_to_floor" not in summary and "floor_to_quix" not in summary


def test_with_the_floor_the_summary_has_ours_to_the_floor_and_the_floor_to_the_peer() -> None:
    rounds = [
        _round({"statefun": (300, 1000), "quix": (100, 500), "floor": (400, 1000)}),
        _round({"statefun": (200, 1200), "quix": (150, 700), "floor": (500, 800)}),
    ]
    rounds[1]["floor"]["latency"]["correct"] = False
    summary = pipeline.summarise(rounds, ["statefun", "quix", "floor"])
    assert summary["floor"]["throughput.greetings_per_s_first_to_last"] == {"min": 400, "median": 450}
    assert summary["statefun_to_floor"] == {
        "throughput.greetings_per_s_first_to_last": round(250 / 450, 2),
        "latency.p50_ms": round(1100 / 900, 2),
    }
    assert summary["statefun_to_floor"].keys() == summary["statefun_to_quix"].keys()
    assert summary["floor_to_quix"]["throughput.greetings_per_s_first_to_last"] == 3.6
    assert not summary["floor"]["correct"] and summary["statefun"]["correct"]
    lines = pipeline.table({"systems": ["statefun", "quix", "floor"], "points": [{"names": 1, "summary": summary}]})
    assert (
        "statefun/floor at 1 names (medians): latency.p50_ms 1.22, throughput.greetings_per_s_first_to_last 0.56"
        in lines
    )
    assert any(line.startswith("1      floor") and line.endswith("NO") for line in lines)


def test_profile_shares_go_to_the_innermost_known_component() -> None:
    raw = "\n".join(
        [
            'process 1:"gunicorn";run (asyncio/runners.py:118);handle (greeter/protocol/dispatch.py:10);'
            "inc (prometheus_client/values.py:104) 3",
            'process 1:"gunicorn";run (asyncio/runners.py:118);data_received (greeter/server/bounded_http.py:62) 1',
        ]
    )
    assert shares(raw) == [
        ("metrics (prometheus_client, multiprocess files)", 75.0),
        ("HTTP (uvicorn, greeter/server/bounded_http.py, a2wsgi)", 25.0),
    ]


def test_profile_leaves_out_the_metrics_flush_thread_asleep_but_counts_its_flushes() -> None:
    thread = 'process 1:"gunicorn";Thread.run (threading.py:982);_flush_forever (greeter/web/metrics.py:174)'
    raw = "\n".join(
        [
            f"{thread} 50",
            f"{thread};flush_all (greeter/web/metrics.py:160) 1",
            'process 1:"gunicorn";run (asyncio/runners.py:118);data_received (greeter/server/bounded_http.py:62) 3',
        ]
    )
    assert shares(raw) == [
        ("HTTP (uvicorn, greeter/server/bounded_http.py, a2wsgi)", 75.0),
        ("metrics (prometheus_client, multiprocess files)", 25.0),
    ]


def test_the_baseline_greeter_runs_from_its_own_worktree(tmp_path: Path) -> None:
    with worktree("HEAD") as tree:
        assert tree is not None and (tree / "greeter" / "server" / "serve.py").is_file()
        shim = serve_shim(tree, tmp_path / "bin") / "greeter-serve"
        result = subprocess.run(
            [str(shim), "--help"], capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": ""}
        )
        assert result.returncode == 0 and "greeter-serve" in result.stdout, result.stderr
    assert not tree.exists(), "the worktree is removed afterwards"


def test_the_endpoint_table_sets_each_server_against_the_bare_pair_round_by_round_and_by_cpu() -> None:
    def row(server: str, batch: int, rates: list[float], cpu: float) -> dict[str, Any]:
        return {
            "server": server,
            "invocations_per_request": batch,
            "requests_per_s_median": sorted(rates)[1],
            "requests_per_s_rounds": rates,
            "cpu_us_per_request_median": cpu,
        }

    http = [
        row(endpoint.BARE_PAIR_NAME, 1, [100.0, 200.0, 400.0], 100.0),
        row("greeter", 1, [50.0, 300.0, 200.0], 125.0),
        row("greeter", 10, [10.0, 10.0, 10.0], 500.0),  # no bare pair at 10: no line
    ]
    lines = endpoint.bare_pair_ratios(http)
    assert lines[2:] == ["| greeter | 1 | 1.00 | 0.50 / 1.50 / 0.50 | 125.0 vs 100.0 | 0.80 |"]
    assert endpoint.bare_pair_ratios(http[1:]) == []  # without the bare pair, no table
