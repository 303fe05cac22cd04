"""Prometheus metrics of the function endpoint.

Under gunicorn every worker is its own process: greeter-serve sets MULTIPROC_DIR_VARIABLE, so
prometheus_client writes each value to a shared mmap file and /metrics sums them over workers.

Every value write in that mode checks the process id, takes a lock and packs into the mmap, four writes per
request: more than the bulk writes below cost (BENCHMARKS.md, "The metrics written in bulk"). So the
per-request values (both histograms and greeter_missing_state_replies) are counted in plain Python and
written to prometheus_client in one `inc(n)` per bucket: every FLUSH_SECONDS by a daemon thread started in
the worker on its first request, before this process builds a /metrics exposition, and at worker exit
(gunicorn's worker_exit hook calls flush_all). A scrape sees another worker's requests at most FLUSH_SECONDS
late; a worker killed without a graceful exit (SIGKILL) loses at most its last FLUSH_SECONDS. The rare
rejected, failed and dead-letter counters are written directly. Histogram has no public bulk write: _Pending is
the one place that writes its values (tests/unit/test_dependency_adapters.py holds it to prometheus_client's
version).

Those three counters are labelled, and each label value they can take starts at 0: a series that first appears
at 1 has no earlier sample, so Prometheus's rate() and increase() would not count the first refusal, failure or
dead letter, and the alert rules (deploy/monitoring/alerts.yml) would miss it.
"""

import logging
import os
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from protos.generated.greeter_pb2 import DeadLetterReason

log = logging.getLogger("greeter.web.metrics")

# prometheus_client's variable (read by the library itself): the directory its multi-process mode writes to.
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# Messages per request: 1 with many keys or a trickle, hundreds on a backlog with few keys.
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

# The label values the counters start at 0 with: every status StatefunEndpoint refuses or fails a request with
# (tests/protocol/test_endpoint.py holds the endpoint to them), every reason a record is dead-lettered for.
REFUSED_STATUSES = ("400", "404", "405", "413")
FAILED_STATUSES = ("500",)
DEAD_LETTER_REASONS = tuple(name for name, number in DeadLetterReason.items() if number)  # 0 is UNSPECIFIED

# How often pending observations are written to prometheus_client; read at every wait (tests change it).
FLUSH_SECONDS = 0.25
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class _Pending:
    """Observations of one Histogram not yet written to it: a count per bucket and their sum."""

    __slots__ = ("_histogram", "bounds", "counts", "total")

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        # prometheus_client's own bounds (floats, +Inf appended): index i here is its bucket i.
        # prometheus_client has no public accessor for them: the bound is tests/unit/test_metrics.py, which
        # checks the bulk writes against one observe() per request, byte for byte.
        self.bounds = tuple(histogram._upper_bounds)  # noqa: SLF001  # no public accessor (see above)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def add(self, value: float) -> None:
        # The first bucket with value <= bound, as Histogram.observe picks it.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def write(self) -> None:
        """Write and forget what is pending. Histogram has no public bulk API: its value objects do it."""
        if not any(self.counts):
            return
        # Taken and zeroed first: a write that fails half way must not be written again by the next flush.
        counts, total = self.counts, self.total
        self.counts, self.total = [0] * len(self.bounds), 0.0
        histogram = self._histogram
        histogram._sum.inc(total)  # noqa: SLF001  # Histogram has no public bulk write (see write's docstring)
        for index, count in enumerate(counts):
            if count:
                histogram._buckets[index].inc(count)  # noqa: SLF001  # the same


class GreeterMetrics:
    """The endpoint's Prometheus metrics, in a registry per app; per-request values counted here, written in bulk."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series only add noise to every scrape
        # A registry per app keeps tests that build several apps apart.
        self.registry = CollectorRegistry(auto_describe=True)
        # Answered requests are counted by the latency histogram (greeter_request_seconds_count).
        self.rejected = Counter(
            "greeter_rejected_requests",
            "Requests to /statefun answered with a 4xx, by status.",
            ["status"],
            registry=self.registry,
        )
        self.failed = Counter(
            "greeter_failed_requests",
            "Requests to /statefun answered with a 5xx (the function raised), by status.",
            ["status"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "greeter_dead_letters",
            "Records sent to the dead-letter topic.",
            ["reason"],
            registry=self.registry,
        )
        for counter, values in (
            (self.rejected, REFUSED_STATUSES),
            (self.failed, FAILED_STATUSES),
            (self.dead_letters, DEAD_LETTER_REASONS),
        ):
            for value in values:
                counter.labels(value)  # the series, at 0 (see the module's docstring)
        self.state_requests = Counter(
            "greeter_missing_state_replies",
            "Batches answered with a request for state the runtime did not send.",
            registry=self.registry,
        )
        # Its _sum is the number of messages delivered to the function, its _count the batches.
        self.batch_size = Histogram(
            "greeter_invocations_per_request",
            "Messages per /statefun request (batches asking for state excluded).",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.latency = Histogram(
            "greeter_request_seconds",
            "Time to answer one /statefun request (200), body read to reply built.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        # The request thread adds under _lock and the flush thread (or /metrics, or worker exit) writes and
        # zeroes under it: `counts[i] += 1` is a read-modify-write the GIL does not make atomic, and a
        # gthread worker would add from several threads. Uncontended, the lock costs ~0.1 us.
        self._lock = threading.Lock()
        self._batch_size = _Pending(self.batch_size)
        self._latency = _Pending(self.latency)
        self._state_requests = 0
        with _live_lock:
            _live.add(self)

    def answered(self, invocations: int, seconds: float) -> None:
        """One request answered 200 in `seconds`: `invocations` messages, 0 = a reply asking for state."""
        with self._lock:
            if invocations:
                self._batch_size.add(invocations)
            else:
                self._state_requests += 1
            self._latency.add(seconds)
        if not _flusher_started:
            _start_flusher()

    def flush(self) -> None:
        """Write the pending observations to prometheus_client (so to this process's mmap files)."""
        # Written under the lock, so a /metrics that flushes waits for a flush the thread has begun.
        with self._lock:
            self._batch_size.write()
            self._latency.write()
            if self._state_requests:
                self.state_requests.inc(self._state_requests)
                self._state_requests = 0

    def exposition(self) -> bytes:
        """The metrics in Prometheus text format, summed over all workers when under gunicorn."""
        self.flush()
        if os.environ.get(MULTIPROC_DIR_VARIABLE):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            registry.register(ServerMemory(master=os.getppid()))  # this worker's parent: gunicorn's master
            return generate_latest(registry)
        registry = CollectorRegistry()
        registry.register(ServerMemory(master=None))
        return generate_latest(self.registry) + generate_latest(registry)

    def forget_parent(self) -> None:
        """Start with nothing pending and a fresh lock; called in a forked child.
        The parent still holds (and will flush) what was pending, and its lock may have been held by a thread that
        did not follow the fork.
        """
        self._lock = threading.Lock()
        self._batch_size = _Pending(self.batch_size)
        self._latency = _Pending(self.latency)
        self._state_requests = 0


class ServerMemory(Collector):
    """The resident memory of the server's processes, read from /proc at each scrape. Under gunicorn, `master` is
    its master process: it and its workers (its children). Without (`master` None): this process alone.
    prometheus_client's own process metrics are off in its multi-process mode (they would be one worker's).
    """

    def __init__(self, master: int | None) -> None:
        self.master = master

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One gauge per process, labelled with its role and PID."""
        family = GaugeMetricFamily(
            "greeter_process_resident_memory_bytes",
            "Resident memory of each greeter process (gunicorn's master and its workers).",
            labels=["role", "pid"],
        )
        for role, pid in self.processes():
            rss = _resident_bytes(pid)
            if rss is not None:  # gone since it was listed
                family.add_metric([role, str(pid)], rss)
        yield family

    def processes(self) -> list[tuple[str, int]]:
        """(role, PID) of each process: the master and each of its children as a worker, or this one alone."""
        if self.master is None:
            return [("server", os.getpid())]
        children = Path(f"/proc/{self.master}/task/{self.master}/children")
        try:
            workers = [int(pid) for pid in children.read_text().split()]
        except OSError:  # no /proc (not Linux): the master alone
            workers = []
        return [("master", self.master), *(("worker", pid) for pid in workers)]


def _resident_bytes(pid: int) -> int | None:
    try:
        resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * _PAGE_SIZE


# Every GreeterMetrics of this process (tests build several apps), flushed by one thread.
_live: "weakref.WeakSet[GreeterMetrics]" = weakref.WeakSet()
_live_lock = threading.Lock()
# Per process: gunicorn forks workers from a master that loaded the app, and threads do not survive a fork.
_flusher_started = False


def flush_all() -> None:
    """Write every pending observation of this process (gunicorn's worker_exit hook calls it)."""
    with _live_lock:
        live = list(_live)
    for metrics in live:
        metrics.flush()


def _flush_forever() -> None:
    while True:
        time.sleep(FLUSH_SECONDS)
        try:
            flush_all()
        except Exception:  # a failed write must not stop later flushes
            log.exception("could not write the pending metrics")


def _start_flusher() -> None:
    global _flusher_started
    with _live_lock:
        if not _flusher_started:
            threading.Thread(target=_flush_forever, name="greeter-metrics-flush", daemon=True).start()
            _flusher_started = True


def _after_fork_in_child() -> None:
    global _flusher_started, _live_lock
    _flusher_started = False  # the next request starts this process's own thread
    _live_lock = threading.Lock()
    for metrics in list(_live):
        metrics.forget_parent()


os.register_at_fork(after_in_child=_after_fork_in_child)
