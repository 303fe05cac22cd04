"""Daemons by recorded PID: spawn in a session of their own, check, signal and stop them.

Never by name: a stack's processes are the PIDs it recorded. Each daemon leads its own session and process
group (start_new_session=True), so signalling the group also reaches its children (gunicorn's workers).
The PID's start time, from /proc, is recorded too, so a reused PID is never mistaken for ours.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# The Popen objects of children started by this Python process, so their exit codes are collected
# (a zombie would otherwise look alive).
_children: dict[tuple[int, int], subprocess.Popen[bytes]] = {}  # by (pid, start ticks)


@dataclass(frozen=True)
class Proc:
    """A process the stack started, as stack.json records it; `start_ticks` tells it from a later holder of its PID."""

    name: str
    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22: tells this process from a later one with the same PID
    log: str
    argv: tuple[str, ...]
    # The process group its signals go to; 0: its own PID (it was started as a group leader). A gunicorn master
    # started by an upgrade in place stays in the group of the master it replaced.
    group: int = 0

    @property
    def pgid(self) -> int:
        """The process group to signal."""
        return self.group or self.pid


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return text[text.rindex(")") + 2 :].split()  # after "pid (comm) ", comm may contain spaces


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks after boot (/proc/<pid>/stat), None when there is no such process."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


# Joins the cgroup whose folder is $0, then becomes the command: the same PID, in the cgroup before it opens a socket.
_IN_CGROUP = 'echo $$ > "$0/cgroup.procs" && exec "$@"'


def cgroup2_root() -> Path:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host);
    RuntimeError when it is not.
    """
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _device, mount_point, fs_type, *_ = line.split()
        if fs_type == "cgroup2":
            return Path(mount_point)
    raise RuntimeError("no cgroup v2 hierarchy is mounted (/proc/self/mounts lists no cgroup2)")


def spawn(
    name: str,
    argv: list[str],
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    cgroup: str | None = None,
) -> Proc:
    """Start `argv` in a new session, stdout and stderr appended to `log`; with `cgroup` (a cgroup v2 path under
    cgroup2_root, whose parent exists), inside that cgroup, made if missing: every socket it opens belongs to it
    (iptables' `-m cgroup --path` tells its traffic from other processes').
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    command = argv
    if cgroup is not None:
        folder = cgroup2_root() / cgroup
        folder.mkdir(exist_ok=True)
        command = ["/bin/sh", "-c", _IN_CGROUP, str(folder), *argv]
    with log.open("ab") as out:
        where = f" in cgroup {cgroup}" if cgroup else ""
        out.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}{where}: {' '.join(argv)}\n".encode())
        out.flush()
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    proc = Proc(name, child.pid, start_ticks(child.pid) or 0, str(log), tuple(argv))
    _children[proc.pid, proc.start_ticks] = child
    return proc


def remove_cgroup(cgroup: str) -> None:
    """Remove the cgroup v2 path `cgroup` that spawn made, once no process is left in it; gone already is fine."""
    with contextlib.suppress(FileNotFoundError):
        (cgroup2_root() / cgroup).rmdir()


def exit_code(proc: Proc) -> int | None:
    """The exit code if this process started it and it has exited."""
    child = _children.get((proc.pid, proc.start_ticks))
    return child.poll() if child is not None else None


def is_running(proc: Proc) -> bool:
    """True while the process lives (a zombie does not) and is the one recorded, not a later holder of its PID.
    With start_ticks 0 (not read at spawn) the PID alone decides.
    """
    child = _children.get((proc.pid, proc.start_ticks))
    if child is not None:  # our child: poll() answers exactly and reaps it (no zombie left behind)
        return child.poll() is None
    fields = _stat_fields(proc.pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return proc.start_ticks == 0 or int(fields[19]) == proc.start_ticks


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, found through /proc."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


def children(pid: int) -> list[int]:
    """The live child processes of `pid`."""
    try:
        listed = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(child) for child in listed if (fields := _stat_fields(int(child))) and fields[0] not in ("Z", "X")]


def rss_bytes(proc: Proc) -> int:
    """The resident memory of the process's group (a gunicorn master and its workers; a JVM alone), summed over its
    members' VmRSS: 0 when it has none left.
    """
    total_kb = 0
    for pid in group_members(proc.pgid):
        with contextlib.suppress(OSError):  # a member may exit between the scan and the read
            status = Path(f"/proc/{pid}/status").read_text()
            total_kb += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total_kb * 1024


def _impostor(proc: Proc) -> bool:
    """Another process holds the PID now: the group with that id (if any) is not ours either.
    While a group of ours has members, the kernel gives no new process its id.
    """
    fields = _stat_fields(proc.pid)
    return fields is not None and proc.start_ticks != 0 and int(fields[19]) != proc.start_ticks


def send(proc: Proc, sig: int, group: bool = True) -> bool:
    """Signal the process (and its group); False when it is gone already."""
    if _impostor(proc) or (not is_running(proc) and not (group and group_members(proc.pgid))):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(proc.pgid, sig)
        else:
            os.kill(proc.pid, sig)
        return True
    return False


def _gone(proc: Proc) -> bool:
    exit_code(proc)  # reap our own child
    return _impostor(proc) or (not is_running(proc) and not group_members(proc.pgid))


def stop(
    proc: Proc,
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """SIGTERM the group, SIGKILL it after `timeout`: 'gone', 'stopped' or 'killed'."""
    if _gone(proc):
        return "gone"
    send(proc, signal.SIGTERM)
    deadline = clock() + timeout
    while clock() < deadline:
        if _gone(proc):
            return "stopped"
        sleep(0.05)
    send(proc, signal.SIGKILL)
    deadline = clock() + 10.0
    while not _gone(proc) and clock() < deadline:
        sleep(0.05)
    return "killed"


def stop_all(
    procs: Iterable[Proc],
    timeout: float,
    *,
    stopper: Callable[[Proc, float], str] | None = None,
    report: Callable[[str], None] = lambda _: None,
    together: Collection[str] = (),
) -> dict[str, str]:
    """Stop in reverse start order (the job before the greeter, Kafka last); every one, whatever fails. The
    processes named in `together` are stopped at once, when their turn comes: a KRaft broker stopped after the
    others waits for a quorum that is gone to approve its shutdown (past a 30 s timeout, seen here).
    """
    do_stop = stopper or (lambda p, t: stop(p, t))
    results: dict[str, str] = {}

    def one(proc: Proc) -> None:
        try:
            results[proc.name] = do_stop(proc, timeout)
        except OSError as error:
            results[proc.name] = f"error: {error}"
        report(f"{proc.name} (pid {proc.pid}): {results[proc.name]}")
        _children.pop((proc.pid, proc.start_ticks), None)

    ordered = list(reversed(list(procs)))
    for proc in ordered:
        if proc.name not in together:
            one(proc)
        elif proc.name not in results:  # the first of them: all of them now
            group = [p for p in ordered if p.name in together]
            with ThreadPoolExecutor(len(group)) as pool:
                list(pool.map(one, group))
    return results
