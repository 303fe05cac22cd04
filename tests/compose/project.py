"""One compose project of the repository's own docker-compose.yml (and overrides), driven as a user drives it:
`docker compose ...` from the repository root, with the image variables pointing at the stand-ins and the two
published ports on free loopback ports."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stack.config import REPO_ROOT
from stack.rest import FlinkRest, RestUnreachable


@dataclass
class ComposeProject:
    name: str
    env: dict[str, str]
    files: list[str] = field(default_factory=lambda: ["docker-compose.yml"])

    @property
    def bootstrap(self) -> str:
        return f"localhost:{self.env['KAFKA_HOST_PORT']}"

    @property
    def rest(self) -> FlinkRest:
        return FlinkRest(f"http://127.0.0.1:{self.env['FLINK_UI_HOST_PORT']}")

    def run(self, *argv: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`docker compose -p NAME -f ... ARGV` from the repository root."""
        command = ["docker", "compose", "-p", self.name, *(f"--file={file}" for file in self.files), *argv]
        result = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def containers(self) -> dict[str, dict[str, Any]]:
        """Service -> `docker inspect` of its container, stopped ones included."""
        ids = self.run("ps", "--all", "--quiet").stdout.split()
        if not ids:
            return {}
        inspected = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, check=True).stdout)
        return {item["Config"]["Labels"]["com.docker.compose.service"]: item for item in inspected}

    def running_job(self, deadline_s: float = 180) -> str:
        """The id of the job once it runs, as the REST API reports it."""
        deadline = time.monotonic() + deadline_s
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                running = [job["id"] for job in self.rest.get("/jobs")["jobs"] if job["status"] == "RUNNING"]
                if running:
                    (job,) = running
                    return str(job)
                last = "no job RUNNING"
            except RestUnreachable as error:
                last = str(error)
            time.sleep(1)
        raise AssertionError(f"the job did not run within {deadline_s:.0f} s: {last}")

    def save_logs(self, path: Path) -> None:
        """Every service's log into `path`, for the test report."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.run("logs", "--no-color", "--timestamps", check=False).stdout)
