"""A real Prometheus for tests: Debian's 2.42 that scripts/setup installs into .tools/prometheus, started by PID on
a free loopback port with its own storage folder and the configuration it is given (a local stack's, from
`greeter-stack prometheus-config`), and stopped by PID whatever happens. Read through its HTTP API.
"""

from __future__ import annotations

import json
import math
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stack.config import HOST, REPO_ROOT

from .net import free_port, wait_for_http
from .processes import popen_logged, stop_process

PROMETHEUS = REPO_ROOT / ".tools" / "prometheus" / "usr" / "bin" / "prometheus"
PROMTOOL = PROMETHEUS.with_name("promtool")
START_DEADLINE_S = 60
STOP_GRACE_S = 15


@dataclass(frozen=True)
class Series:
    """One series of an instant query's answer: its labels and its value (NaN and infinities included)."""

    labels: dict[str, str]
    value: float

    @property
    def has_data(self) -> bool:
        """A value a panel can draw: not NaN, not infinite."""
        return math.isfinite(self.value)


class PrometheusClient:
    """The HTTP API of one Prometheus server."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=30) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as error:  # a bad query: 400 or 422 with the reason in the body
            answer = json.load(error)
        if answer.get("status") != "success":
            raise AssertionError(f"{path} {params}: {answer.get('errorType')}: {answer.get('error')}")
        return answer["data"]

    def query(self, expr: str) -> list[Series]:
        """The instant query's vector now (a scalar answer as one series without labels)."""
        data = self._get("/api/v1/query", query=expr)
        if data["resultType"] == "vector":
            return [Series(item["metric"], float(item["value"][1])) for item in data["result"]]
        if data["resultType"] == "scalar":
            return [Series({}, float(data["result"][1]))]
        raise AssertionError(f"{expr}: a {data['resultType']}, not an instant vector")

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts pending or firing now, each with its labels and state."""
        alerts: list[dict[str, Any]] = self._get("/api/v1/alerts")["alerts"]
        return alerts

    def firing(self) -> set[str]:
        """The names of the alerts firing now."""
        return {alert["labels"]["alertname"] for alert in self.alerts() if alert["state"] == "firing"}

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets, each with its job, scrape URL and health."""
        targets: list[dict[str, Any]] = self._get("/api/v1/targets", state="active")["activeTargets"]
        return targets

    def health_by_job(self) -> dict[str, list[str]]:
        """Job -> the health of each of its active targets ("up", "down", "unknown" before its first scrape)."""
        health: dict[str, list[str]] = {}
        for target in self.targets():
            health.setdefault(target["labels"]["job"], []).append(target["health"])
        return health

    def rules(self) -> list[dict[str, Any]]:
        """Every alerting rule loaded, each with its name, `duration` (its for:, in seconds) and state."""
        groups = self._get("/api/v1/rules", type="alert")["groups"]
        return [rule for group in groups for rule in group["rules"]]


@contextmanager
def running_prometheus(config_text: str, folder: Path) -> Iterator[PrometheusClient]:
    """Prometheus with `config_text` as its prometheus.yml, its storage and log in `folder`, on a free loopback
    port; yields once it is ready (/-/ready), stops it by PID (SIGTERM, then SIGKILL) whatever happens.
    """
    if not PROMETHEUS.exists():
        raise AssertionError(f"{PROMETHEUS} is missing: run scripts/setup (scripts/install-prometheus)")
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    config.write_text(config_text)
    url = f"http://{HOST}:{free_port()}"
    argv = [
        str(PROMETHEUS),
        f"--config.file={config}",
        f"--web.listen-address={url.removeprefix('http://')}",
        f"--storage.tsdb.path={folder / 'data'}",
    ]
    process = popen_logged(argv, folder / "prometheus.log", os.environ)
    try:
        wait_for_http(f"{url}/-/ready", START_DEADLINE_S, alive=lambda: process.poll() is None)
        yield PrometheusClient(url)
    finally:
        stop_process(process, STOP_GRACE_S)
