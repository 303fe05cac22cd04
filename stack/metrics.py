"""The counters `status --watch` turns into rates and quantiles, and the arithmetic on two readings of them.

Names/s in and greetings/s out are counters of Flink's Prometheus reporter on the JVMs that run the job's tasks:
the records the ingress's source operator emitted (`numRecordsOut`; StateFun's own per-function `in` counts each
answer of a remote call too, about twice the records at a trickle) and StateFun's per-function `outEgress`, the
records the greeter function sent to its egress (greetings, and dead letters, which share it). That is the cheapest
correct source: the reporter reads the counters when asked (Flink's REST API serves metrics from a cache refreshed
every 10 s, `metrics.fetcher.update-interval`, so a 1 s view would show steps), and it counts what the job did (the
end offsets of `greetings` also count each transaction's commit markers and aborted records, and move only when a
checkpoint commits). The greeter's latency comes from its own histogram on GET /metrics.
"""

from __future__ import annotations

import http.client
import math
import ssl
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from greeter.config.wiring import FUNCTION_TYPE

# Every operator's records emitted; the ingress's source operator is the one named `Source: ...`.
RECORDS_OUT = "flink_taskmanager_job_task_operator_numRecordsOut"
_SOURCE = "Source:"
# As the reporter names StateFun's metrics: Flink's operator scope, then the group `functions`, the function
# type's namespace and name (a `/` becomes `_`), then the metric.
EGRESSED = "flink_taskmanager_job_task_operator_functions_" + FUNCTION_TYPE.replace("/", "_") + "_outEgress"
LATENCY = "greeter_request_seconds"  # the greeter's histogram of answered requests

SCRAPE_TIMEOUT_S = 2.0
# What a scrape raises when its server does not answer, cuts the answer short or serves something unreadable.
SCRAPE_ERRORS = (OSError, http.client.HTTPException, ValueError)

# One series: its labels, sorted.
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Counts:
    """The records the ingress read from `names` and those the greeter function sent to its egress, per series (one
    per subtask attempt), read at `at` (time.monotonic()).
    """

    at: float
    ingested: Mapping[Labels, float]
    egressed: Mapping[Labels, float]


@dataclass(frozen=True)
class Buckets:
    """One reading of a histogram: (upper bound, cumulative count) per bucket, ascending, the last one +Inf."""

    counts: tuple[tuple[float, float], ...]

    @property
    def ceiling(self) -> float:
        """The highest finite bound: what a quantile above it is known to exceed."""
        return max((bound for bound, _ in self.counts if not math.isinf(bound)), default=math.inf)


def scrape(url: str, context: ssl.SSLContext | None = None, timeout: float = SCRAPE_TIMEOUT_S) -> str:
    """GET `url`'s Prometheus text; OSError (URLError, a refused connection, a timeout) when it does not answer."""
    with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
        text: str = response.read().decode()
    return text


def _samples(text: str, names: Iterable[str]) -> list[tuple[str, Labels, float]]:
    """The samples of metrics `names` in `text`. A TaskManager serves some 350 KB; parsing only the lines of these
    metrics takes well under a millisecond, all of it 70 ms.
    """
    prefixes = tuple(f"{name}{{" for name in names)
    wanted = "".join(line + "\n" for line in text.splitlines() if line.startswith(prefixes))
    return [
        (sample.name, tuple(sorted(sample.labels.items())), sample.value)
        for family in text_string_to_metric_families(wanted)
        for sample in family.samples
    ]


def counts(texts: Iterable[str], at: float | None = None) -> Counts:
    """The counters in the reporter texts of the task JVMs (each series names its TaskManager)."""
    ingested: dict[Labels, float] = {}
    egressed: dict[Labels, float] = {}
    for text in texts:
        for name, labels, value in _samples(text, (RECORDS_OUT, EGRESSED)):
            if name == EGRESSED:
                egressed[labels] = value
            elif dict(labels).get("operator_name", "").startswith(_SOURCE):
                ingested[labels] = value
    return Counts(time.monotonic() if at is None else at, ingested, egressed)


def latency_buckets(text: str) -> Buckets | None:
    """The greeter's latency histogram in its /metrics text (summed over its workers); None before it has one."""
    counts = sorted((float(dict(labels)["le"]), value) for _, labels, value in _samples(text, (LATENCY + "_bucket",)))
    return Buckets(tuple(counts)) if counts else None


def rate(before: Mapping[Labels, float], after: Mapping[Labels, float], seconds: float) -> float | None:
    """Per second between two readings, summed over the series both hold. A series that went down was reset (its
    task restarted) and counts from zero; a series new since `before` counts from the next reading on, as
    Prometheus's rate() does. None when no series is in both, or no time passed.
    """
    common = before.keys() & after.keys()
    if not common or seconds <= 0:
        return None
    increase = sum(after[s] - before[s] if after[s] >= before[s] else after[s] for s in common)
    return increase / seconds


def quantile(q: float, before: Buckets, after: Buckets) -> float | None:
    """The `q` quantile (0..1) of what was observed between two readings, interpolated linearly in its bucket as
    Prometheus's histogram_quantile() does; math.inf when it lies above the highest finite bound. None when nothing
    was observed in between. A histogram that went down (or changed its buckets) was reset, the greeter restarted in
    between: all `after` holds was observed since.
    """
    counts = after.counts
    if [bound for bound, _ in before.counts] == [bound for bound, _ in counts]:
        deltas = tuple((bound, count - old) for (bound, count), (_, old) in zip(counts, before.counts, strict=True))
        if all(delta >= 0 for _, delta in deltas):
            counts = deltas
    total = counts[-1][1] if counts else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in counts:
        if cumulative >= rank and cumulative > below:
            return math.inf if math.isinf(bound) else lower + (bound - lower) * (rank - below) / (cumulative - below)
        lower, below = bound, cumulative
    return math.inf
