"""stack/procs.py with real but trivial children: SIGTERM then SIGKILL, groups, reverse order, PID reuse."""

import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from stack import procs
from stack.procs import Proc

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
# Ignores SIGTERM, like a daemon stuck in its shutdown; says so once it does (split: the log header holds argv).
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('sig' + 'nal ignored', flush=True); "
    "time.sleep(60)",
]


def _wait_for_line(log: Path, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)


def _tree(tmp_path: Path, ignore_sigterm: bool) -> Proc:
    """A parent that starts a child (like gunicorn's master its workers), once the child runs."""
    ignore = "signal.signal(signal.SIGTERM, signal.SIG_IGN); " if ignore_sigterm else ""
    script = (
        f"import signal, subprocess, sys, time; {ignore}"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print('grand' + 'child', c.pid, flush=True); time.sleep(60)"
    )
    log = tmp_path / "tree.log"
    proc = procs.spawn("tree", [sys.executable, "-c", script], log)
    _wait_for_line(log, "grandchild ")
    return proc


def test_spawn_records_pid_and_logs(tmp_path: Path) -> None:
    log = tmp_path / "echo.log"
    proc = procs.spawn("echo", [sys.executable, "-c", "print('hello')"], log)
    deadline = time.monotonic() + 10
    while procs.is_running(proc):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert procs.exit_code(proc) == 0
    assert "starting echo" in log.read_text() and "hello" in log.read_text()


def test_sigterm_stops(tmp_path: Path) -> None:
    proc = procs.spawn("sleeper", SLEEPER, tmp_path / "s.log")
    assert procs.is_running(proc)
    assert procs.stop(proc, timeout=5) == "stopped"
    assert not procs.is_running(proc)
    assert procs.exit_code(proc) == -signal.SIGTERM


def test_sigkill_after_the_deadline(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    proc = procs.spawn("stubborn", STUBBORN, log)
    _wait_for_line(log, "signal ignored")
    started = time.monotonic()
    assert procs.stop(proc, timeout=0.5) == "killed"
    assert time.monotonic() - started < 5
    assert procs.exit_code(proc) == -signal.SIGKILL


def test_stop_reaches_the_whole_group(tmp_path: Path) -> None:
    # A parent that starts a grandchild (like gunicorn's workers) and ignores SIGTERM itself.
    proc = _tree(tmp_path, ignore_sigterm=True)
    assert len(procs.group_members(proc.pid)) == 2
    procs.stop(proc, timeout=0.5)
    assert procs.group_members(proc.pid) == []


def test_a_process_recorded_in_another_leaders_group_is_stopped_with_that_group(tmp_path: Path) -> None:
    # A gunicorn master started by an upgrade in place: not a group leader, its group the old master's.
    leader = _tree(tmp_path, ignore_sigterm=False)
    (child,) = procs.children(leader.pid)
    recorded = Proc("greeter", child, procs.start_ticks(child) or 0, leader.log, (), group=leader.pid)
    assert recorded.pgid == leader.pid and procs.is_running(recorded)
    assert procs.stop(recorded, timeout=5) == "stopped"
    assert procs.group_members(leader.pid) == [], "the whole group is gone, the old leader included"


def test_a_reused_pid_is_not_ours(tmp_path: Path) -> None:
    proc = procs.spawn("sleeper", SLEEPER, tmp_path / "s.log")
    try:
        impostor = Proc("sleeper", proc.pid, proc.start_ticks + 1, proc.log, proc.argv)
        assert not procs.is_running(impostor)
        assert procs.stop(impostor, timeout=1) == "gone"
        assert procs.is_running(proc)  # the real one was left alone
    finally:
        procs.stop(proc, timeout=5)


def test_stop_of_a_gone_process_is_harmless(tmp_path: Path) -> None:
    proc = procs.spawn("quick", [sys.executable, "-c", "pass"], tmp_path / "q.log")
    procs.stop(proc, timeout=5)
    assert procs.stop(proc, timeout=5) == "gone"
    assert not procs.send(proc, signal.SIGTERM)


def test_stop_all_in_reverse_order_even_when_one_fails() -> None:
    started = [Proc(name, 100 + i, 1, f"{name}.log", ()) for i, name in enumerate(["kafka", "greeter", "jm", "tm"])]
    order: list[str] = []

    def fake_stop(proc: Proc, timeout: float) -> str:
        order.append(proc.name)
        if proc.name == "greeter":
            raise PermissionError("not allowed")
        return "stopped"

    results = procs.stop_all(started, 3.0, stopper=fake_stop)
    assert order == ["tm", "jm", "greeter", "kafka"]
    assert results["greeter"].startswith("error") and results["kafka"] == "stopped"


def test_stop_all_stops_the_brokers_together_after_the_rest() -> None:
    names = ["kafka", "kafka-2", "kafka-3", "greeter", "tm"]
    started = [Proc(name, 100 + i, 1, f"{name}.log", ()) for i, name in enumerate(names)]
    stopping: set[str] = set()
    overlapped = threading.Event()
    order: list[str] = []

    def fake_stop(proc: Proc, timeout: float) -> str:
        order.append(proc.name)
        stopping.add(proc.name)
        if {"kafka", "kafka-2", "kafka-3"} <= stopping:
            overlapped.set()
        # a broker stops only once every broker is stopping: as a KRaft broker waits for its quorum
        return "killed" if proc.name.startswith("kafka") and not overlapped.wait(5) else "stopped"

    results = procs.stop_all(started, 3.0, stopper=fake_stop, together=("kafka", "kafka-2", "kafka-3"))
    assert order[:2] == ["tm", "greeter"] and set(order[2:]) == {"kafka", "kafka-2", "kafka-3"}
    assert results == dict.fromkeys(names, "stopped")


def test_stop_uses_sigterm_then_sigkill_with_a_fake_clock(monkeypatch: object) -> None:
    sent: list[int] = []
    now = [0.0]
    proc = Proc("fake", 999_999_999, 1, "fake.log", ())
    alive = {"value": True}

    def fake_send(p: Proc, sig: int, group: bool = True) -> bool:
        sent.append(sig)
        if sig == signal.SIGKILL:
            alive["value"] = False
        return True

    def sleep(seconds: float) -> None:
        now[0] += seconds

    import pytest

    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(procs, "send", fake_send)
        mp.setattr(procs, "_gone", lambda p: not alive["value"])
        assert procs.stop(proc, timeout=2.0, clock=lambda: now[0], sleep=sleep) == "killed"
    finally:
        mp.undo()
    assert sent == [signal.SIGTERM, signal.SIGKILL]
    assert 2.0 <= now[0] < 2.2


def test_rss_counts_the_whole_group_like_gunicorns_master_and_workers(tmp_path: Path) -> None:
    def rss_kb(pid: int) -> int:
        status = Path(f"/proc/{pid}/status").read_text()
        return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))

    proc = _tree(tmp_path, ignore_sigterm=False)
    members = procs.group_members(proc.pgid)
    try:
        assert len(members) == 2
        total = procs.rss_bytes(proc)
        assert total > rss_kb(proc.pid) * 1024, "the child counts too"
        assert total == pytest.approx(sum(rss_kb(pid) for pid in members) * 1024, rel=0.1)
    finally:
        procs.stop(proc, timeout=5)
    assert procs.rss_bytes(proc) == 0


def test_spawn_in_a_cgroup_runs_the_command_itself_inside_it(tmp_path: Path) -> None:
    """The recorded PID is the command's (the shell that joins the cgroup execs it), and it runs in the cgroup,
    which is removed once it has exited."""
    cgroup = f"greeter-stack-unit-{uuid.uuid4().hex[:12]}"
    proc = procs.spawn("sleeper", SLEEPER, tmp_path / "s.log", cgroup=cgroup)
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[:1] != [sys.executable.encode()]:
            assert time.monotonic() < deadline, "the shell never became the command"
            time.sleep(0.02)
        assert f"0::/{cgroup}\n" in Path(f"/proc/{proc.pid}/cgroup").read_text()
        assert proc.argv == tuple(SLEEPER)  # what a respawn starts again, in its cgroup again
        assert f"starting sleeper in cgroup {cgroup}" in (tmp_path / "s.log").read_text()
    finally:
        procs.stop(proc, timeout=5)
        procs.remove_cgroup(cgroup)
    assert not (procs.cgroup2_root() / cgroup).exists()
