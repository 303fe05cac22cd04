"""`greeter-stack status --watch`: the stack's status redrawn every interval, with what two successive snapshots
tell: names/s in, greetings/s out, the greeter's p50 and p99 in between. It only renders: the snapshot is `status`'s own
(stack/status.py), the arithmetic stack/metrics.py's.

On a terminal, a rich Live view redrawn in place. Anywhere else (a pipe, a file) one plain line per snapshot: a
time series that `tee`, `grep` or a log file keep, which a redrawn screen's cursor movements would garble.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .metrics import quantile, rate
from .status import StackStatus, lost_commit_text

NONE = "-"  # what a value shows when the snapshots do not tell it: never a made-up number


@dataclass(frozen=True)
class Between:
    """What two successive snapshots tell; None where they do not (no earlier snapshot, a source that did not
    answer in both, no request answered in between for the quantiles).
    """

    ingested_per_s: float | None = None
    egressed_per_s: float | None = None
    p50_s: float | None = None  # math.inf: above the histogram's highest finite bound, `ceiling_s`
    p99_s: float | None = None
    ceiling_s: float = math.inf


def between(before: StackStatus | None, after: StackStatus | None) -> Between:
    """The rates and quantiles from `before` to `after`."""
    if before is None or after is None:
        return Between()
    ingested = egressed = p50 = p99 = None
    if before.counts and after.counts:
        seconds = after.counts.at - before.counts.at
        ingested = rate(before.counts.ingested, after.counts.ingested, seconds)
        egressed = rate(before.counts.egressed, after.counts.egressed, seconds)
    ceiling = math.inf
    if before.latency and after.latency:
        p50 = quantile(0.5, before.latency, after.latency)
        p99 = quantile(0.99, before.latency, after.latency)
        ceiling = after.latency.ceiling
    return Between(ingested, egressed, p50, p99, ceiling)


@dataclass(frozen=True)
class ProcessRow:
    """One process as the view shows it; `alarm`: a daemon of the stack that is not running."""

    name: str
    state: str
    pid: str
    rss: str
    alarm: bool


def process_rows(status: StackStatus) -> list[ProcessRow]:
    """The daemons of the stack's mode in start order, each whether recorded or not, then the extras (a generator)."""
    recorded = {p.name: p for p in status.procs}
    rows = []
    for name in [*status.daemons, *(p.name for p in status.procs if p.name not in status.daemons)]:
        proc = recorded.get(name)
        daemon = name in status.daemons
        if proc is not None and proc.up:
            rss = NONE if proc.rss_bytes is None else f"{proc.rss_bytes / 2**20:,.0f} MB"
            rows.append(ProcessRow(name, "running", str(proc.pid), rss, alarm=False))
        else:
            rows.append(ProcessRow(name, "stopped" if daemon else "exited", NONE, NONE, alarm=daemon))
    return rows


def _per_s(value: float | None) -> str:
    return NONE if value is None else f"{value:,.1f}/s"


def _ms(value: float | None, ceiling_s: float) -> str:
    if value is None:
        return NONE
    if math.isinf(value):
        return f"> {ceiling_s * 1000:g} ms"
    return f"{value * 1000:.2f} ms"


def pipeline_rows(status: StackStatus, seen: Between, now_ms: float) -> list[tuple[str, str]]:
    """The job and the data's way through it, label and value."""
    checkpoint = NONE
    if status.checkpoint:
        age_s = (now_ms - status.checkpoint.completed_at_ms) / 1000
        checkpoint = f"{age_s:.1f} s ago (#{status.checkpoint.id})"
    elif status.job_state:
        checkpoint = "none completed yet"
    return [
        ("job", status.job_state or NONE),
        # The failures in the job's exception history: each one a restart (`status` prints them as failures).
        ("restarts", NONE if status.failures is None else str(status.failures)),
        ("names in", _per_s(seen.ingested_per_s)),  # read from `names` by the ingress
        ("greetings out", _per_s(seen.egressed_per_s)),  # sent to the egress, dead letters included
        ("ingress lag", NONE if status.lag is None else f"{status.lag.total:,}"),
        ("checkpoint", checkpoint),
        ("greeter p50", _ms(seen.p50_s, seen.ceiling_s)),
        ("greeter p99", _ms(seen.p99_s, seen.ceiling_s)),
    ]


def _absent(run_dir: Path) -> str:
    return f"no stack recorded in {run_dir}: start one with `greeter-stack up`"


def render(status: StackStatus | None, seen: Between, run_dir: Path, interval: float, now: float) -> RenderableType:
    """The view on a terminal: a heading, the processes, the pipeline, the lost transactions, the notes."""
    heading = Text.assemble(
        ("greeter-stack status --watch", "bold"),
        f"  {time.strftime('%H:%M:%S', time.localtime(now))}, every {interval:g} s  (Ctrl-C quits)\n",
        f"run folder {run_dir}",
    )
    if status is None:
        return Group(heading, Text(_absent(run_dir)))
    processes = Table(box=box.SIMPLE_HEAD, title="processes", title_justify="left")
    processes.add_column("name")
    processes.add_column("state")
    processes.add_column("pid", justify="right")
    processes.add_column("RSS", justify="right")
    for row in process_rows(status):
        style = "bold red" if row.alarm else ("green" if row.state == "running" else "")
        processes.add_row(row.name, Text(row.state, style=style), row.pid, row.rss)
    pipeline = Table(box=box.SIMPLE, show_header=False, title="pipeline", title_justify="left")
    pipeline.add_column("what")
    pipeline.add_column("value", justify="right")
    for label, value in pipeline_rows(status, seen, now * 1000):
        pipeline.add_row(label, value)
    lost = [Text(f"LOST: {lost_commit_text(lost)}", style="bold red") for lost in status.lost_commits]
    notes = [Text(f"note: {note}", style="yellow") for note in status.notes]
    return Group(heading, processes, pipeline, *lost, *notes)


def plain_line(status: StackStatus | None, seen: Between, run_dir: Path, now: float) -> str:
    """The view as one line, for a stdout that is not a terminal."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    if status is None:
        return f"{stamp} {_absent(run_dir)}"
    parts = [f"{label} {value}" for label, value in pipeline_rows(status, seen, now * 1000)]
    parts += [f"{row.name} {row.state} pid {row.pid} rss {row.rss}" for row in process_rows(status)]
    parts += [f"LOST: {lost_commit_text(lost)}" for lost in status.lost_commits]
    parts += [f"note: {note}" for note in status.notes]
    return " | ".join([stamp, *parts])


def watch_status(
    take: Callable[[], StackStatus | None],
    run_dir: Path,
    stop: threading.Event,
    out: TextIO,
    interval: float = 1.0,
    clock: Callable[[], float] = time.time,
) -> int:
    """Take a snapshot every `interval` seconds and show it until `stop` is set (Ctrl-C); 0. A stack that is not
    up, or a daemon that stopped, is shown as such: `take` turns what does not answer into notes.
    """
    live = Live(console=Console(file=out), auto_refresh=False, redirect_stdout=False, redirect_stderr=False)
    terminal = out.isatty()
    with live if terminal else contextlib.nullcontext():
        before: StackStatus | None = None
        next_at = time.monotonic()
        while not stop.is_set():
            status = take()
            seen = between(before, status)
            if terminal:
                live.update(render(status, seen, run_dir, interval, clock()), refresh=True)
            else:
                print(plain_line(status, seen, run_dir, clock()), file=out, flush=True)
            before = status
            next_at = max(next_at + interval, time.monotonic())  # a slow snapshot delays the next, never bunches them
            stop.wait(next_at - time.monotonic())
    return 0
