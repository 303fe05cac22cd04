"""stack/supervise.watch (`up --foreground`, `greeter-stack watch`, scripts/run) with fake daemons."""

import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from stack import procs
from stack.config import Extra, Ports, StackConfig
from stack.local import LocalStack
from stack.state import run_lock
from stack.supervise import watch
from tests.support.waiting import wait_for

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
DIES = [sys.executable, "-c", "import sys, time; print('out of memory', flush=True); time.sleep(0.5); sys.exit(3)"]


def _stack(tmp_path: Path, **daemons: list[str]) -> tuple[LocalStack, list[str]]:
    config = replace(StackConfig(run_dir=tmp_path, ports=Ports.free()), stop_timeout_s=5)
    reports: list[str] = []
    stack = LocalStack(config, report=reports.append)
    stack.state.procs = [procs.spawn(name, argv, tmp_path / f"{name}.log") for name, argv in daemons.items()]
    stack.state.save()
    return stack, reports


def test_a_dying_daemon_is_named_and_everything_stops(tmp_path: Path) -> None:
    stack, reports = _stack(tmp_path, kafka=SLEEPER, taskmanager=DIES)
    survivor = stack.state.proc("kafka")
    started = time.monotonic()
    assert watch(stack, interval=0.1) == 1
    assert time.monotonic() - started < 10
    (died,) = [line for line in reports if "died" in line]
    assert died.startswith("taskmanager (pid ") and "(exit 3)" in died
    assert "out of memory" in died, "the report shows the last lines of the dead process's log"
    assert not procs.is_running(survivor), "the other daemons are stopped"
    assert stack.state.procs == []


def test_a_stop_request_stops_everything_cleanly(tmp_path: Path) -> None:
    stack, reports = _stack(tmp_path, kafka=SLEEPER)
    daemon = stack.state.proc("kafka")
    threading.Timer(0.3, stack.stop_event.set).start()
    assert watch(stack, interval=0.1) == 0
    assert not procs.is_running(daemon)
    assert not any("died" in line for line in reports)


def test_the_watched_consumer_ending_stops_everything(tmp_path: Path) -> None:
    stack, _ = _stack(tmp_path, kafka=SLEEPER)
    daemon = stack.state.proc("kafka")
    deadline = time.monotonic() + 0.3
    assert watch(stack, interval=0.1, keep_going=lambda: time.monotonic() < deadline) == 0
    assert not procs.is_running(daemon)


def test_an_extra_that_finishes_is_not_a_failure(tmp_path: Path) -> None:
    stack, reports = _stack(tmp_path, kafka=SLEEPER, generator=[sys.executable, "-c", "pass"])
    stack.config = replace(stack.config, extras=(Extra("generator", ("true",)),))
    deadline = time.monotonic() + 1.5
    assert watch(stack, interval=0.1, keep_going=lambda: time.monotonic() < deadline) == 0
    assert "generator finished" in reports


def test_a_process_another_command_stopped_and_unrecorded_is_no_death(tmp_path: Path) -> None:
    # `rescale` stops a TaskManager the new parallelism does not need: it is no longer in stack.json.
    stack, reports = _stack(tmp_path, kafka=SLEEPER, taskmanager=SLEEPER)
    other = LocalStack.attach(tmp_path, report=lambda _line: None)
    spare = other.state.proc("taskmanager")
    other.state.procs.remove(spare)
    other.state.save()
    procs.stop(spare, 5)
    deadline = time.monotonic() + 1.0
    assert watch(stack, interval=0.1, keep_going=lambda: time.monotonic() < deadline) == 0
    assert not any("died" in line for line in reports)


def test_nothing_counts_as_a_death_while_another_command_holds_the_run_lock(tmp_path: Path) -> None:
    stack, reports = _stack(tmp_path, kafka=SLEEPER, taskmanager=DIES)
    taskmanager = stack.state.proc("taskmanager")
    held, released = threading.Event(), threading.Event()
    passes = 0  # of the watch loop, each counted as it begins

    def watch_pass() -> bool:  # the watch goes on unless the other command gave up without releasing the lock
        nonlocal passes
        passes += 1
        return command.is_alive() or released.is_set()

    def another_command() -> None:  # e.g. `rescale` restarting the job
        with run_lock(tmp_path):
            held.set()
            wait_for("the taskmanager to die", lambda: not procs.is_running(taskmanager), 30, every=0.05)
            # Two passes begun after the death: the first then looked at the dead process in full, the lock held.
            after_death = passes
            try:
                wait_for("two passes of the watch after the death", lambda: passes >= after_death + 2, 10, 0.05)
            finally:
                reports.append("lock released")
        released.set()

    command = threading.Thread(target=another_command, daemon=True)
    command.start()
    assert held.wait(10)
    assert watch(stack, interval=0.1, keep_going=watch_pass) == 1, "once the lock is free, the death stops everything"
    command.join(30)
    assert released.is_set()
    (died,) = [i for i, line in enumerate(reports) if "died" in line]
    assert died > reports.index("lock released"), "the death was reported while the lock was held"
