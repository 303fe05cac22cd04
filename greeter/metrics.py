"""Prometheus metrics of the function endpoint.

Under gunicorn every worker is its own process: greeter-serve sets PROMETHEUS_MULTIPROC_DIR, so
prometheus_client writes each value to a shared mmap file and /metrics sums them over workers.
"""

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

# Messages per request: 1 with many keys or a trickle, hundreds on a backlog with few keys.
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class GreeterMetrics:
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
        self.dead_letters = Counter(
            "greeter_dead_letters",
            "Records sent to the dead-letter topic.",
            ["reason"],
            registry=self.registry,
        )
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

    def exposition(self) -> bytes:
        """The metrics in Prometheus text format, summed over all workers when under gunicorn."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
