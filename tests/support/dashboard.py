"""The Grafana dashboard of deploy/monitoring/ as the tests read it: its panels' queries, Grafana's variables
replaced by what Grafana would put there for a 1 s scrape."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stack.config import REPO_ROOT

GRAFANA_DIR = REPO_ROOT / "deploy" / "monitoring" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "greeter.json"
# $__rate_interval is at least four scrape intervals (1 s in the tests); 15 s smooths the 2 s checkpoints' steps.
GRAFANA_VARIABLES = {"$__rate_interval": "15s"}


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel: the panel's title, the target's refId and its PromQL as Prometheus gets it."""

    panel: str
    ref: str
    expr: str

    def __str__(self) -> str:
        return f"panel {self.panel!r}, query {self.ref}: {self.expr}"


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    """The dashboard JSON."""
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too, rows included."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def with_variables(expr: str) -> str:
    """`expr` with Grafana's variables replaced; AssertionError naming one the tests do not know."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    unknown = re.findall(r"\$\{?\w+", expr)
    assert not unknown, f"{expr}: Grafana variables {unknown} have no value in tests/support/dashboard.py"
    return expr


def queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    """Every target of every panel, in the dashboard's order."""
    return [
        PanelQuery(panel["title"], target["refId"], with_variables(target["expr"]))
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]
