"""`greeter-stack rescale` refuses a parallelism the job cannot take before it touches the job; `status` shows
the job's parallelism and each TaskManager."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from stack import daemons, procs
from stack.config import StackConfig
from stack.local import LocalStack
from stack.operations import rescale
from stack.readiness import StartError
from stack.rest import FlinkRest, TaskManager
from stack.state import StackState
from stack.status import ProcStatus, StackStatus, format_status

JOB = "a" * 32


class JobOnlyRest(FlinkRest):
    """Answers GET /jobs/<id> with two vertices; any other call fails the test."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:1")

    def _call(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        assert (method, path) == ("GET", f"/jobs/{JOB}"), f"rescale called {method} {path} before refusing"
        vertices = [{"parallelism": 1, "maxParallelism": 128}, {"parallelism": 1, "maxParallelism": 128}]
        return {"state": "RUNNING", "vertices": vertices}


@pytest.mark.parametrize("parallelism", [0, 129])
def test_a_parallelism_the_job_cannot_take_is_refused_before_anything_stops(tmp_path: Path, parallelism: int) -> None:
    stack = LocalStack(StackConfig(run_dir=tmp_path, mode="cluster"), report=lambda _line: None)
    # Every daemon recorded as this test's own (running) process: the stack is up as far as rescale can tell.
    me = os.getpid()
    up = [procs.Proc(name, me, procs.start_ticks(me) or 0, "", ()) for name in daemons.names(stack.config)]
    stack.state = StackState(stack.config, up, job_id=JOB)
    stack.rest = JobOnlyRest()
    with pytest.raises(StartError, match=rf"parallelism {parallelism}: the job can run at 1 to 128"):
        rescale(stack, parallelism)
    assert stack.config.parallelism == 1


def test_status_shows_the_parallelism_and_each_taskmanager() -> None:
    status = StackStatus(
        run_dir="/run",
        daemons=("kafka", "greeter", "jobmanager", "taskmanager", "taskmanager-2"),
        procs=[],
        job_id=JOB,
        job_state="RUNNING",
        failures=0,
        checkpoint=None,
        lag=None,
        notes=[],
        parallelism=(2, 128),
        taskmanagers=(TaskManager("127.0.0.1:6122-a1", 1, 0), TaskManager("127.0.0.1:40493-b2", 1, 1)),
    )
    text = format_status(status)
    assert "parallelism  2 (at most 128)" in text
    wide = format_status(replace(status, procs=[ProcStatus("taskmanager-2", 7, True, "/run/taskmanager-2.log")]))
    assert "taskmanager-2 pid 7        up    log /run/taskmanager-2.log" in wide
    assert "parallelism   2 (at most 128)" in wide, "every label in the one column"
    assert "taskmanager  127.0.0.1:6122-a1: 1 of 1 slots in use" in text
    assert "taskmanager  127.0.0.1:40493-b2: 0 of 1 slots in use" in text
