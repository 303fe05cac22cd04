"""CPU time and peak memory of a process and its children, from /proc; disk space under folders."""

import contextlib
import os
from pathlib import Path
from stat import S_ISREG

_TICKS = 100  # os.sysconf("SC_CLK_TCK") on Linux


def _tree(pid: int) -> list[int]:
    pids, found = [pid], []
    while pids:
        current = pids.pop()
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except FileNotFoundError:
            continue
        found.append(current)
        pids += [int(child) for child in children]
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process and its live children (gunicorn master + workers)."""
    total = 0
    for member in _tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


def _status_kb(pid: int, field: str) -> int:
    """One field of the process tree's /proc/<pid>/status (VmRSS, VmHWM), summed, in kB."""
    total = 0
    for member in _tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except FileNotFoundError:
            continue
        total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith(f"{field}:"))
    return total


def peak_rss_mb(pid: int) -> float:
    """The peak RSS of the process and its children (each one's VmHWM), in MB."""
    return _status_kb(pid, "VmHWM") / 1024


def rss_mb(pid: int) -> float:
    """The RSS of the process and its children now, in MB."""
    return _status_kb(pid, "VmRSS") / 1024


def reset_peak_rss(pid: int) -> None:
    """Start a new peak-RSS window for the process and its children: VmHWM drops to the current RSS
    (writing 5 to /proc/<pid>/clear_refs resets only that; Linux 4.0+)."""
    for member in _tree(pid):
        try:
            Path(f"/proc/{member}/clear_refs").write_text("5")
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue


def dir_bytes(*paths: Path) -> int:
    """Disk space the files under `paths` take (what `du` counts: allocated blocks, so Kafka's preallocated,
    sparse 10 MB segment indexes count for what they hold), 0 for a missing path. Files or folders removed while
    walking (compaction, a subsumed checkpoint) are skipped."""
    total = 0
    for path in paths:
        for folder, _dirs, files in os.walk(path):
            for name in files:
                with contextlib.suppress(FileNotFoundError):
                    stat = os.lstat(os.path.join(folder, name))
                    if S_ISREG(stat.st_mode):
                        total += stat.st_blocks * 512
    return total
