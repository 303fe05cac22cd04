"""stack/monitoring.py and `greeter-stack prometheus-config`: the targets of each mode, and a configuration that
Prometheus's own checker (promtool 2.42) accepts. tests/monitoring/ scrapes a live stack with it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from certs.tls import mint
from stack.cli import main
from stack.config import Ports, StackConfig
from stack.monitoring import prometheus_config, scrape_targets
from stack.state import StackState
from tests.support.prometheus import PROMTOOL

PORTS = Ports(greeter=18000, prometheus=19249, prometheus_taskmanager=19250)


def _check(config_text: str, folder: Path) -> Any:
    """promtool's verdict on the configuration (it fails the test with promtool's words); the parsed YAML."""
    path = folder / "prometheus.yml"
    path.write_text(config_text)
    result = subprocess.run([str(PROMTOOL), "check", "config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return yaml.safe_load(config_text)


def test_single_mode_scrapes_the_greeter_and_the_one_runtime_jvm() -> None:
    config = StackConfig(ports=PORTS, mode="single")
    assert scrape_targets(config) == {"greeter": ["127.0.0.1:18000"], "flink-jobmanager": ["127.0.0.1:19249"]}


def test_cluster_mode_scrapes_every_taskmanager_on_its_own_port() -> None:
    config = StackConfig(ports=PORTS, mode="cluster", parallelism=3)
    assert scrape_targets(config) == {
        "greeter": ["127.0.0.1:18000"],
        "flink-jobmanager": ["127.0.0.1:19249"],
        "flink-taskmanager": ["127.0.0.1:19250", "127.0.0.1:19251", "127.0.0.1:19252"],
    }


def test_the_configuration_is_valid_with_its_intervals_and_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text("groups:\n  - name: none\n    rules: []\n")
    text = prometheus_config(StackConfig(ports=PORTS, mode="cluster"), "1s", "2s", [rules])
    parsed = _check(text, tmp_path)
    assert parsed["global"] == {"scrape_interval": "1s", "evaluation_interval": "2s"}
    assert parsed["rule_files"] == [str(rules)]
    jobs = {job["job_name"]: job["static_configs"] for job in parsed["scrape_configs"]}
    assert jobs == {
        "greeter": [{"targets": ["127.0.0.1:18000"]}],
        "flink-jobmanager": [{"targets": ["127.0.0.1:19249"]}],
        "flink-taskmanager": [{"targets": ["127.0.0.1:19250"]}],
    }


def test_with_tls_the_greeter_is_scraped_over_https_with_the_runtimes_certificate(tmp_path: Path) -> None:
    config = StackConfig(run_dir=tmp_path / "run", ports=PORTS, tls=True)
    files = mint(config.tls_dir)
    parsed = _check(prometheus_config(config), tmp_path)
    greeter, jobmanager = parsed["scrape_configs"]
    assert greeter["scheme"] == "https"
    assert greeter["tls_config"] == {
        "ca_file": str(files.ca),
        "cert_file": str(files.client_cert),
        "key_file": str(files.client_key),
    }
    assert "scheme" not in jobmanager, "Flink's reporters speak plain HTTP on loopback"


def test_the_command_prints_the_recorded_stacks_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = StackConfig(run_dir=tmp_path, ports=PORTS, mode="cluster", parallelism=2)
    StackState(config).save()
    rules = tmp_path / "alerts.yml"
    argv = ["--run-dir", str(tmp_path), "prometheus-config", "--scrape-interval", "1s", "--rules", str(rules)]
    assert main(argv) == 0
    assert capsys.readouterr().out == prometheus_config(config, "1s", "5s", [rules])


def test_the_command_without_a_stack_says_how_to_start_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--run-dir", str(tmp_path), "prometheus-config"]) == 1
    assert "greeter-stack up" in capsys.readouterr().err
