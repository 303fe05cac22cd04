"""What `status` shows: each process, the job, its last checkpoint and the ingress lag; and, for `status --watch`,
each process's memory and the counters it turns into rates and the greeter's latency (stack/metrics.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from certs.tls import CertFiles

from . import brokers, daemons, flink, kafka, procs
from .brokers import PartitionIsr
from .config import HOST, StackConfig
from .kafka import Lag
from .logs import LostCommit, LostCommitScanner
from .metrics import SCRAPE_ERRORS, SCRAPE_TIMEOUT_S, Buckets, Counts, counts, latency_buckets, scrape
from .rest import Checkpoint, FlinkRest, TaskManager
from .state import StackState


@dataclass(frozen=True)
class ProcStatus:
    """One recorded process as `status` shows it."""

    name: str
    pid: int
    up: bool
    log: str
    rss_bytes: int | None = None  # its process group's resident memory; None when it is not running


@dataclass(frozen=True)
class StackStatus:
    """What `greeter-stack status` shows; what Flink or Kafka did not answer is None, and `notes` says why."""

    run_dir: str
    daemons: tuple[str, ...]  # the processes the stack's mode needs up
    procs: list[ProcStatus]
    job_id: str | None
    job_state: str | None  # None: Flink did not answer
    failures: int | None
    checkpoint: Checkpoint | None
    lag: Lag | None
    notes: list[str]
    parallelism: tuple[int, int] | None = None  # the job's, and its maximum
    taskmanagers: tuple[TaskManager, ...] = ()
    counts: Counts | None = None  # records in and out; None: no task JVM answered
    latency: Buckets | None = None  # the greeter's; None: it did not answer, or has no histogram yet
    # Three brokers only: the KRaft quorum's active controller (its node id) and the partitions whose ISR is short
    # (None: the brokers did not answer).
    controller: int | None = None
    short_isr: tuple[PartitionIsr, ...] | None = None
    lost_commits: tuple[LostCommit, ...] = ()  # checkpoints' transactions the broker aborted first (logs.lost_commits)

    @property
    def healthy(self) -> bool:
        """The daemons up and the job running; an extra (a generator with --count) may have finished."""
        required = [p for p in self.procs if p.name in self.daemons]
        return len(required) == len(self.daemons) and all(p.up for p in required) and self.job_state == "RUNNING"


def collect_status(state: StackState, rest: FlinkRest, lost: LostCommitScanner | None = None) -> StackStatus:
    """The stack's status; a Flink or Kafka that does not answer becomes a note, never an exception. `lost`: the
    scanner of the task logs for lost transactions, kept by a caller that asks again (`status --watch`), so each
    time only what the logs gained is read; a new one reads them whole.
    """
    notes: list[str] = []
    if state.resume_from:
        notes.append(
            f"a rescale stopped half way: the job was cancelled with a savepoint at {state.resume_from}; "
            "`greeter-stack down`, then `greeter-stack up` resumes from it"
        )
    proc_status = []
    for p in state.procs:
        up = procs.is_running(p)
        proc_status.append(ProcStatus(p.name, p.pid, up, p.log, procs.rss_bytes(p) if up else None))
    running = {p.name for p in proc_status if p.up}
    job_state = failures = checkpoint = lag = parallelism = None
    taskmanagers: tuple[TaskManager, ...] = ()
    if state.job_id:
        try:
            job_state = str(rest.job(state.job_id)["state"])
            failures = rest.failure_count(state.job_id)
            checkpoint = rest.latest_checkpoint(state.job_id)
            parallelism = rest.parallelism(state.job_id)
            taskmanagers = tuple(rest.taskmanagers())
        except Exception as error:  # a stopped cluster is a status, not a crash
            notes.append(f"Flink REST {state.config.rest_url}: {error}")
    try:
        lag = kafka.ingress_lag(state.config)
        if not lag.committed:
            notes.append(
                "the group has committed no offsets yet (StateFun commits them on completed "
                "checkpoints): the lag shown is the topic's size"
            )
    except Exception as error:
        notes.append(f"Kafka {state.config.bootstrap_servers}: lag unavailable ({error})")
    controller, short = _cluster(state.config, notes) if state.config.brokers > 1 else (None, None)
    return StackStatus(
        str(state.config.run_dir),
        daemons.names(state.config),
        proc_status,
        state.job_id,
        job_state,
        failures,
        checkpoint,
        lag,
        notes,
        parallelism,
        taskmanagers,
        _counts(state.config, running, notes),
        _latency(state.config, running, notes),
        controller,
        short,
        tuple((lost or LostCommitScanner()).scan(state.config)),
    )


def _cluster(config: StackConfig, notes: list[str]) -> tuple[int | None, tuple[PartitionIsr, ...] | None]:
    """The active controller (from the voters' quorum-state files) and the partitions with a short ISR."""
    short: tuple[PartitionIsr, ...] | None = None
    try:
        short = tuple(brokers.short_isr(config))
    except Exception as error:
        notes.append(f"Kafka {config.bootstrap_servers}: ISRs unavailable ({error})")
    return brokers.recorded_controller(config), short


def read_status(run_dir: Path, lost: LostCommitScanner | None = None) -> StackStatus | None:
    """The status of the stack recorded in `run_dir`, stack.json read afresh (a rescale, a greeter upgrade or an `up`
    may have recorded other processes since), with Flink's REST API given as long as a scrape; None when no stack
    is recorded there. `lost` as collect_status's.
    """
    state = StackState.load(run_dir)
    if state is None:
        return None
    return collect_status(state, FlinkRest(state.config.rest_url, SCRAPE_TIMEOUT_S), lost)


def _counts(config: StackConfig, running: set[str], notes: list[str]) -> Counts | None:
    """The records in and out, from the reporter of each running task JVM (a stopped one's row says so)."""
    texts = []
    for name in daemons.task_processes(config):
        if name in running:
            url = f"http://{HOST}:{flink.prometheus_port(config, name)}/metrics"
            try:
                texts.append(scrape(url))
            except SCRAPE_ERRORS as error:
                notes.append(f"{name}'s metrics at {url}: {error}")
    return counts(texts) if texts else None


def _latency(config: StackConfig, running: set[str], notes: list[str]) -> Buckets | None:
    """The greeter's latency histogram from its GET /metrics (with --tls, as the runtime calls it)."""
    if "greeter" not in running:
        return None
    url = f"{config.greeter_url}/metrics"
    try:
        return latency_buckets(scrape(url, CertFiles(config.tls_dir).client_context() if config.tls else None))
    except SCRAPE_ERRORS as error:
        notes.append(f"the greeter's metrics at {url}: {error}")
        return None


def format_status(status: StackStatus, now_ms: float | None = None) -> str:
    """The status as `greeter-stack status` prints it; checkpoint ages count to `now_ms` (now by default)."""
    now = time.time() * 1000 if now_ms is None else now_ms
    width = max([12, *(len(p.name) for p in status.procs)])  # taskmanager-N is longer than the labels

    def row(label: str, text: str) -> str:
        return f"{label:<{width}} {text}"

    lines = [row("run folder", status.run_dir)]
    if not status.procs:
        lines.append(row("processes", "none running"))
    for p in status.procs:
        lines.append(row(p.name, f"pid {p.pid:<8} {'up' if p.up else 'DOWN':<5} log {p.log}"))
    if status.job_id:
        failures = "?" if status.failures is None else status.failures
        lines.append(row("job", f"{status.job_id} {status.job_state or 'unknown'} (failures: {failures})"))
    if status.parallelism:
        lines.append(row("parallelism", f"{status.parallelism[0]} (at most {status.parallelism[1]})"))
    for tm in status.taskmanagers:
        lines.append(row("taskmanager", f"{tm.id}: {tm.slots - tm.free_slots} of {tm.slots} slots in use"))
    if status.checkpoint:
        age = (now - status.checkpoint.completed_at_ms) / 1000
        lines.append(row("checkpoint", f"#{status.checkpoint.id}, completed {age:.1f} s ago, {status.checkpoint.path}"))
    elif status.job_state:
        lines.append(row("checkpoint", "none completed yet"))
    if status.controller is not None:
        lines.append(row("controller", f"broker {status.controller} ({kafka.broker_name(status.controller)})"))
    if status.short_isr is not None:
        lines.append(row("short isr", ", ".join(map(str, status.short_isr)) or "none: every replica in sync"))
    if status.lag:
        parts = " ".join(f"p{p}={n}" for p, n in sorted(status.lag.per_partition.items()))
        lines.append(row("lag", f"group greeter on names: {status.lag.total} ({parts})"))
    lines += [row("LOST", lost_commit_text(lost)) for lost in status.lost_commits]
    lines += [row("note", note) for note in status.notes]
    return "\n".join(lines)


def lost_commit_text(lost: LostCommit) -> str:
    """What `status` and `status --watch` say of a lost transaction."""
    return (
        f"{lost.at}: the egress could not commit the transaction of a completed checkpoint (producer "
        f"{lost.producer_id}, epoch {lost.epoch}): the broker had aborted it, the runtime away longer than "
        "the egress's transactionTimeout; its greetings are lost (docs/operations.md, \"How long an outage "
        'the deployment survives")'
    )
