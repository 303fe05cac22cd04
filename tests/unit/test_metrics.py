"""greeter.web.metrics: per-request observations counted in Python and written to prometheus_client in bulk.

The written values must equal what one Histogram.observe per request would have produced, reach the
prometheus_client values without a scrape (the periodic flush), and, in a forked worker, reach that
worker's own multiprocess file.
"""

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest, multiprocess

import greeter.web.metrics
from greeter.web.metrics import MULTIPROC_DIR_VARIABLE, GreeterMetrics, ServerMemory

ROOT = Path(__file__).resolve().parents[2]

# Bounds of both histograms, their neighbours, 0 and values past the last bound.
_INVOCATIONS = st.one_of(
    st.sampled_from([1, 2, 3, 5, 6, 10, 999, 1000, 1001, 10000, 10001]), st.integers(min_value=0, max_value=10**6)
)
_SECONDS = st.one_of(
    st.sampled_from([0.0, 0.0001, 0.00010001, 0.00025, 0.001, 0.25, 0.2500001, 1.0, 1.5]),
    st.floats(min_value=0.0, max_value=100.0, allow_nan=False),
)


def observed_the_old_way(requests: list[tuple[int, float]]) -> GreeterMetrics:
    """A reference: the metrics as the endpoint wrote them before, one observe() or inc() per request."""
    reference = GreeterMetrics()
    for invocations, seconds in requests:
        if invocations:
            reference.batch_size.observe(invocations)
        else:
            reference.state_requests.inc()
        reference.latency.observe(seconds)
    return reference


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in registry.collect()
        for sample in metric.samples
    }


@settings(max_examples=200, deadline=None)
@given(
    requests=st.lists(st.tuples(_INVOCATIONS, _SECONDS), max_size=40),
    flush_after=st.sets(st.integers(min_value=0, max_value=40)),
)
def test_flushed_values_equal_one_observe_per_request(requests: list[tuple[int, float]], flush_after: set[int]) -> None:
    metrics = GreeterMetrics()
    for index, (invocations, seconds) in enumerate(requests):
        metrics.answered(invocations, seconds)
        if index in flush_after:
            metrics.flush()
    metrics.flush()
    got, want = samples(metrics.registry), samples(observed_the_old_way(requests).registry)
    assert got.keys() == want.keys()
    for key, value in want.items():
        if key[0].endswith("_sum"):  # added window by window: the same total up to float rounding
            assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
        else:
            assert got[key] == value, key


def test_exposition_is_byte_for_byte_the_one_of_observe(monkeypatch: pytest.MonkeyPatch) -> None:
    # The flush thread (started by earlier tests in this process) must not split the window: it calls flush_all.
    monkeypatch.setattr(greeter.web.metrics, "flush_all", lambda: None)
    requests = [(0, 0.0004), (1, 0.00009), (2, 0.0001), (7, 0.003), (10000, 0.3), (10001, 2.5), (0, 1.0)]
    metrics = GreeterMetrics()
    for invocations, seconds in requests:
        metrics.answered(invocations, seconds)
    metrics.rejected.labels(status="400").inc()
    reference = observed_the_old_way(requests)
    reference.rejected.labels(status="400").inc()
    # One window adds the latencies in the same order observe() did: even the sums are identical.
    exposition = metrics.exposition()
    expected = generate_latest(reference.registry)
    assert exposition.startswith(expected)
    # Then only this process's memory, which observe() has nothing to do with.
    memory = [line for line in exposition[len(expected) :].decode().splitlines() if not line.startswith("#")]
    assert memory == [
        f'greeter_process_resident_memory_bytes{{pid="{os.getpid()}",role="server"}} {memory[0].split()[-1]}'
    ]


def test_the_server_memory_is_the_masters_and_each_workers() -> None:
    # This process plays gunicorn's master; two children play its workers.
    script = "import sys; print('up', flush=True); sys.stdin.read()"
    children = [subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                for _ in range(2)]  # fmt: skip
    try:
        for child in children:  # read once the interpreter runs, not while it is still being loaded
            assert child.stdout is not None and child.stdout.readline() == b"up\n"
        registry = CollectorRegistry()
        registry.register(ServerMemory(master=os.getpid()))
        samples = {(s.labels["role"], int(s.labels["pid"])): s.value for m in registry.collect() for s in m.samples}
    finally:
        for child in children:
            child.communicate(b"")
    # (other children this test process may have are listed too, a zombie among them at 0 bytes: not judged)
    ours = {("master", os.getpid()), *(("worker", child.pid) for child in children)}
    assert set(samples) >= ours
    # A Python interpreter holds megabytes, read from /proc in bytes.
    assert all(samples[process] > 5_000_000 for process in ours), samples


def test_the_histogram_internals_the_flush_writes_through_are_still_there() -> None:
    # prometheus_client has no public API to add n observations to one bucket; greeter.web.metrics uses these
    # internals. A prometheus_client upgrade that renames or reorders them must fail here, not miscount.
    histogram = Histogram("pinned", "x", buckets=(1, 2.5), registry=None)
    assert histogram._upper_bounds == [1.0, 2.5, math.inf]
    assert len(histogram._buckets) == len(histogram._upper_bounds)
    histogram._buckets[1].inc(3)
    histogram._sum.inc(6.0)
    values = {(s.name, s.labels.get("le")): s.value for metric in histogram.collect() for s in metric.samples}
    assert values[("pinned_bucket", "1.0")] == 0
    assert values[("pinned_bucket", "2.5")] == 3
    assert values[("pinned_bucket", "+Inf")] == 3
    assert values[("pinned_count", None)] == 3
    assert values[("pinned_sum", None)] == 6.0


def test_an_idle_process_flushes_without_a_scrape() -> None:
    metrics = GreeterMetrics()
    metrics.answered(3, 0.002)  # and nothing after: only the flush thread can write it
    deadline = time.monotonic() + 5
    while metrics.registry.get_sample_value("greeter_invocations_per_request_sum") != 3.0:
        assert time.monotonic() < deadline, "the pending observation never reached prometheus_client"
        time.sleep(0.02)
    assert metrics.registry.get_sample_value("greeter_request_seconds_count") == 1.0


_FORKED_WORKER = textwrap.dedent(
    """
    import os, time
    import greeter.web.metrics as gm

    gm.FLUSH_SECONDS = 3600.0  # the parent's thread starts but does not flush during the test
    metrics = gm.GreeterMetrics()  # built before the fork, as gunicorn's master preloads the app
    metrics.answered(0, 0.001)  # pending in the parent only
    if os.fork() == 0:
        gm.FLUSH_SECONDS = 0.05
        metrics.answered(3, 0.002)
        metrics.answered(0, 0.003)
    time.sleep(120)  # both idle until the test kills them
    """
)


def test_a_forked_worker_flushes_its_own_observations_to_its_multiprocess_file(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-c", _FORKED_WORKER],
        cwd=ROOT,
        env={**os.environ, MULTIPROC_DIR_VARIABLE: str(directory)},
        start_new_session=True,
    )
    try:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(directory))
        deadline = time.monotonic() + 10
        # The child's two requests: until both are written, whatever else the files hold.
        while (registry.get_sample_value("greeter_request_seconds_count") or 0) < 2:
            assert process.poll() is None, "the script died"
            assert time.monotonic() < deadline, "the forked child's thread never flushed both requests"
            time.sleep(0.05)
        # Only those, not the parent's pending one it inherited at the fork: a flush writes all that is pending.
        assert registry.get_sample_value("greeter_request_seconds_count") == 2.0
        assert registry.get_sample_value("greeter_invocations_per_request_sum") == 3.0
        assert registry.get_sample_value("greeter_missing_state_replies_total") == 1.0
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
