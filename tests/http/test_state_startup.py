"""A greeter build that could not read the released state never serves: greeter-serve stops at start-up with the
reason (greeter/function/state_schema.py), before gunicorn starts, so a rollout of it stalls instead of failing
every call."""

import subprocess
import sys

from stack.config import REPO_ROOT, Ports


def test_greeter_serve_refuses_to_start_a_build_with_an_incompatible_state() -> None:
    bind = f"127.0.0.1:{Ports.free().greeter}"
    argv = [sys.executable, "-m", "tests.support.evolved", "count-as-text", "--bind", bind, "--workers", "1"]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert (
        "greeter-serve: state 'seen_count' (type.googleapis.com/example.SeenCount) was released with field 1 as int64"
        in done.stderr
    )
    assert "Traceback" not in done.stderr
    assert "Booting worker" not in done.stderr and "Listening at" not in done.stderr, "gunicorn never started"
