"""A Prometheus configuration that scrapes a local stack: `greeter-stack prometheus-config`.

One scrape job per kind of process, named as the dashboard and the alert rules of deploy/monitoring/ expect them:
`greeter` (the greeter's /metrics), `flink-jobmanager` (the JobManager's reporter; in single mode the one runtime
JVM, which serves the job's and its tasks' metrics both) and, in cluster mode, `flink-taskmanager` (one target per
TaskManager). The text is YAML; strings are written as JSON strings, which YAML reads as they are.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from certs.tls import CertFiles

from . import daemons
from .config import HOST, StackConfig
from .flink import prometheus_port

GREETER_JOB = "greeter"
JOBMANAGER_JOB = "flink-jobmanager"
TASKMANAGER_JOB = "flink-taskmanager"


def scrape_targets(config: StackConfig) -> dict[str, list[str]]:
    """Each scrape job's targets (host:port), in the stack's start order; no TaskManager job in single mode."""
    address = f"{HOST}:{{}}".format
    jobs = {GREETER_JOB: [address(config.ports.greeter)]}
    flink = daemons.runtime_names(config)
    jobs[JOBMANAGER_JOB] = [address(prometheus_port(config, flink[0]))]  # the runtime or the JobManager
    if config.mode == "cluster":
        jobs[TASKMANAGER_JOB] = [address(prometheus_port(config, name)) for name in flink[1:]]
    return jobs


def prometheus_config(
    config: StackConfig, scrape_interval: str = "5s", evaluation_interval: str = "5s", rule_files: Sequence[Path] = ()
) -> str:
    """prometheus.yml for `config`'s stack. Rule files are written as absolute paths (Prometheus reads relative
    ones from the configuration file's folder). With `tls` the greeter answers only HTTPS with a client
    certificate of the run's CA: Prometheus presents the runtime's, minted into the run folder on every `up`.
    """
    text = json.dumps
    lines = [
        "global:",
        f"  scrape_interval: {text(scrape_interval)}",
        f"  evaluation_interval: {text(evaluation_interval)}",
    ]
    if rule_files:
        lines.append("rule_files:")
        lines.extend(f"  - {text(str(path.resolve()))}" for path in rule_files)
    lines.append("scrape_configs:")
    for job, targets in scrape_targets(config).items():
        lines.append(f"  - job_name: {text(job)}")
        if job == GREETER_JOB and config.tls:
            files = CertFiles(config.tls_dir)
            lines += [
                '    scheme: "https"',
                "    tls_config:",
                f"      ca_file: {text(str(files.ca))}",
                f"      cert_file: {text(str(files.client_cert))}",
                f"      key_file: {text(str(files.client_key))}",
            ]
        lines.append("    static_configs:")
        lines.append(f"      - targets: [{', '.join(text(target) for target in targets)}]")
    return "\n".join(lines) + "\n"
