"""stack/state.py: the state file, the run lock, which retained checkpoint `up` resumes from and which earlier jobs'
folders it removes; the container stacks' master entry point held to the same."""

import os
import subprocess
from pathlib import Path

import pytest

from stack.config import Ports, StackConfig
from stack.procs import Proc
from stack.state import StackState, latest_retained_checkpoint, prune_other_jobs, run_lock


def test_state_round_trip(tmp_path: Path) -> None:
    state = StackState(StackConfig(run_dir=tmp_path, ports=Ports.free()))
    state.procs = [
        Proc("kafka", 12, 34, str(tmp_path / "kafka.log"), ("java", "kafka.Kafka")),
        Proc("greeter", 56, 78, str(tmp_path / "greeter.log"), ("greeter-serve",), group=50),  # upgraded in place
    ]
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


JOB_A, JOB_B, JOB_C = ("a" * 32, "b" * 32, "c" * 32)
RUNTIME_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "compose" / "statefun-runtime.sh"


def _tree(root: Path) -> None:
    """Three earlier jobs, a savepoint, an incomplete newest checkpoint and a volume's lost+found."""
    _checkpoint(root, JOB_A, 40, 1000)
    _checkpoint(root, JOB_B, 3, 2000)
    _checkpoint(root, JOB_C, 1, 1500)
    _checkpoint(root, JOB_C, 2, 4000, complete=False)  # being written when it stopped: not a restore point
    (root / "savepoints" / "savepoint-aa-1").mkdir(parents=True)
    (root / "savepoints" / "savepoint-aa-1" / "_metadata").write_bytes(b"x")
    os.utime(root / "savepoints" / "savepoint-aa-1" / "_metadata", (500, 500))
    (root / "lost+found").mkdir()


def _runtime_script(
    checkpoint_dir: Path, tmp_path: Path, role: str = "master", **env: str
) -> tuple[list[str], str, str]:
    """Run the container stacks' runtime entry point with a stand-in for the image's: the arguments and LD_PRELOAD
    it was started with, and what the script logged."""
    entry_point = tmp_path / "entry-point.sh"
    entry_point.write_text('#!/bin/sh\necho "preload: $LD_PRELOAD"\necho "entry point: $*"\n')
    entry_point.chmod(0o755)
    taskmanager = tmp_path / "taskmanager.sh"
    taskmanager.write_text('#!/bin/sh\necho "preload: $LD_PRELOAD"\necho "taskmanager: $*"\n')
    taskmanager.chmod(0o755)
    variables = {
        "STATEFUN_CHECKPOINT_DIR": str(checkpoint_dir),
        "STATEFUN_ENTRY_POINT": str(entry_point),
        "STATEFUN_TASKMANAGER": str(taskmanager),
        "ROLE": role,
    }
    environment = {
        key: value for key, value in os.environ.items() if key != "LD_PRELOAD" and not key.startswith("FLINK_")
    }
    environment |= variables | env
    done = subprocess.run(["bash", str(RUNTIME_SCRIPT)], env=environment, capture_output=True, text=True, check=True)
    *log, preload, started = done.stdout.splitlines()
    started_as = "entry point:" if role == "master" else "taskmanager:"
    assert started.startswith(started_as) and preload.startswith("preload:"), done.stdout
    return started.removeprefix(started_as).split(), preload.removeprefix("preload:").strip(), "\n".join(log)


def _master_script(checkpoint_dir: Path, tmp_path: Path, **env: str) -> tuple[list[str], str]:
    started_with, _preload, log = _runtime_script(checkpoint_dir, tmp_path, **env)
    return started_with, log


def test_resuming_from_a_checkpoint_removes_only_the_other_jobs_folders(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    _tree(root)
    resumed = latest_retained_checkpoint(root)
    assert resumed == root / JOB_B / "chk-3"
    assert prune_other_jobs(root, resumed) == [root / JOB_A, root / JOB_C]
    assert sorted(p.name for p in root.iterdir()) == [JOB_B, "lost+found", "savepoints"]


def test_a_savepoint_or_a_folder_elsewhere_removes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    _tree(root)
    assert prune_other_jobs(root, root / "savepoints" / "savepoint-aa-1") == []
    assert prune_other_jobs(root, tmp_path / "elsewhere" / JOB_A / "chk-1") == []
    assert len(list(root.iterdir())) == 5


def test_the_container_stacks_master_script_prunes_and_resumes_as_the_local_stack(tmp_path: Path) -> None:
    local, container = tmp_path / "local", tmp_path / "container"
    _tree(local)
    _tree(container)
    prune_other_jobs(local, latest_retained_checkpoint(local) or local)
    started_with, log = _master_script(container, tmp_path)
    assert started_with == ["--fromSavepoint", str(container / JOB_B / "chk-3"), "--allowNonRestoredState"]
    assert sorted(p.name for p in container.iterdir()) == sorted(p.name for p in local.iterdir())
    assert f"removing the checkpoints of an earlier job: {container / JOB_A}" in log


def test_the_master_script_resumes_from_a_newer_savepoint_and_removes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    _tree(root)
    os.utime(root / "savepoints" / "savepoint-aa-1" / "_metadata", (9000, 9000))
    started_with, _log = _master_script(root, tmp_path)
    assert started_with[:2] == ["--fromSavepoint", str(root / "savepoints" / "savepoint-aa-1")]
    assert len(list(root.iterdir())) == 5


def test_the_master_script_starts_fresh_without_a_snapshot(tmp_path: Path) -> None:
    started_with, log = _master_script(tmp_path / "empty", tmp_path)
    assert started_with == []
    assert "the job starts fresh" in log


@pytest.mark.parametrize("role", ["master", "worker"])
def test_both_roles_preload_jemalloc_when_the_image_has_it(tmp_path: Path, role: str) -> None:
    library = tmp_path / "libjemalloc.so"
    library.write_bytes(b"")
    _args, preload, _log = _runtime_script(tmp_path / "none", tmp_path, role, STATEFUN_JEMALLOC=str(library))
    assert preload == str(library)
    _args, preload, log = _runtime_script(
        tmp_path / "none", tmp_path, role, STATEFUN_JEMALLOC=str(library), DISABLE_JEMALLOC="true"
    )
    assert preload == "" and "not preloading jemalloc" in log
    _args, preload, log = _runtime_script(
        tmp_path / "none", tmp_path, role, STATEFUN_JEMALLOC=str(tmp_path / "gone.so")
    )
    assert preload == "" and "RocksDB uses glibc's malloc" in log


def test_a_worker_starts_the_taskmanager_as_the_image_does_and_touches_no_checkpoint(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    _tree(root)
    started_with, _preload, _log = _runtime_script(root, tmp_path, "worker", MASTER_HOST="statefun-master")
    assert started_with == ["start-foreground", "-Djobmanager.rpc.address=statefun-master"]
    assert len(list(root.iterdir())) == 5


def test_flink_properties_variables_become_dynamic_properties_for_both_roles(tmp_path: Path) -> None:
    variables = {
        "FLINK_PROPERTIES": "# comment\nparallelism.default: 2\n\n",
        "FLINK_PROPERTIES_HA": "high-availability: kubernetes\n  kubernetes.namespace:  greeter  ",
        "FLINK_PROPERTIES_WORKER": "taskmanager.resource-id: statefun-worker-7d9-x2",
        "FLINK_PROPERTIESX": "ignored: not one of ours",
    }
    expected = [
        "-Dparallelism.default=2",
        "-Dhigh-availability=kubernetes",
        "-Dkubernetes.namespace=greeter",
        "-Dtaskmanager.resource-id=statefun-worker-7d9-x2",
    ]
    worker, _preload, _log = _runtime_script(tmp_path / "none", tmp_path, "worker", **variables)
    assert worker[2:] == expected
    master, _log = _master_script(tmp_path / "none", tmp_path, **variables)
    assert master == expected
    root = tmp_path / "checkpoints"
    _tree(root)
    resumed, _log = _master_script(root, tmp_path, **variables)
    assert resumed == ["--fromSavepoint", str(root / JOB_B / "chk-3"), "--allowNonRestoredState", *expected]


def test_a_malformed_flink_properties_line_stops_the_start_and_names_it(tmp_path: Path) -> None:
    with pytest.raises(subprocess.CalledProcessError) as failed:
        _runtime_script(tmp_path / "none", tmp_path, "worker", FLINK_PROPERTIES_HA="high-availability kubernetes")
    assert "FLINK_PROPERTIES_HA: not a 'key: value' line: high-availability kubernetes" in failed.value.stderr
