"""The Grafana dashboard and its provisioning files (deploy/monitoring/grafana), held to Grafana's file provisioning
format: ids, layout, a Prometheus datasource on every query, every query valid PromQL (promtool), and the
provisioning files pointing at the datasource and the folder the dashboard is mounted in. The live test
(tests/monitoring/) evaluates every query against a stack."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.dashboard import DASHBOARD, GRAFANA_DIR, load_dashboard, panels, queries
from tests.support.prometheus import PROMTOOL

DATASOURCE_UID = "greeter-prometheus"
# Where Grafana reads the dashboards: the repository's dashboards folder is mounted there, and the provisioning
# folder at /etc/grafana/provisioning (README, "Observing it").
DASHBOARDS_MOUNT = "/var/lib/grafana/dashboards/greeter"
GRID_COLUMNS = 24


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def _provisioning(kind: str) -> dict[str, Any]:
    (path,) = sorted((GRAFANA_DIR / "provisioning" / kind).glob("*.yml"))
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    assert document["apiVersion"] == 1, path
    return document


def test_the_dashboard_is_a_provisionable_dashboard(dashboard: dict[str, Any]) -> None:
    assert isinstance(dashboard["uid"], str) and dashboard["uid"]
    assert isinstance(dashboard["title"], str) and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert isinstance(dashboard["panels"], list) and dashboard["panels"]
    # An export's inputs (${DS_...}) are resolved only by an interactive import, never by file provisioning.
    assert "__inputs" not in dashboard
    assert "id" not in dashboard or dashboard["id"] is None, "Grafana assigns the id"


def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in panels(dashboard)]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_every_panel_has_a_place_on_the_grid_and_none_overlap(dashboard: dict[str, Any]) -> None:
    boxes = {}
    for panel in panels(dashboard):
        grid = panel.get("gridPos")
        assert grid, f"panel {panel.get('title')!r} has no gridPos"
        assert all(isinstance(grid.get(key), int) for key in "hwxy"), f"{panel['title']!r}: {grid}"
        assert grid["h"] > 0 and grid["w"] > 0 and grid["x"] >= 0 and grid["y"] >= 0, f"{panel['title']!r}: {grid}"
        assert grid["x"] + grid["w"] <= GRID_COLUMNS, f"panel {panel['title']!r} is wider than the grid: {grid}"
        boxes[panel["title"]] = grid
    for (a, one), (b, other) in itertools.combinations(boxes.items(), 2):
        apart = (
            one["x"] + one["w"] <= other["x"]
            or other["x"] + other["w"] <= one["x"]
            or one["y"] + one["h"] <= other["y"]
            or other["y"] + other["h"] <= one["y"]
        )
        assert apart, f"panels {a!r} and {b!r} overlap: {one} {other}"


def test_every_panel_queries_the_provisioned_prometheus(dashboard: dict[str, Any]) -> None:
    datasource = {"type": "prometheus", "uid": DATASOURCE_UID}
    for panel in panels(dashboard):
        if panel["type"] == "row":
            assert not panel.get("targets"), f"row {panel['title']!r} has queries"
            continue
        where = f"panel {panel['title']!r}"
        assert panel.get("description"), f"{where} says nothing of what it shows"
        assert panel.get("datasource") == datasource, where
        targets = panel.get("targets")
        assert targets, f"{where} has no query"
        refs = [target.get("refId") for target in targets]
        assert all(refs) and len(refs) == len(set(refs)), f"{where}: refIds {refs}"
        for target in targets:
            assert isinstance(target.get("expr"), str) and target["expr"].strip(), f"{where}, {target['refId']}: expr"
            assert target.get("datasource") == datasource, f"{where}, {target['refId']}: datasource"


def test_every_query_is_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """promtool parses each query as a recording rule (Grafana's variables replaced, as the live test does)."""
    failures = []
    for index, query in enumerate(queries(dashboard)):
        rules = tmp_path / f"query-{index}.yml"
        group = {"name": "dashboard", "rules": [{"record": "dashboard:query", "expr": query.expr}]}
        rules.write_text(yaml.safe_dump({"groups": [group]}))
        result = subprocess.run([str(PROMTOOL), "check", "rules", str(rules)], capture_output=True, text=True)
        if result.returncode != 0:
            failures.append(f"{query}\n  {(result.stdout + result.stderr).strip()}")
    assert not failures, "\n".join(failures)


def test_the_datasource_is_the_one_the_dashboard_names() -> None:
    (datasource,) = _provisioning("datasources")["datasources"]
    assert datasource["name"] == "Prometheus"
    assert datasource["type"] == "prometheus"
    assert datasource["uid"] == DATASOURCE_UID
    assert datasource["url"] == "http://prometheus:9090", "the compose service"
    assert datasource["access"] == "proxy", "Grafana's server queries Prometheus, not the browser"


def test_the_dashboard_provider_reads_the_dashboards_folder() -> None:
    (provider,) = _provisioning("dashboards")["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == DASHBOARDS_MOUNT
    # The folder mounted there holds the dashboards and nothing else, each with its own uid.
    files = sorted(DASHBOARD.parent.iterdir())
    assert files == sorted(DASHBOARD.parent.glob("*.json")) and DASHBOARD in files, files
    uids = [load_dashboard(path)["uid"] for path in files]
    assert len(uids) == len(set(uids)), uids
