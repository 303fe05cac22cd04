"""stack/savepoints.py against a scripted REST API: the single-mode JVM exiting with its job (the savepoint found
in its folder), a savepoint refused while the job settles (tried again), and what is said when neither works."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stack import savepoints
from stack.rest import FlinkRest, RestError, RestUnreachable, SavepointFailed

JOB = "0123456789abcdef" * 2


class ScriptedRest(FlinkRest):
    """Each savepoint attempt answers its status from `outcomes` (a location, an exception class to raise, or a
    callable run on the first status read); the job is RUNNING until cancelled, then CANCELED or gone."""

    def __init__(self, outcomes: list[Any], gone_after_cancel: bool) -> None:
        super().__init__("http://127.0.0.1:1")
        self.outcomes, self.gone_after_cancel = outcomes, gone_after_cancel
        self.triggers: list[bool] = []
        self.cancelled = False

    def trigger_savepoint(self, job_id: str, target_dir: str, cancel: bool) -> str:
        self.triggers.append(cancel)
        return str(len(self.triggers))

    def savepoint_status(self, job_id: str, trigger: str) -> str | None:
        outcome = self.outcomes[int(trigger) - 1]
        if isinstance(outcome, type) and issubclass(outcome, RestError):
            if outcome is SavepointFailed:
                raise SavepointFailed(job_id, "CheckpointException: Checkpoint Coordinator is suspending.\n\tat ...")
            self.cancelled = True
            raise outcome("gone")
        if callable(outcome):
            outcome()
            self.cancelled = True
            raise RestUnreachable("gone")
        self.cancelled = True
        return str(outcome)

    def job(self, job_id: str) -> dict[str, Any]:
        if self.cancelled and self.gone_after_cancel:
            raise RestUnreachable("gone")
        return {"state": "CANCELED" if self.cancelled else "RUNNING"}


def _write_savepoint(folder: Path, name: str) -> Callable[[], None]:
    def write() -> None:
        (folder / name).mkdir(parents=True)
        (folder / name / "_metadata").write_bytes(b"\x00")

    return write


@pytest.fixture(autouse=True)
def _no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(savepoints, "POLL_S", 0)
    monkeypatch.setattr(savepoints.time, "sleep", lambda _s: None)


def test_a_savepoint_read_from_the_rest_api(tmp_path: Path) -> None:
    rest = ScriptedRest([f"file:{tmp_path}/savepoint-012345-aaaa"], gone_after_cancel=False)

    found = savepoints.cancel_with_savepoint(rest, JOB, tmp_path, lambda: True, print)

    assert found == tmp_path / "savepoint-012345-aaaa"
    assert rest.triggers == [True], "one savepoint, the job cancelled with it"


def test_the_runtime_exiting_with_its_job_leaves_the_savepoint_in_its_folder(tmp_path: Path) -> None:
    (tmp_path / "savepoint-999999-old").mkdir()  # another job's: never taken
    (tmp_path / "savepoint-999999-old" / "_metadata").write_bytes(b"\x00")
    rest = ScriptedRest([_write_savepoint(tmp_path, "savepoint-012345-bbbb")], gone_after_cancel=True)

    found = savepoints.cancel_with_savepoint(rest, JOB, tmp_path, lambda: False, print)

    assert found == tmp_path / "savepoint-012345-bbbb"


def test_a_refused_savepoint_is_tried_again_while_the_job_runs(tmp_path: Path) -> None:
    reports: list[str] = []
    rest = ScriptedRest([SavepointFailed, f"file:{tmp_path}/savepoint-012345-cccc"], gone_after_cancel=False)

    found = savepoints.cancel_with_savepoint(rest, JOB, tmp_path, lambda: True, reports.append)

    assert found == tmp_path / "savepoint-012345-cccc"
    assert len(rest.triggers) == 2
    assert reports == [
        "savepoint attempt 1 refused, the job runs on; trying again: "
        "CheckpointException: Checkpoint Coordinator is suspending."
    ]


def test_a_savepoint_refused_every_time_raises_flinks_cause(tmp_path: Path) -> None:
    rest = ScriptedRest([SavepointFailed] * savepoints.ATTEMPTS, gone_after_cancel=False)

    with pytest.raises(SavepointFailed, match="Checkpoint Coordinator is suspending"):
        savepoints.cancel_with_savepoint(rest, JOB, tmp_path, lambda: True, lambda _line: None)
    assert len(rest.triggers) == savepoints.ATTEMPTS


def test_the_runtime_gone_without_a_savepoint_says_how_to_resume(tmp_path: Path) -> None:
    rest = ScriptedRest([RestUnreachable], gone_after_cancel=True)

    with pytest.raises(RestError, match=r"exited before the savepoint .* `greeter-stack up` resumes"):
        savepoints.cancel_with_savepoint(rest, JOB, tmp_path, lambda: False, lambda _line: None)


def test_only_savepoints_written_since_the_trigger_count(tmp_path: Path) -> None:
    _write_savepoint(tmp_path, "savepoint-012345-dddd")()
    written = (tmp_path / "savepoint-012345-dddd" / "_metadata").stat().st_mtime

    assert savepoints.newest_savepoint(tmp_path, JOB, since=written + 5) is None
    assert savepoints.newest_savepoint(tmp_path, JOB, since=written) == tmp_path / "savepoint-012345-dddd"
