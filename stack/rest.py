"""The few Flink REST calls the stack needs: upload and run the job jar, job state, checkpoints, savepoints,
failures.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Flink keeps a bounded exception history (web.exception-history-size, 16 by default); ask for all of it.
_MAX_EXCEPTIONS = 1000


class RestError(RuntimeError):
    """A Flink REST call failed; the message carries Flink's own error text."""


class SavepointFailed(RestError):
    """Flink answered that a savepoint failed; `cause` is the reason it gave (its exception's first line)."""

    def __init__(self, job_id: str, cause: str) -> None:
        self.cause = cause.strip().splitlines()[0] if cause.strip() else "no cause given"
        super().__init__(f"the savepoint of job {job_id} failed: {cause[-3000:]}")


class RestUnreachable(RestError):
    """Nothing answered at the REST API's address: the JVM serving it is not running (or not yet, or no longer)."""


@dataclass(frozen=True)
class Checkpoint:
    """A completed checkpoint: its id, when it completed (ms since the epoch) and its external path."""

    id: int
    completed_at_ms: int
    path: str


@dataclass(frozen=True)
class TaskManager:
    """A registered TaskManager: Flink's id for it (host:port-suffix), its slots and how many are free."""

    id: str
    slots: int
    free_slots: int


class FlinkRest:
    """A client of the Flink REST API at `base_url`; an HTTP error raises RestError carrying Flink's answer."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Any:
        request = urllib.request.Request(self.base_url + path, data=body, method=method)
        if body is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            raise RestError(f"{method} {path} -> {error.code}: {detail[-3000:]}") from error
        except (urllib.error.URLError, ConnectionError, http.client.HTTPException, TimeoutError) as error:
            reason = getattr(error, "reason", None) or error
            raise RestUnreachable(f"Flink's REST API at {self.base_url} did not answer ({reason})") from error
        return json.loads(text) if text else None

    def get(self, path: str) -> Any:
        """GET `path`: its JSON body, None when empty."""
        return self._call("GET", path)

    def overview(self) -> dict[str, Any]:
        """GET /overview: the cluster's TaskManagers and slots."""
        result: dict[str, Any] = self.get("/overview")
        return result

    def job_ids(self) -> list[str]:
        """GET /jobs: the ids of the jobs the cluster knows, whatever their state."""
        return [str(job["id"]) for job in self.get("/jobs")["jobs"]]

    def upload_jar(self, jar: Path) -> str:
        """POST /jars/upload; returns the jar id for /jars/<id>/run."""
        boundary = uuid.uuid4().hex
        body = b"".join(
            [
                f"--{boundary}\r\n".encode(),
                f'Content-Disposition: form-data; name="jarfile"; filename="{jar.name}"\r\n'.encode(),
                b"Content-Type: application/x-java-archive\r\n\r\n",
                jar.read_bytes(),
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        reply = self._call("POST", "/jars/upload", body, f"multipart/form-data; boundary={boundary}", timeout=60)
        if reply.get("status") != "success":
            raise RestError(f"jar upload failed: {reply}")
        return str(reply["filename"]).rsplit("/", 1)[-1]

    def run_jar(self, jar_id: str, entry_class: str, parallelism: int, savepoint: str | None = None) -> str:
        """POST /jars/<id>/run; with a savepoint (or retained checkpoint) path the job resumes from it."""
        request: dict[str, Any] = {"entryClass": entry_class, "parallelism": parallelism}
        if savepoint:
            # allowNonRestoredState: an operator removed since the checkpoint must not block the resume.
            request.update(savepointPath=savepoint, allowNonRestoredState=True)
        reply = self._call("POST", f"/jars/{jar_id}/run", json.dumps(request).encode(), timeout=120)
        return str(reply["jobid"])

    def job(self, job_id: str) -> dict[str, Any]:
        """GET /jobs/<id>: the job's state and its vertices."""
        result: dict[str, Any] = self.get(f"/jobs/{job_id}")
        return result

    def job_running(self, job_id: str) -> str | None:
        """None when the job and all its tasks run (the ingress consumes only then)."""
        job = self.job(job_id)
        if job["state"] != "RUNNING":
            return f"job {job_id} is {job['state']}"
        pending = [v["name"] for v in job.get("vertices", []) if v["status"] != "RUNNING"]
        return f"tasks not running yet: {', '.join(pending)}" if pending else None

    def latest_checkpoint(self, job_id: str) -> Checkpoint | None:
        """The job's latest completed checkpoint, None before the first."""
        latest = (self.get(f"/jobs/{job_id}/checkpoints").get("latest") or {}).get("completed")
        if not latest:
            return None
        return Checkpoint(int(latest["id"]), int(latest["latest_ack_timestamp"]), str(latest.get("external_path", "")))

    def savepoint(self, job_id: str, target_dir: str, deadline_s: float = 120) -> str:
        """Take a savepoint of running job `job_id` under `target_dir` (a URI), the job running on, and wait for it;
        its location. RestError carrying Flink's cause when it fails or is not done by the deadline.
        """
        trigger = self.trigger_savepoint(job_id, target_dir, cancel=False)
        end = time.monotonic() + deadline_s
        while (location := self.savepoint_status(job_id, trigger)) is None:
            if time.monotonic() > end:
                raise RestError(f"the savepoint of job {job_id} was not done after {deadline_s:.0f} s")
            time.sleep(0.2)
        return location

    def trigger_savepoint(self, job_id: str, target_dir: str, cancel: bool) -> str:
        """Ask for a savepoint of `job_id` under `target_dir` (a URI), with `cancel` the job cancelled right after
        it; the trigger id `savepoint_status` takes.

        Not Flink's stop-with-savepoint (POST /jobs/<id>/stop): with StateFun 3.3.0's Kafka ingress (the legacy
        FlinkKafkaConsumer) it fails the source task with Handover$ClosedException, and the job restarts instead
        of stopping. Cancelling after the savepoint keeps exactly-once: the egress's transaction that the
        savepoint holds is committed when a job resumes from it, and what ran after it is aborted and replayed.
        """
        body = json.dumps({"target-directory": target_dir, "cancel-job": cancel}).encode()
        return str(self._call("POST", f"/jobs/{job_id}/savepoints", body)["request-id"])

    def savepoint_status(self, job_id: str, trigger: str) -> str | None:
        """The savepoint's location once completed, None while in progress; RestError with Flink's cause if it
        failed.
        """
        reply = self.get(f"/jobs/{job_id}/savepoints/{trigger}")
        if reply["status"]["id"] != "COMPLETED":
            return None
        return savepoint_location(job_id, reply.get("operation") or {})

    def parallelism(self, job_id: str) -> tuple[int, int]:
        """The job's parallelism and maximum parallelism (its key groups: the most it can be rescaled to), the
        highest over its vertices.
        """
        vertices = self.job(job_id)["vertices"]
        return max(int(v["parallelism"]) for v in vertices), min(int(v["maxParallelism"]) for v in vertices)

    def taskmanagers(self) -> list[TaskManager]:
        """GET /taskmanagers: each registered TaskManager, its slots and the free ones."""
        return [
            TaskManager(str(tm["id"]), int(tm["slotsNumber"]), int(tm["freeSlots"]))
            for tm in self.get("/taskmanagers")["taskmanagers"]
        ]

    def failure_count(self, job_id: str) -> int:
        """Failures the job went through: entries of its exception history. Not the `numRestarts` metric,
        which the REST API still served as 0 long after a TaskManager-loss restart here.
        """
        history = self.get(f"/jobs/{job_id}/exceptions?maxExceptions={_MAX_EXCEPTIONS}")["exceptionHistory"]
        return len(history["entries"])

    def cancel(self, job_id: str) -> None:
        """Ask Flink to cancel the job; returns without waiting for it to stop."""
        self._call("PATCH", f"/jobs/{job_id}?mode=cancel")


def savepoint_location(job_id: str, operation: dict[str, Any]) -> str:
    """A completed savepoint operation's location, or SavepointFailed with the cause Flink gave for its failure."""
    if "location" in operation:
        return str(operation["location"])
    cause = operation.get("failure-cause") or {}
    raise SavepointFailed(job_id, str(cause.get("stack-trace", cause)))
