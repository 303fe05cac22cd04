"""A greeter build that could not read the released state never serves: gunicorn stops at start-up with the reason
(greeter/state_schema.py), before any worker forks, so a rollout of it stalls instead of failing every call."""

import subprocess
import sys
from pathlib import Path

from stack.config import REPO_ROOT, Ports

INCOMPATIBLE = "tests.support.evolved:incompatible_app()"


def test_gunicorn_refuses_to_start_a_build_with_an_incompatible_state() -> None:
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    config = str(REPO_ROOT / "greeter" / "gunicorn_conf.py")
    bind = f"127.0.0.1:{Ports.free().greeter}"
    argv = [sys.executable, gunicorn, "--config", config, "--bind", bind, "--workers", "1", INCOMPATIBLE]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert (
        "Error: state 'seen_count' (type.googleapis.com/example.SeenCount) was released with field 1 as int64"
        in done.stderr
    )
    assert "Booting worker" not in done.stderr, "no worker started"
