"""The run folder's log files: `logs [NAME]` prints them, each line prefixed with its process name, and -f follows
them; the task logs' scanners (TaskLogScanner) count what the runtime says it retried (RetryCounter) and find the
checkpoints' transactions it could not commit (LostCommitScanner).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TextIO, TypeVar

from .config import StackConfig
from .daemons import task_logs
from .readiness import tail

T = TypeVar("T")

_RETRY = re.compile(r"Retry #\d+")
# Flink 1.16's FlinkKafkaProducer.recoverAndCommit logs this and carries on when the broker refuses the commit of a
# restored checkpoint's transaction because it fenced its producer: the broker aborted the transaction when it
# outlived its timeout, so the greetings in it are lost. (The same method's "invalid state" warning follows most
# restores, for a transaction committed before the failure: benign, not matched.)
_LOST_COMMIT = re.compile(
    r"^(?P<at>\S+ \S+) WARN .*?Unable to commit recovered transaction \(KafkaTransactionState "
    r"\[transactionalId=(?P<id>.*?), producerId=(?P<producer>\d+), epoch=(?P<epoch>\d+)\]\) "
    r"because its producer is already fenced",
    re.MULTILINE,
)


def log_files(run_dir: Path, name: str | None = None) -> list[Path]:
    """The run folder's log files, or only `name`'s; KeyError listing the known names when it has none."""
    files = sorted(run_dir.glob("*.log"))
    if name is None:
        return files
    chosen = [f for f in files if f.stem == name]
    if not chosen:
        known = ", ".join(f.stem for f in files) or "none"
        raise KeyError(f"no log named {name!r} in {run_dir} (known: {known})")
    return chosen


def print_logs(files: list[Path], lines: int, out: TextIO) -> None:
    """Print the last `lines` lines of each file, each line prefixed with its process name."""
    width = max((len(f.stem) for f in files), default=0)
    for f in files:
        for line in tail(f, lines).splitlines():
            out.write(f"{f.stem:<{width}} | {line}\n")
    out.flush()


class Follower:
    """Prints what is appended to the files after it was created (like tail -f, prefixed)."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files
        self.width = max((len(f.stem) for f in files), default=0)
        self.offsets = {f: f.stat().st_size if f.exists() else 0 for f in files}
        self.partial = dict.fromkeys(files, "")

    def poll(self, out: TextIO) -> None:
        """Print the complete lines appended since the last poll. A partial line waits for its end; a file that
        shrank (a --fresh start) is read again from the top.
        """
        for f in self.files:
            size = f.stat().st_size if f.exists() else 0
            if size < self.offsets[f]:  # truncated (a --fresh start): read from the top
                self.offsets[f] = 0
            if size > self.offsets[f]:
                with f.open("rb") as handle:
                    handle.seek(self.offsets[f])
                    data = handle.read()
                self.offsets[f] += len(data)
                *complete, self.partial[f] = (self.partial[f] + data.decode("utf-8", "replace")).split("\n")
                for line in complete:
                    out.write(f"{f.stem:<{self.width}} | {line}\n")
        out.flush()


def follow(files: list[Path], out: TextIO, stop: threading.Event, interval: float = 0.5) -> None:
    """Follow the files until `stop` is set."""
    follower = Follower(files)
    while not stop.is_set():
        follower.poll(out)
        stop.wait(interval)


class TaskLogScanner(Generic[T]):
    """What `pattern` finds in the logs of the processes that run the tasks (daemons.task_logs) of a run folder,
    appended across respawns. Kept by a caller that asks again (`status --watch` every second, a benchmark between
    its measures), each scan reads only the complete lines the logs gained since the last one: a busy runtime's log
    grows to hundreds of MB.
    """

    def __init__(self, pattern: re.Pattern[str], make: Callable[[re.Match[str]], T]) -> None:
        self._pattern = pattern
        self._make = make
        self._offsets: dict[Path, int] = {}
        self._found: dict[Path, list[T]] = {}

    def scan(self, config: StackConfig) -> list[T]:
        """Everything found so far in `config`'s task logs, log by log."""
        for log in task_logs(config):
            if log.exists():
                self._read_appended(log)
        return [item for found in self._found.values() for item in found]

    def _read_appended(self, log: Path) -> None:
        offset = self._offsets.get(log, 0)
        if log.stat().st_size < offset:  # truncated (a --fresh start): what was found in it is gone with it
            offset = 0
            self._found[log] = []
        with log.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next scan
        self._offsets[log] = offset + len(complete)
        text = complete.decode("utf-8", "replace")
        self._found.setdefault(log, []).extend(self._make(m) for m in self._pattern.finditer(text))


class RetryCounter(TaskLogScanner[None]):
    """The failed deliveries to the greeter that the runtime retried: StateFun's HTTP client logs `Retry #n` for
    each (a connection the greeter closed, a 5xx, a wrong content type, a request that waited too long for a pooled
    connection).
    """

    def __init__(self) -> None:
        super().__init__(_RETRY, lambda match: None)

    def count(self, config: StackConfig) -> int:
        """The retries in `config`'s task logs so far."""
        return len(self.scan(config))


def delivery_retries(config: StackConfig) -> int:
    """The retries (RetryCounter) in `config`'s task logs, read whole once."""
    return RetryCounter().count(config)


@dataclass(frozen=True)
class LostCommit:
    """A completed checkpoint's transaction that the runtime could not commit after a restore: its records are lost."""

    at: str  # the time of the runtime's log line
    transactional_id: str
    producer_id: int
    epoch: int


class LostCommitScanner(TaskLogScanner[LostCommit]):
    """The transactions of completed checkpoints that the broker had aborted before the restored job could commit
    them (the runtime away longer than the egress's transactionTimeout).
    """

    def __init__(self) -> None:
        super().__init__(_LOST_COMMIT, lambda m: LostCommit(m["at"], m["id"], int(m["producer"]), int(m["epoch"])))

    def scan(self, config: StackConfig) -> list[LostCommit]:
        """Every lost transaction found so far in `config`'s task logs, oldest first."""
        return sorted(super().scan(config), key=lambda lost: lost.at)


def lost_commits(config: StackConfig) -> list[LostCommit]:
    """The lost transactions (LostCommitScanner) in `config`'s task logs, read whole once."""
    return LostCommitScanner().scan(config)
