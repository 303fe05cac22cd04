"""Every `greeter-stack` subcommand in every state a user can leave the stack in: one line on stderr naming the
state, never a traceback. The states are made as the stack records them (stack.json), with stand-in daemons
(`sleep`, stopped by PID) where a state has live processes; nothing answers on the stack's Flink and Kafka ports."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack import procs
from stack.config import Ports, StackConfig
from stack.state import StackState, run_lock


def _spawned(name: str, argv: list[str], run_dir: Path) -> procs.Proc:
    return procs.spawn(name, argv, run_dir / f"{name}.log")


def _dead(name: str, run_dir: Path) -> procs.Proc:
    proc = _spawned(name, ["true"], run_dir)
    while procs.is_running(proc):
        pass
    return proc


@pytest.fixture
def states(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """Run folders by state; the stand-in daemons they record are stopped afterwards."""
    started: list[procs.Proc] = []

    def recorded(state: str, names_alive: tuple[str, ...], dead: tuple[str, ...] = (), job: bool = True) -> Path:
        run_dir = tmp_path / state
        run_dir.mkdir()
        alive = [_spawned(name, ["sleep", "600"], run_dir) for name in names_alive]
        started.extend(alive)
        config = StackConfig(run_dir=run_dir, ports=Ports.free())
        StackState(config, [*alive, *(_dead(name, run_dir) for name in dead)], "f" * 32 if job else None).save()
        return run_dir

    folders = {
        "nothing started": tmp_path / "empty",
        "stopped by down": recorded("stopped", ()),
        "half up": recorded("half-up", ("kafka", "greeter"), job=False),
        "a daemon killed": recorded("killed", ("kafka", "greeter"), dead=("runtime",)),
    }
    folders["nothing started"].mkdir()
    try:
        yield folders
    finally:
        procs.stop_all(started, timeout=5)


# What each state's answer names: the state itself, in the user's words.
NAMED = {
    "nothing started": "no stack recorded",
    "stopped by down": "is stopped",
    "half up": "half up",
    "a daemon killed": "runtime (pid",
}
NEEDS_THE_STACK_UP = [["savepoint"], ["rescale", "2"], ["rescale", "0"], ["upgrade-greeter"]]


def _run(run_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stack", "--run-dir", str(run_dir), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _one_line_without_traceback(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("state", list(NAMED))
@pytest.mark.parametrize("argv", NEEDS_THE_STACK_UP, ids=" ".join)
def test_a_command_that_needs_the_stack_up_names_its_state(
    states: dict[str, Path], state: str, argv: list[str]
) -> None:
    result = _run(states[state], *argv)

    line = _one_line_without_traceback(result)
    assert result.returncode == 1
    assert NAMED[state] in line
    assert "greeter-stack up" in line, "the answer says what to do"


@pytest.mark.parametrize("state", ["nothing started", "stopped by down"])
def test_watch_with_nothing_running_says_so(states: dict[str, Path], state: str) -> None:
    result = _run(states[state], "watch")

    line = _one_line_without_traceback(result)
    assert result.returncode == 1
    assert "no stack recorded" in line or "nothing to watch" in line


def test_down_twice_says_the_second_time_that_nothing_ran(states: dict[str, Path]) -> None:
    run_dir = states["half up"]
    first = _run(run_dir, "down")
    second = _run(run_dir, "down")

    assert first.returncode == second.returncode == 0
    assert "Traceback" not in first.stderr + second.stderr
    assert "nothing was running" in second.stderr


def test_status_of_a_stopped_stack_names_no_live_process(states: dict[str, Path]) -> None:
    result = _run(states["stopped by down"], "status")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "none running" in result.stdout


def test_up_while_up_names_the_running_processes(states: dict[str, Path]) -> None:
    result = _run(states["half up"], "up")

    line = _one_line_without_traceback(result)
    assert result.returncode == 1
    assert "already up (kafka, greeter)" in line


@pytest.mark.parametrize("argv", [["up"], ["down"], *NEEDS_THE_STACK_UP], ids=" ".join)
def test_a_command_while_another_works_on_the_run_folder_says_so(states: dict[str, Path], argv: list[str]) -> None:
    run_dir = states["a daemon killed"]
    with run_lock(run_dir):
        result = _run(run_dir, *argv)

    line = _one_line_without_traceback(result)
    assert result.returncode == 1
    assert "another `greeter-stack` is working on" in line


def test_status_after_a_rescale_stopped_half_way_says_how_to_resume(tmp_path: Path) -> None:
    config = StackConfig(run_dir=tmp_path, ports=Ports.free())
    savepoint = tmp_path / "savepoints" / "savepoint-ffffff-0123"
    StackState(config, [], "f" * 32, resume_from=str(savepoint)).save()

    result = _run(tmp_path, "status")

    assert result.returncode == 1
    assert f"a rescale stopped half way: the job was cancelled with a savepoint at {savepoint}" in result.stdout
    assert "`greeter-stack up` resumes from it" in result.stdout
