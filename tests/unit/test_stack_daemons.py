"""stack/daemons.py: the greeter's command and environment, and the checks that what answers is ours."""

from pathlib import Path
from typing import Any

import pytest

from stack import daemons
from stack.config import ConfigError, Ports, StackConfig
from stack.procs import Proc
from stack.readiness import StartError
from stack.rest import FlinkRest


def test_greeter_command(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "greeter-serve").write_text("")
    ports = Ports.free()
    config = StackConfig(run_dir=tmp_path / "run", venv_bin=tmp_path / "bin", ports=ports, greeter_workers=3)
    assert daemons.argv("java", config, "greeter") == [
        str(tmp_path / "bin" / "greeter-serve"), "--bind", f"127.0.0.1:{ports.greeter}", "--workers", "3",
        "--pid", str(tmp_path / "run" / "greeter.pid"),
    ]  # fmt: skip


def test_a_missing_venv_is_named(tmp_path: Path) -> None:
    with pytest.raises(StartError, match="greeter-serve not found"):
        daemons.argv("java", StackConfig(venv_bin=tmp_path), "greeter")


@pytest.mark.parametrize(("ttl", "expected"), [(None, "inherited"), (60, "60")])
def test_the_ttl_passes_through(monkeypatch: pytest.MonkeyPatch, ttl: int | None, expected: str) -> None:
    monkeypatch.setenv("GREETER_SEEN_COUNT_TTL", "inherited")
    assert daemons.env(StackConfig(seen_count_ttl=ttl), "greeter")["GREETER_SEEN_COUNT_TTL"] == expected


def test_the_greeter_pid_file_must_be_ours(tmp_path: Path) -> None:
    config = StackConfig(run_dir=tmp_path)
    proc = Proc("greeter", 4242, 1, "", ())
    assert "says none" in (daemons._greeter_is(config, proc) or "")
    (tmp_path / "greeter.pid").write_text("777\n")
    assert "says 777, we started 4242" in (daemons._greeter_is(config, proc) or "")
    (tmp_path / "greeter.pid").write_text("4242\n")
    assert daemons._greeter_is(config, proc) is None


class FakeRest(FlinkRest):
    def __init__(self, replies: dict[str, Any]) -> None:
        super().__init__("http://127.0.0.1:1")
        self.replies = replies

    def get(self, path: str) -> Any:
        return self.replies[path]


def test_the_jobmanager_must_be_ours(tmp_path: Path) -> None:
    config = StackConfig(run_dir=tmp_path)
    ours = [{"key": "web.upload.dir", "value": str(tmp_path / "flink" / "web-upload")}]
    theirs = [{"key": "web.upload.dir", "value": "/elsewhere"}]
    assert daemons._jobmanager_is_ours(config, FakeRest({"/jobmanager/config": ours})) is None
    assert "/elsewhere" in (daemons._jobmanager_is_ours(config, FakeRest({"/jobmanager/config": theirs})) or "")


def test_the_taskmanager_is_ready_with_enough_slots(tmp_path: Path) -> None:
    config = StackConfig(run_dir=tmp_path, parallelism=2, taskmanager_slots=2)
    proc = Proc("taskmanager", 1, 1, "", ())
    none = FakeRest({"/overview": {"taskmanagers": 1, "slots-total": 1}})
    assert "1 slots" in (daemons.ready_check(config, none, "taskmanager", proc)() or "")
    enough = FakeRest({"/overview": {"taskmanagers": 1, "slots-total": 2}})
    assert daemons.ready_check(config, enough, "taskmanager", proc)() is None


def test_each_mode_has_its_daemons_and_task_logs(tmp_path: Path) -> None:
    single = StackConfig(run_dir=tmp_path, mode="single", parallelism=3)
    cluster = StackConfig(run_dir=tmp_path, mode="cluster")
    assert daemons.names(single) == ("kafka", "greeter", "runtime")
    assert daemons.names(cluster) == ("kafka", "greeter", "jobmanager", "taskmanager")
    assert daemons.task_logs(single) == [tmp_path / "runtime.log"]
    assert daemons.task_logs(cluster) == [tmp_path / "taskmanager.log"]
    assert daemons.task_processes(single) == ("runtime",) and daemons.task_processes(cluster) == ("taskmanager",)


@pytest.mark.parametrize(("parallelism", "slots", "expected"), [(1, 1, 1), (3, 1, 3), (3, 2, 2), (4, 2, 2), (2, 4, 1)])
def test_the_cluster_starts_a_taskmanager_per_slots_worth_of_parallelism(
    tmp_path: Path, parallelism: int, slots: int, expected: int
) -> None:
    config = StackConfig(run_dir=tmp_path, mode="cluster", parallelism=parallelism, taskmanager_slots=slots)
    tms = ("taskmanager", *(f"taskmanager-{i}" for i in range(2, expected + 1)))
    assert daemons.names(config) == ("kafka", "greeter", "jobmanager", *tms)
    assert daemons.task_logs(config) == [tmp_path / f"{name}.log" for name in tms]
    assert daemons.task_processes(config) == tms


def test_the_nth_taskmanager_is_ready_once_n_are_registered(tmp_path: Path) -> None:
    config = StackConfig(run_dir=tmp_path, mode="cluster", parallelism=3)
    proc = Proc("taskmanager-2", 1, 1, "", ())
    one = FakeRest({"/overview": {"taskmanagers": 1, "slots-total": 1}})
    assert "1 TaskManagers" in (daemons.ready_check(config, one, "taskmanager-2", proc)() or "")
    two = FakeRest({"/overview": {"taskmanagers": 2, "slots-total": 2}})
    assert daemons.ready_check(config, two, "taskmanager-2", proc)() is None
    assert "2 TaskManagers" in (daemons.ready_check(config, two, "taskmanager-3", proc)() or "")


def test_parallelism_and_slots_below_one_are_refused(tmp_path: Path) -> None:
    for values in ({"parallelism": 0}, {"taskmanager_slots": 0}):
        with pytest.raises(ConfigError, match="at least 1"):
            StackConfig(run_dir=tmp_path, **values)  # type: ignore[arg-type]


def test_the_single_runtime_reads_the_rendered_conf_folder(tmp_path: Path) -> None:
    config = StackConfig(run_dir=tmp_path)
    assert daemons.env(config, "runtime")["FLINK_CONF_DIR"] == str(tmp_path / "conf")
    assert "FLINK_CONF_DIR" not in daemons.env(config, "greeter")
