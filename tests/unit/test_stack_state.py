"""stack/state.py: the state file, the run lock, and which retained checkpoint `up` resumes from."""

import os
from pathlib import Path

import pytest

from stack.config import Ports, StackConfig
from stack.procs import Proc
from stack.state import StackState, latest_retained_checkpoint, run_lock


def test_state_round_trip(tmp_path: Path) -> None:
    state = StackState(StackConfig(run_dir=tmp_path, ports=Ports.free()))
    state.procs = [Proc("kafka", 12, 34, str(tmp_path / "kafka.log"), ("java", "kafka.Kafka"))]
    state.job_id = "abc"
    state.save()
    loaded = StackState.load(tmp_path)
    assert loaded is not None
    assert loaded.config == state.config and loaded.procs == state.procs and loaded.job_id == "abc"
    assert StackState.load(tmp_path / "nothing") is None


def test_unknown_process_names_the_known_ones(tmp_path: Path) -> None:
    state = StackState(StackConfig(run_dir=tmp_path))
    state.procs = [Proc("kafka", 1, 1, "k.log", ())]
    with pytest.raises(KeyError, match="known: kafka"):
        state.proc("taskmanager")


def test_replace_keeps_the_start_order(tmp_path: Path) -> None:
    state = StackState(StackConfig(run_dir=tmp_path))
    state.procs = [Proc("a", 1, 1, "", ()), Proc("b", 2, 1, "", ())]
    state.replace(Proc("a", 3, 1, "", ()))
    state.replace(Proc("c", 4, 1, "", ()))
    assert [(p.name, p.pid) for p in state.procs] == [("a", 3), ("b", 2), ("c", 4)]


def test_one_supervisor_per_run_folder(tmp_path: Path) -> None:
    with run_lock(tmp_path), pytest.raises(RuntimeError, match="another `greeter-stack`"), run_lock(tmp_path):
        pass


def _checkpoint(root: Path, job: str, n: int, mtime: float, complete: bool = True) -> Path:
    folder = root / job / f"chk-{n}"
    folder.mkdir(parents=True)
    if complete:
        (folder / "_metadata").write_bytes(b"x")
        os.utime(folder / "_metadata", (mtime, mtime))
    return folder


def test_latest_retained_checkpoint(tmp_path: Path) -> None:
    assert latest_retained_checkpoint(tmp_path) is None
    _checkpoint(tmp_path, "job1", 40, 1000)
    newest = _checkpoint(tmp_path, "job2", 3, 2000)
    _checkpoint(tmp_path, "job2", 4, 3000, complete=False)  # being written when the cluster stopped
    assert latest_retained_checkpoint(tmp_path) == newest
