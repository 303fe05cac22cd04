"""The run folder's bookkeeping: the state file (config, PIDs, job id), a lock, retained checkpoints."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .config import StackConfig
from .procs import Proc

STATE_FILE = "stack.json"


@dataclass
class StackState:
    """What stack.json records: the config, the processes in start order, the job and its jar, and the savepoint
    of a rescale that cancelled the job but did not start it again (the next `up` resumes from it).
    """

    config: StackConfig
    procs: list[Proc] = field(default_factory=list)
    job_id: str | None = None
    jar_id: str | None = None
    resume_from: str | None = None

    def save(self) -> None:
        """Written after every start, so a supervisor that dies mid-`up` still leaves what `down` needs."""
        data: dict[str, Any] = {
            "config": self.config.to_json(),
            "procs": [asdict(p) for p in self.procs],
            "job_id": self.job_id,
            "jar_id": self.jar_id,
            "resume_from": self.resume_from,
        }
        path = self.config.state_file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, path)  # atomic: a reader never sees half a file

    @classmethod
    def load(cls, run_dir: Path) -> StackState | None:
        """The state recorded in `run_dir`, None when it has no stack.json."""
        path = run_dir / STATE_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        procs = [
            Proc(p["name"], p["pid"], p["start_ticks"], p["log"], tuple(p["argv"]), p.get("group", 0))
            for p in data["procs"]
        ]
        return cls(
            StackConfig.from_json(data["config"]),
            procs,
            data.get("job_id"),
            data.get("jar_id"),
            data.get("resume_from"),
        )

    def proc(self, name: str) -> Proc:
        """The recorded process `name`; KeyError naming the known ones otherwise."""
        for proc in self.procs:
            if proc.name == name:
                return proc
        raise KeyError(
            f"no process named {name!r} in {self.config.state_file}; known: "
            f"{', '.join(p.name for p in self.procs) or 'none'}"
        )

    def replace(self, proc: Proc) -> None:
        """Record `proc` in place of the process of the same name, or last when there is none."""
        self.procs = [proc if p.name == proc.name else p for p in self.procs]
        if proc not in self.procs:
            self.procs.append(proc)


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """One `up`/`down` at a time per run folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / ".stack.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another `greeter-stack` is working on {run_dir}") from None
        yield


def run_lock_held(run_dir: Path) -> bool:
    """True while another command holds the run folder's lock (`up`, `down`, `rescale`, a greeter upgrade)."""
    try:
        with (run_dir / ".stack.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except FileNotFoundError:  # the run folder is gone
        return False
    return False  # closing the file released the lock


def latest_retained_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete checkpoint (chk-N with its _metadata) of any earlier job in this run folder."""
    candidates = list(checkpoint_dir.glob("*/chk-*/_metadata"))
    if not candidates:
        return None
    return max(candidates, key=lambda p: (p.stat().st_mtime, int(p.parent.name[4:]))).parent


# The folder Flink makes per job under state.checkpoints.dir: the job id, 32 hex digits.
JOB_FOLDER = re.compile(r"[0-9a-f]{32}")


def prune_other_jobs(checkpoint_dir: Path, resumed: Path) -> list[Path]:
    """Remove every job folder under `checkpoint_dir` but the one holding `resumed` (a chk-N folder); the removed
    folders, sorted. Each start is a new job with its own folder and nothing else removes them, so they would pile
    up. The resumed one stays: its checkpoint is being restored. A job restored in Flink's default NO_CLAIM mode
    makes its first checkpoint a full one, so it never refers to older folders. What is not a job folder
    (savepoints/, lost+found) stays; so does everything when `resumed` is a savepoint or lies elsewhere.
    deploy/compose/statefun-runtime.sh does the same for the container stacks (tests/unit/test_stack_state.py).
    """
    root, keep = checkpoint_dir.resolve(), resumed.resolve().parent
    if keep.parent != root or not JOB_FOLDER.fullmatch(keep.name):  # a savepoint, or a folder elsewhere
        return []
    removed = sorted(f for f in root.iterdir() if f.is_dir() and JOB_FOLDER.fullmatch(f.name) and f != keep)
    for folder in removed:
        shutil.rmtree(folder)
    return removed
