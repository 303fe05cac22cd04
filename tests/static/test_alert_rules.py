"""deploy/monitoring/alerts.yml: promtool's check and its unit tests pass, every rule is complete and tested both
ways, and docs/alerts.md's table lists exactly the rules (docs/alerts.md)."""

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = ROOT / ".tools" / "prometheus" / "usr" / "bin" / "promtool"
RULES = ROOT / "deploy" / "monitoring" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "monitoring" / "alerts_test.yml"
DOC = ROOT / "docs" / "alerts.md"
# The scrape jobs every Prometheus configuration of the project names (docs/alerts.md, "Scrape jobs").
SCRAPE_JOBS = {"greeter", "flink-jobmanager", "flink-taskmanager"}
IDLE_TEST = "idle pipeline"


def promtool(*argv: str) -> str:
    """Run promtool; its output, or a failure showing it."""
    assert PROMTOOL.is_file(), f"{PROMTOOL} is missing: run scripts/setup"
    done = subprocess.run([str(PROMTOOL), *argv], capture_output=True, text=True, timeout=300, cwd=ROOT)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(argv)} failed:\n{output}"
    return output


def rules() -> list[dict[str, Any]]:
    (group,) = yaml.safe_load(RULES.read_text())["groups"]
    assert group["name"] == "greeter"
    return list(group["rules"])


def rule_tests() -> list[dict[str, Any]]:
    return list(yaml.safe_load(RULE_TESTS.read_text())["tests"])


def test_promtool_checks_the_rules() -> None:
    assert f"SUCCESS: {len(rules())} rules found" in promtool("check", "rules", str(RULES.relative_to(ROOT)))


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", str(RULE_TESTS.relative_to(ROOT)))


def test_every_rule_is_an_alert_with_a_for_a_severity_and_the_three_annotations() -> None:
    names = [rule.get("alert") for rule in rules()]
    assert all(names), "a recording rule or an unnamed one"
    assert len(names) == len(set(names)), names
    for rule in rules():
        name = rule["alert"]
        assert "for" in rule, f"{name} has no `for:`"
        assert rule["labels"]["severity"] in {"page", "ticket"}, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "action"}, name
        assert all(text.strip() for text in annotations.values()), name


def test_the_rules_read_only_the_projects_scrape_jobs() -> None:
    jobs = {job for rule in rules() for job in re.findall(r'\bjob="([^"]+)"', rule["expr"])}
    assert jobs == SCRAPE_JOBS


def test_every_rule_has_a_firing_case_and_a_silent_one_and_the_idle_pipeline_fires_none() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for test in rule_tests():
        for case in test["alert_rule_test"]:
            (firing if case["exp_alerts"] else silent).add(case["alertname"])
    names = {rule["alert"] for rule in rules()}
    assert firing == names, f"never seen firing: {names - firing}"
    assert silent == names, f"never seen silent: {names - silent}"
    (idle,) = [test for test in rule_tests() if test["name"] == IDLE_TEST]
    assert all(not case["exp_alerts"] for case in idle["alert_rule_test"])
    assert {case["alertname"] for case in idle["alert_rule_test"]} == names


def documented() -> dict[str, tuple[str, str]]:
    """docs/alerts.md's alert table: each alert's severity and `for`."""
    lines = DOC.read_text().splitlines()
    start = lines.index("| alert | severity | fires when | for | what it means | what to do |")
    rows: dict[str, tuple[str, str]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        assert len(cells) == 6, line
        name = cells[0].strip("`")
        assert name not in rows, f"{name} twice"
        rows[name] = (cells[1], cells[3])
    return rows


def test_the_readmes_alert_table_lists_exactly_the_rules_with_their_severity() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("| alert | severity | what it means | what to do |")
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        rows[cells[0].strip("`")] = cells[1]
    assert rows == {rule["alert"]: rule["labels"]["severity"] for rule in rules()}


def test_docs_alerts_md_lists_exactly_the_rules_with_their_severity_and_for() -> None:
    table = documented()
    assert table == {rule["alert"]: (rule["labels"]["severity"], rule["for"]) for rule in rules()}
