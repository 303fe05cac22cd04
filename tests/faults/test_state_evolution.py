"""The per-user state evolved across a restore, on the real stack: a new greeter whose SeenCount has a new field
(tests/support/evolved.py) takes over from the released one after `down` and `up` from a checkpoint the released
one wrote, and reads its counts; then the released greeter comes back (a rollback) and reads what the new one wrote.
Every name 1..30 in order under read_committed, the product's verifier agreeing, no job failure."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from stack import daemons, procs
from stack.config import HOST, REPO_ROOT
from stack.local import LocalStack
from stack.logs import delivery_retries
from stack.readiness import wait_until
from tests.support.waiting import wait_for

from ..e2e.kafka_io import produce, read_greetings, requests, unique_names
from .conftest import fault_config
from .schedule import NAMES, consumer_verdict

pytestmark = pytest.mark.e2e

STEP = 10  # requests per name under each greeter
RELEASED = [str(Path(sys.executable).with_name("greeter-serve"))]
V2 = [sys.executable, "-m", "tests.support.evolved", "v2"]


def serve(stack: LocalStack, command: list[str]) -> None:
    """Replace the stack's greeter with `command` (greeter-serve's flags follow it), on the same port and
    recorded in its place (so `down` stops it); return once it answers /readyz."""
    config = stack.config
    procs.stop(stack.state.proc("greeter"), config.stop_timeout_s)
    argv = [*command, "--bind", f"{HOST}:{config.ports.greeter}", "--workers", "1",
            "--pid", str(config.run_dir / "greeter.pid")]  # fmt: skip
    proc = procs.spawn("greeter", argv, config.log_file("greeter"), env=daemons.env(config, "greeter"), cwd=REPO_ROOT)
    stack.state.replace(proc)
    stack.state.save()
    ready = daemons.ready_check(config, stack.rest, "greeter", proc)
    wait_until(
        f"greeter serving {shlex.join(command)}",
        ready,
        timeout=60,
        log=Path(proc.log),
        alive=lambda: procs.is_running(proc),
    )


@pytest.mark.timeout(900)
def test_a_new_field_in_the_state_across_a_restore_and_back(tmp_path: Path, stacks: list[LocalStack]) -> None:
    config = fault_config(tmp_path / "run")
    names = unique_names(NAMES)
    settle_s = 3 * config.checkpoint_interval_ms / 1000
    bootstrap = config.bootstrap_servers

    released = LocalStack(config)
    stacks.append(released)
    released.up(fresh=True)
    produce(bootstrap, "names", requests(names, STEP))
    assert read_greetings(bootstrap, names, STEP, settle_s=settle_s).ok
    checkpoints = released.latest_checkpoint()
    wait_for(
        "two checkpoints after the last greeting",
        lambda: _checkpoint_id(released) >= (checkpoints.id if checkpoints else 0) + 2,
        60,
    )
    released.down()

    evolved = LocalStack(config)
    stacks.append(evolved)
    evolved.up()  # restores the checkpoint the released greeter's state is in
    restored = evolved.rest.get(f"/jobs/{evolved.job_id}/checkpoints")["latest"]["restored"]
    assert restored is not None, "the job did not restore from the retained checkpoint"
    serve(evolved, V2)
    produce(bootstrap, "names", requests(names, STEP))
    report = read_greetings(bootstrap, names, 2 * STEP, settle_s=settle_s)
    assert report.ok, "\n".join(report.summary())  # the new greeter read every released count: 11..20

    serve(evolved, RELEASED)  # rolled back: the released greeter reads state with a field it does not know
    produce(bootstrap, "names", requests(names, STEP))
    report = read_greetings(bootstrap, names, 3 * STEP, settle_s=settle_s)
    assert report.ok, "\n".join(report.summary())
    verdict = consumer_verdict(["--bootstrap-servers", bootstrap], settle_s)
    assert verdict.returncode == 0, f"greeter-consumer verify failed:\n{verdict.stdout}{verdict.stderr}"
    assert evolved.failure_count() == 0, "no call failed: the job never restarted"
    assert delivery_retries(evolved.config) == 0, "the runtime retried no call to either greeter"
    print(f"[state evolution] restored checkpoint {restored.get('id')}; every name 1..{3 * STEP}", flush=True)


def _checkpoint_id(stack: LocalStack) -> int:
    latest = stack.latest_checkpoint()
    return latest.id if latest else 0
