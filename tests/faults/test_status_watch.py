"""`greeter-stack status --watch` read back from a real terminal: tmux, on a socket of this test's own (-L), runs
the view in a detached session of a fixed size while greeter-generator loads the stack; `tmux capture-pane -p`
reads the screen. Then the greeter is killed (its whole group, as the fault tests kill it): the view goes on
refreshing and marks it stopped. Ctrl-C ends the view with exit status 0 and nothing else on the screen.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from stack.faults import kill
from stack.kafka_auth import GENERATOR, client_flags
from stack.local import LocalStack
from tests.support.processes import popen_logged, stop_process
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

WIDTH, HEIGHT = 120, 40
DEADLINE_S = 90  # the first greetings after `up`, under a loaded machine


class Tmux:
    """A tmux server of our own (its socket named for this test only), one session `watch` in it."""

    def __init__(self, tmux: str) -> None:
        self.argv = [tmux, "-L", f"greeter-watch-{uuid.uuid4().hex[:12]}", "-f", "/dev/null"]

    def __call__(self, *args: str) -> str:
        # The pane's size is the terminal's: COLUMNS or LINES passed on would override it (rich trusts them, as
        # shutil does), and this process's C environment holds them: GNU readline, which pytest imports, sets them.
        env = {name: value for name, value in os.environ.items() if name not in ("COLUMNS", "LINES")}
        return subprocess.run(
            [*self.argv, *args], capture_output=True, text=True, check=True, timeout=10, env=env
        ).stdout

    def start(self, command: list[str], env: dict[str, str]) -> None:
        """The session, detached and WIDTH x HEIGHT, kept on screen when `command` exits (to read its status)."""
        variables = [arg for name, value in env.items() for arg in ("-e", f"{name}={value}")]
        size = ["-x", str(WIDTH), "-y", str(HEIGHT)]
        self("new-session", "-d", "-s", "watch", *size, *variables, shlex.join(command), ";",
             "set-option", "-t", "watch", "remain-on-exit", "on")  # fmt: skip

    def value(self, variable: str) -> str:
        """A format variable of the session's pane: #{pid} is the server's, #{pane_pid} the view's."""
        return self("display-message", "-p", "-t", "watch", f"#{{{variable}}}").strip()

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "watch")

    def wait_for_screen(self, what: str, check: Callable[[str], bool]) -> str:
        """The screen once `check` holds for it; AssertionError with the last screen after DEADLINE_S."""
        last = [""]

        def shows() -> bool:
            last[0] = self.screen()
            return check(last[0])

        try:
            wait_for(what, shows, DEADLINE_S)
        except AssertionError as error:
            raise AssertionError(f"{error}; the screen:\n{last[0]}") from None
        return last[0]


@contextmanager
def tmux_server() -> Iterator[Tmux]:
    """Our tmux, stopped at the end by its own socket, then by PID whatever of it (the server, the view) is left;
    its socket file removed (tmux leaves it behind).
    """
    found = shutil.which("tmux")
    assert found, "tmux not found: scripts/setup installs it (Debian's tmux) when it runs as root with apt-get"
    tmux = Tmux(found)
    pids: list[int] = []
    socket = None
    try:
        yield tmux
    finally:
        try:
            pids = [int(tmux.value("pid")), int(tmux.value("pane_pid"))]
            socket = Path(tmux.value("socket_path"))
            tmux("kill-server")
        except subprocess.CalledProcessError:
            pass  # no server (it never started) or it is gone
        for pid in pids:
            try:
                wait_for(f"tmux's process {pid} to exit", lambda pid=pid: not _alive(pid), 10)
            except AssertionError:
                os.kill(pid, signal.SIGKILL)
        if socket is not None:
            socket.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def row(screen: str, label: str) -> str | None:
    """The value the view shows for `label` in the pipeline table."""
    match = re.search(rf"^\s*{re.escape(label)}\s+(\S.*?)\s*$", screen, re.MULTILINE)
    return match.group(1) if match else None


def process(screen: str, name: str) -> list[str]:
    """A process's row: its state, pid and RSS."""
    match = re.search(rf"^\s*{re.escape(name)}\s+((?:running|stopped)\b.*?)\s*$", screen, re.MULTILINE)
    return match.group(1).split() if match else []


def per_second(screen: str, label: str) -> float:
    value = row(screen, label) or ""
    return float(value.removesuffix("/s").replace(",", "")) if value.endswith("/s") else 0.0


def milliseconds(screen: str, label: str) -> bool:
    return re.fullmatch(r">? ?[\d.]+ ms", row(screen, label) or "") is not None


def refreshed_at(screen: str) -> str | None:
    match = re.search(r"(\d\d:\d\d:\d\d), every 1 s", screen)
    return match.group(1) if match else None


@pytest.mark.timeout(420)
def test_the_live_view_shows_the_running_stack_then_the_stopped_greeter(
    fault_stack: LocalStack, tmp_path: Path
) -> None:
    config = fault_stack.config
    load = ["--rate", "100", "--names", "20", "--no-progress"]
    generator_argv = [str(config.venv_bin / "greeter-generator"), *client_flags(config, GENERATOR), *load]
    generator = popen_logged(generator_argv, tmp_path / "generator.log", os.environ)
    try:
        with tmux_server() as tmux:
            # bash records the view's exit status: tmux's own record (pane_dead_status) was missing in some runs,
            # the view a zombie tmux had not reaped yet.
            exit_file = tmp_path / "watch.exit"
            view = shlex.join([str(config.venv_bin / "greeter-stack"), "status", "--watch"])
            tmux.start(["bash", "-c", f"{view}; echo $? > {shlex.quote(str(exit_file))}"],
                       {"GREETER_STACK_RUN_DIR": str(config.run_dir)})  # fmt: skip

            running = tmux.wait_for_screen(
                "the job RUNNING, names in and greetings out, the greeter's p50 and p99",
                lambda screen: (
                    row(screen, "job") == "RUNNING"
                    and per_second(screen, "names in") > 0
                    and per_second(screen, "greetings out") > 0
                    and milliseconds(screen, "greeter p50")
                    and milliseconds(screen, "greeter p99")
                ),
            )
            print(f"\n[status --watch, the stack under load]\n{running}", flush=True)
            for name in ("kafka", "greeter", "jobmanager", "taskmanager"):
                assert process(running, name)[0] == "running", running
            assert f"run folder {config.run_dir}" in running

            kill(fault_stack, "greeter")
            stopped = tmux.wait_for_screen(
                "the greeter stopped, no latency and no greetings out",
                lambda screen: (
                    process(screen, "greeter") == ["stopped", "-", "-"]
                    and row(screen, "greeter p50") == row(screen, "greeter p99") == "-"
                    and row(screen, "greetings out") == "0.0/s"
                ),
            )
            print(f"\n[status --watch, the greeter killed]\n{stopped}", flush=True)
            assert row(stopped, "job") == "RUNNING", "the runtime retries its calls for a minute before it restarts"
            first = refreshed_at(stopped)
            later = tmux.wait_for_screen("a later refresh", lambda screen: refreshed_at(screen) not in (first, None))
            second = refreshed_at(later)
            later = tmux.wait_for_screen(
                "another one", lambda screen: refreshed_at(screen) not in (first, second, None)
            )
            assert "Traceback" not in later

            tmux("send-keys", "-t", "watch", "C-c")
            wait_for(
                "the view to end on Ctrl-C", lambda: exit_file.exists() and exit_file.read_text() != "", DEADLINE_S
            )
            assert exit_file.read_text().strip() == "0"
            assert "Traceback" not in tmux.screen()
    finally:
        stop_process(generator)
