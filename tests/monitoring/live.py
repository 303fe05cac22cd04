"""What the live monitoring tests share: a local stack with a real Prometheus scraping it every second (the
configuration `greeter-stack prometheus-config` prints for it), the generator's load, and reading the dashboard's
panels and the alerts from that Prometheus.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from stack.config import REPO_ROOT
from stack.local import LocalStack
from stack.monitoring import scrape_targets
from tests.e2e.kafka_io import produce
from tests.e2e.test_dead_letters import poison_corpus
from tests.support.dashboard import PanelQuery, load_dashboard, queries
from tests.support.processes import popen_logged, stop_process
from tests.support.prometheus import PrometheusClient, Series, running_prometheus
from tests.support.stacks import running_stack
from tests.support.waiting import wait_for

ALERTS = REPO_ROOT / "deploy" / "monitoring" / "alerts.yml"
SCRAPE_INTERVAL = "1s"
# The load of the issue: 200 names/s over 50 names.
RATE, NAMES = 200, 50
# An alert fires within its `for:` and this: a scrape and an evaluation (1 s each), a rate window's second sample,
# and what the fault takes to show (a lost TaskManager is noticed at the 5 s heartbeat timeout).
FIRE_MARGIN_S = 30


@dataclass(frozen=True)
class Monitored:
    """A running stack and the Prometheus that scrapes it."""

    stack: LocalStack
    prometheus: PrometheusClient
    folder: Path


def prometheus_yml(run_dir: Path, rules: tuple[Path, ...]) -> str:
    """What `greeter-stack prometheus-config` prints for the stack of `run_dir`, scraping and evaluating every 1 s."""
    argv = [
        str(REPO_ROOT / ".venv" / "bin" / "greeter-stack"),
        "--run-dir",
        str(run_dir),
        "prometheus-config",
        f"--scrape-interval={SCRAPE_INTERVAL}",
        f"--evaluation-interval={SCRAPE_INTERVAL}",
        *(f"--rules={path}" for path in rules),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"greeter-stack prometheus-config failed: {result.stderr}"
    return result.stdout


@contextmanager
def monitored_stack(folder: Path, label: str, rules: tuple[Path, ...] = (), **settings: object) -> Iterator[Monitored]:
    """A fresh stack of `settings` and a Prometheus scraping each of its processes, every target up; both stopped
    by PID whatever happens."""
    with running_stack(folder / "run", label, **settings) as stack:
        config = prometheus_yml(stack.config.run_dir, rules)
        with running_prometheus(config, folder / "prometheus") as prometheus:
            expected = {url for urls in scrape_targets(stack.config).values() for url in urls}
            wait_for(
                f"Prometheus to scrape every target of the stack ({', '.join(sorted(expected))})",
                lambda: {t["labels"]["instance"] for t in prometheus.targets() if t["health"] == "up"} == expected,
                30,
            )
            yield Monitored(stack, prometheus, folder)


@contextmanager
def load(monitored: Monitored, rate: int = RATE, names: int = NAMES) -> Iterator[None]:
    """greeter-generator into the stack's `names` at `rate`/s over `names` names, stopped by its PID at the end."""
    argv = [
        str(Path(sys.executable).parent / "greeter-generator"),
        f"--bootstrap-servers={monitored.stack.config.bootstrap_servers}",
        f"--rate={rate}",
        f"--names={names}",
        f"--seed={uuid.uuid4().int % 1_000_000}",  # names of their own: tests sharing a stack do not mix
        "--no-progress",
    ]
    generator = popen_logged(argv, monitored.folder / f"generator-{time.monotonic_ns()}.log", os.environ)
    try:
        yield
    finally:
        stop_process(generator, 30)


def send_poison(monitored: Monitored) -> int:
    """One record of each dead-letter reason into `names` (tests/e2e/test_dead_letters.py's corpus); their count."""
    corpus = poison_corpus(uuid.uuid4().hex[:8])
    return produce(monitored.stack.config.bootstrap_servers, "names", [(k, v) for k, (v, _) in corpus.items()])


def send_refused_request(monitored: Monitored) -> None:
    """A body that is no ToFunction to the greeter's /statefun: answered 400, counted as refused."""
    request = urllib.request.Request(f"{monitored.stack.config.greeter_url}/statefun", data=b"not a ToFunction")
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError as error:
        error.close()
        assert error.code == 400, f"the greeter answered {error.code} to a body that is no ToFunction"
    else:
        raise AssertionError("the greeter answered 200 to a body that is no ToFunction")


def evaluate(prometheus: PrometheusClient, query: PanelQuery) -> list[Series]:
    """The panel query's series now."""
    return prometheus.query(query.expr)


def panels_without_data(prometheus: PrometheusClient) -> list[str]:
    """Each dashboard query that returns no series with a value a panel can draw, named by panel and query."""
    empty = []
    for query in queries(load_dashboard()):
        series = evaluate(prometheus, query)
        if not any(s.has_data for s in series):
            empty.append(f"{query} -> {[s.value for s in series] or 'no series'}")
    return empty


def wait_for_every_panel(prometheus: PrometheusClient, deadline_s: float) -> float:
    """Wait until every query of the dashboard returns data; the seconds it took. Fails naming each panel and
    query still empty at the deadline."""
    start = time.monotonic()
    while True:
        empty = panels_without_data(prometheus)
        if not empty:
            return time.monotonic() - start
        if time.monotonic() - start > deadline_s:
            raise AssertionError(f"panels with no data after {deadline_s:.0f} s:\n" + "\n".join(empty))
        time.sleep(1)


def panel_series(prometheus: PrometheusClient, title: str) -> dict[str, list[Series]]:
    """Each query of panel `title` (by refId) and its series now."""
    found = {q.ref: evaluate(prometheus, q) for q in queries(load_dashboard()) if q.panel == title}
    assert found, f"no panel titled {title!r} in the dashboard"
    return found


def alert_durations(prometheus: PrometheusClient) -> dict[str, float]:
    """Each alerting rule Prometheus loaded, by name, and its `for:` in seconds."""
    durations = {rule["name"]: float(rule["duration"]) for rule in prometheus.rules()}
    assert durations, f"Prometheus loaded no alerting rule from {ALERTS}"
    return durations


def _alerts_now(prometheus: PrometheusClient) -> str:
    return ", ".join(sorted(f"{a['labels']['alertname']} ({a['state']})" for a in prometheus.alerts())) or "none"


def seconds_until_each(
    prometheus: PrometheusClient, names: tuple[str, ...], firing: bool, since: float, deadline_s: float
) -> dict[str, float]:
    """Seconds from `since` (time.monotonic()) until each alert of `names` fires (`firing`) or stops firing (not
    `firing`: resolved), polling every 0.5 s; AssertionError naming the alerts still waited for at the deadline."""
    seen: dict[str, float] = {}
    while True:
        now = prometheus.firing()
        for name in names:
            if name not in seen and (name in now) == firing:
                seen[name] = time.monotonic() - since
        if len(seen) == len(names):
            return seen
        if time.monotonic() - since > deadline_s:
            waited = sorted(set(names) - set(seen))
            raise AssertionError(
                f"{', '.join(waited)} {'did not fire' if firing else 'still firing'} {deadline_s:.0f} s on; "
                f"alerts now: {_alerts_now(prometheus)}"
            )
        time.sleep(0.5)


def fire_and_resolve(
    monitored: Monitored,
    names: tuple[str, ...],
    fault: Callable[[], None],
    repair: Callable[[], None],
    resolve_within_s: float,
    resolving: tuple[str, ...] | None = None,
) -> None:
    """Strike `fault`, wait until every alert of `names` fires, `repair`, wait until those of `resolving` (all by
    default) stop firing; the seconds to fire (from the fault) and to resolve (from the end of the repair) printed.
    Each must fire within its `for:` plus FIRE_MARGIN_S and resolve within `resolve_within_s`, or it fails naming
    the alert."""
    prometheus = monitored.prometheus
    durations = alert_durations(prometheus)
    assert set(names) <= set(durations), f"no rule for {sorted(set(names) - set(durations))} in {ALERTS}"
    wait_for(f"{', '.join(names)} not to be firing before the fault", lambda: not prometheus.firing() & set(names), 120)
    struck = time.monotonic()
    fault()
    fired = seconds_until_each(prometheus, names, True, struck, max(durations[n] for n in names) + FIRE_MARGIN_S)
    repair()
    repaired = time.monotonic()
    resolved = seconds_until_each(
        prometheus, names if resolving is None else resolving, False, repaired, resolve_within_s
    )
    for name in names:
        after = f"resolved {resolved[name]:.1f} s after the repair" if name in resolved else "left to resolve itself"
        print(
            f"\n[alert] {name}: fired {fired[name]:.1f} s after the fault (for: {durations[name]:.0f} s, bound "
            f"{durations[name] + FIRE_MARGIN_S:.0f} s), {after}",
            flush=True,
        )
        assert fired[name] <= durations[name] + FIRE_MARGIN_S, f"{name} fired {fired[name]:.0f} s after the fault"


def no_alert_fires(prometheus: PrometheusClient, window_s: float) -> dict[str, float]:
    """Watch the alerts for `window_s` seconds (the one fixed wait of these tests: nothing may happen in it) and fail
    at the first that fires, naming it; the alerts that went pending meanwhile without firing, each with the second
    of the window it was first seen pending."""
    pending: dict[str, float] = {}
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < window_s:
        alerts = prometheus.alerts()
        fired = sorted(a["labels"]["alertname"] for a in alerts if a["state"] == "firing")
        assert not fired, f"{', '.join(fired)} fired {elapsed:.0f} s into the idle window: {alerts}"
        for alert in alerts:
            pending.setdefault(alert["labels"]["alertname"], round(elapsed))
        time.sleep(1)
    return pending


def _values(prometheus: PrometheusClient, title: str, ref: str) -> list[float]:
    return [s.value for s in panel_series(prometheus, title)[ref]]


def wait_for_throughput(monitored: Monitored) -> None:
    """Wait until the dashboard's names in, messages handled and records out are each near the generator's rate."""
    prometheus = monitored.prometheus

    def near_the_rate(ref: str) -> Callable[[], bool]:
        return lambda: sum(_values(prometheus, "Throughput: names in, greetings out", ref)) >= 0.8 * RATE

    for ref, what in (("A", "names in"), ("B", "messages handled"), ("C", "records out")):
        wait_for(f"the dashboard's {what} to reach 80 % of the generator's {RATE}/s", near_the_rate(ref), 60)


def reads_the_load(monitored: Monitored, jvms: int, dead_letters: int) -> None:
    """What an operator reads on the dashboard while the load runs, held to what the test did: names in, handled
    and out near the generator's rate, the job running, every target up, one memory and GC line per Flink JVM, one
    memory line per greeter process, and the dead letters sent."""
    prometheus = monitored.prometheus
    wait_for_throughput(monitored)
    assert _values(prometheus, "Job state", "A") == [1.0], "the job is running"
    targets = sum(len(urls) for urls in scrape_targets(monitored.stack.config).values())
    assert _values(prometheus, "Scrape targets up", "A") == [1.0] * targets, "every target is up"
    for title in ("JVM heap used", "GC time"):
        lines = panel_series(prometheus, title)["A"]
        assert len(lines) == jvms, f"{title}: one line per Flink JVM, got {[s.labels for s in lines]}"
    roles = sorted(s.labels["role"] for s in panel_series(prometheus, "Greeter memory")["A"])
    assert roles == ["master"] + ["worker"] * monitored.stack.config.greeter_workers, (
        f"the greeter's processes: {roles}"
    )
    wait_for(
        f"the dashboard to count the {dead_letters} dead letters sent",
        lambda: sum(_values(prometheus, "Dead letters since the greeter started", "A")) >= dead_letters,
        30,
    )


def every_panel_shows_the_load(monitored: Monitored, jvms: int) -> None:
    """Under load, with dead letters and a refused request among it: every panel's every query has data within
    2 minutes, and the figures read back are the load's (`jvms` Flink JVMs: 1 in single mode, 2 in cluster mode)."""
    with load(monitored):
        poison = send_poison(monitored)
        send_refused_request(monitored)
        took = wait_for_every_panel(monitored.prometheus, 120)
        mode = monitored.stack.config.mode
        print(f"\n[monitoring] {mode} mode: every panel had data {took:.0f} s after the load started", flush=True)
        reads_the_load(monitored, jvms=jvms, dead_letters=poison)
