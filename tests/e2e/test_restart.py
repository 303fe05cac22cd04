"""`down` then `up` mid-run: nothing left behind, and every count continues from the retained checkpoint; or
from a savepoint taken with `greeter-stack savepoint`."""

from __future__ import annotations

import os
import time
from dataclasses import fields
from pathlib import Path

import pytest

from stack import daemons
from stack.cli import main
from stack.config import HOST, Ports
from stack.local import LocalStack
from stack.readiness import port_free
from stack.state import JOB_FOLDER

from .kafka_io import produce, read, read_greetings, requests, unique_names

pytestmark = pytest.mark.e2e

PER_NAME = 20


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not open(f"/proc/{pid}/stat").read().split(") ")[-1].startswith("Z")  # a zombie is gone


@pytest.mark.timeout(900)
def test_down_leaves_nothing_and_up_continues_every_count(stack: LocalStack) -> None:
    bootstrap = stack.config.bootstrap_servers
    names = unique_names(20)
    produce(bootstrap, "names", requests(names, PER_NAME // 2))
    # Stop while the first half is still being processed: some greetings committed, some not yet.
    read(bootstrap, "greetings", {n.encode() for n in names}, len(names) * PER_NAME // 6, deadline_s=120, settle_s=0)

    pids = [proc.pid for proc in stack.state.procs]
    assert len(pids) == len(daemons.names(stack.config))
    stack.down()
    assert [pid for pid in pids if alive(pid)] == [], "processes outlived down"
    busy = [f.name for f in fields(Ports) if not port_free(HOST, getattr(stack.config.ports, f.name))]
    assert busy == [], f"ports still listening after down: {busy}"

    resumed_job = stack.job_id
    stack.up()  # resumes from the latest retained checkpoint, and removes older jobs' checkpoint folders
    jobs = {folder.name for folder in stack.config.checkpoint_dir.iterdir() if JOB_FOLDER.fullmatch(folder.name)}
    assert jobs <= {resumed_job, stack.job_id}, f"earlier jobs' checkpoints left: {jobs}"
    produce(bootstrap, "names", requests(names, PER_NAME - PER_NAME // 2))
    report = read_greetings(bootstrap, names, PER_NAME, settle_s=3 * stack.config.checkpoint_interval_ms / 1000)
    assert report.ok, "\n".join(report.summary())


@pytest.mark.timeout(900)
def test_a_savepoint_is_taken_and_up_resumes_from_it(stack: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    bootstrap = stack.config.bootstrap_servers
    names = unique_names(10)
    settle_s = 3 * stack.config.checkpoint_interval_ms / 1000
    produce(bootstrap, "names", requests(names, PER_NAME // 2))
    assert read_greetings(bootstrap, names, PER_NAME // 2, settle_s=settle_s).ok

    # `greeter-stack savepoint` on the running stack's folder: the job keeps running, the location is printed.
    assert main(["--run-dir", str(stack.config.run_dir), "savepoint"]) == 0
    location = capsys.readouterr().out.strip()
    assert location.startswith(f"file:{stack.config.savepoint_dir.resolve()}/savepoint-")
    assert (Path(location.removeprefix("file:")) / "_metadata").is_file()
    assert stack.rest.job_running(stack.job_id or "") is None, "taking a savepoint must not stop the job"

    stack.down()
    started = time.monotonic()
    stack.up(restore_from=Path(location))
    print(f"[savepoint restore] up --from-savepoint to RUNNING in {time.monotonic() - started:.1f} s", flush=True)
    restored = stack.rest.get(f"/jobs/{stack.job_id}/checkpoints")["latest"]["restored"]
    assert restored["is_savepoint"] and restored["external_path"] == location, restored
    produce(bootstrap, "names", requests(names, PER_NAME - PER_NAME // 2))
    report = read_greetings(bootstrap, names, PER_NAME, settle_s=settle_s)
    assert report.ok, "\n".join(report.summary())  # counts continue from the savepoint
