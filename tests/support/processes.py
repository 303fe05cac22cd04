"""Starting the servers a test talks to: their own session (stopped by PID with their group), output to a log."""

import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path


def popen_logged(argv: list[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start `argv` in a new session, stdout and stderr to `log`; this process's copy of the file is closed."""
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=dict(env), start_new_session=True)


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 30) -> int:
    """SIGTERM, then SIGKILL to its whole group after `grace_s`; the exit status (negative: the signal)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    return process.wait()
