"""Cancelling the job with a savepoint, robust to what the runtime does on the way: a savepoint refused while the
job settles (tried again), and the single-mode JVM exiting with its job, taking the REST API with it (the
savepoint is then found in its folder, never asked of a REST API that is gone).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from .rest import FlinkRest, RestError, RestUnreachable, SavepointFailed

ATTEMPTS: Final = 4
DEADLINE_S: Final = 120.0
POLL_S: Final = 0.2


def newest_savepoint(folder: Path, job_id: str, since: float) -> Path | None:
    """The newest complete savepoint of `job_id` in `folder` written at or after `since` (seconds since the
    epoch): Flink names each `savepoint-<first 6 digits of the job id>-<random>` and writes its `_metadata` last.
    """
    written = [
        metadata.parent
        for metadata in folder.glob(f"savepoint-{job_id[:6]}-*/_metadata")
        if metadata.stat().st_mtime >= since - 1  # the file system's timestamps are coarser than time.time()
    ]
    return max(written, key=lambda path: (path / "_metadata").stat().st_mtime, default=None)


def cancel_with_savepoint(
    rest: FlinkRest,
    job_id: str,
    folder: Path,
    server_alive: Callable[[], bool],
    report: Callable[[str], None],
) -> Path:
    """Cancel `job_id` with a savepoint into `folder` and wait until the job is cancelled; the savepoint's folder.
    `server_alive` tells whether the process serving the REST API still runs: the single-mode JVM exits once its
    job is over, possibly before the savepoint's status could be read. A refused savepoint leaves the job running
    and is tried again, ATTEMPTS times in all. RestError saying what happened when none succeeds.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, ATTEMPTS + 1):
        since = time.time()
        trigger = rest.trigger_savepoint(job_id, folder.resolve().as_uri(), cancel=True)
        try:
            location = _completed(rest, job_id, trigger, server_alive)
        except SavepointFailed as refused:
            if attempt == ATTEMPTS or rest.job(job_id)["state"] != "RUNNING":
                raise
            report(f"savepoint attempt {attempt} refused, the job runs on; trying again: {refused.cause}")
            time.sleep(2 * attempt)
            continue
        savepoint = Path(location.removeprefix("file:")) if location else newest_savepoint(folder, job_id, since)
        if savepoint is None:
            raise RestError(
                f"the runtime exited before the savepoint of job {job_id} was written in {folder}: "
                "`greeter-stack up` resumes from the newest retained checkpoint"
            )
        _await_cancelled(rest, job_id, server_alive)
        return savepoint
    raise AssertionError("unreachable: the last attempt returns or raises")


def _completed(rest: FlinkRest, job_id: str, trigger: str, server_alive: Callable[[], bool]) -> str | None:
    """The savepoint's location; None when the REST API went away with the process serving it."""
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        try:
            location = rest.savepoint_status(job_id, trigger)
        except RestUnreachable:
            if not server_alive():
                return None
        else:
            if location is not None:
                return location
        time.sleep(POLL_S)
    raise RestError(f"the savepoint of job {job_id} was not done after {DEADLINE_S:.0f} s")


def _await_cancelled(rest: FlinkRest, job_id: str, server_alive: Callable[[], bool]) -> None:
    end = time.monotonic() + DEADLINE_S
    state = "unknown"
    while time.monotonic() < end:
        try:
            state = str(rest.job(job_id)["state"])
        except RestUnreachable:
            if not server_alive():
                return  # the single-mode JVM exits once its job is over
        else:
            if state == "CANCELED":
                return
        time.sleep(POLL_S)
    raise RestError(f"job {job_id} is {state}, not CANCELED, {DEADLINE_S:.0f} s after its savepoint")
