"""Savepoints on the local stack without starting it: Flink's answer read, a restore point checked."""

from pathlib import Path

import pytest

from stack.local import restore_point
from stack.readiness import StartError
from stack.rest import RestError, savepoint_location


def test_a_completed_savepoint_gives_its_location() -> None:
    assert (
        savepoint_location("j1", {"location": "file:/run/savepoints/savepoint-1"}) == "file:/run/savepoints/savepoint-1"
    )


def test_a_failed_savepoint_raises_flinks_cause() -> None:
    cause = {
        "class": "java.util.concurrent.CompletionException",
        "stack-trace": "CheckpointException: Task not running",
    }
    with pytest.raises(RestError, match="savepoint of job j1 failed: CheckpointException: Task not running"):
        savepoint_location("j1", {"failure-cause": cause})


def test_a_restore_point_is_a_folder_with_metadata_given_as_a_path_or_flinks_uri(tmp_path: Path) -> None:
    savepoint = tmp_path / "savepoint-1"
    savepoint.mkdir()
    (savepoint / "_metadata").write_bytes(b"\x00")
    assert restore_point(savepoint, fresh=False) == savepoint
    assert restore_point(Path(f"file:{savepoint}"), fresh=False) == savepoint


def test_a_folder_without_metadata_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StartError, match="no _metadata"):
        restore_point(tmp_path, fresh=False)


def test_a_savepoint_with_fresh_is_refused(tmp_path: Path) -> None:
    (tmp_path / "_metadata").write_bytes(b"\x00")
    with pytest.raises(StartError, match="--fresh wipes the Kafka offsets"):
        restore_point(tmp_path, fresh=True)
