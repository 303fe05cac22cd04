"""`greeter-stack status --watch` without a stack: the counters read from the reporter's and the greeter's text,
the rates and quantiles between two snapshots, and what the view shows (a stopped daemon, no traffic: "-")."""

import io
import math
import signal
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from rich.console import Console

from stack.cli import main
from stack.kafka import Lag
from stack.live import Between, between, plain_line, render, watch_status
from stack.logs import LostCommit, LostCommitScanner
from stack.metrics import Buckets, Counts, counts, latency_buckets, quantile, rate
from stack.rest import Checkpoint
from stack.status import ProcStatus, StackStatus

RECORDS_OUT = "flink_taskmanager_job_task_operator_numRecordsOut"
FUNCTION = "flink_taskmanager_job_task_operator_functions_example_greeter_"


def sample(metric: str, operator: str, value: float) -> str:
    """One line as Flink's reporter serves it (labels cut to those that tell series apart; its trailing comma kept)."""
    return f'{metric}{{task_attempt_id="a_0",operator_name="{operator}",tm_id="tm1",subtask_index="0",}} {value}\n'


REPORTER_TEXT = "".join(
    [
        "# TYPE flink_taskmanager_job_task_operator_numRecordsOut gauge\n",
        sample(RECORDS_OUT, "Source:_example_names_ingress", 400.0),
        sample(RECORDS_OUT, "router__names_", 400.0),
        sample(RECORDS_OUT, "functions", 400.0),
        f"# TYPE {FUNCTION}outEgress gauge\n",
        sample(FUNCTION + "outEgress", "functions", 390.0),
        sample(FUNCTION + "outEgressRate", "functions", 6.5),
        sample(FUNCTION + "in", "functions", 593.0),
    ]
)
LATENCY_BOUNDS = (0.001, 0.01, 0.1)


def greeter_text(*observations: float) -> str:
    """The greeter's /metrics text with its latency histogram after `observations` (seconds)."""
    registry = CollectorRegistry()
    histogram = Histogram("greeter_request_seconds", "latency", buckets=LATENCY_BOUNDS, registry=registry)
    for seconds in observations:
        histogram.observe(seconds)
    return generate_latest(registry).decode()


def buckets(first: float, second: float, third: float, above: float) -> Buckets:
    """A reading with this many observations in each bucket (not cumulative), the last above the highest bound."""
    cumulative, total = [], 0.0
    for bound, count in zip((*LATENCY_BOUNDS, math.inf), (first, second, third, above), strict=True):
        total += count
        cumulative.append((bound, total))
    return Buckets(tuple(cumulative))


class TestCounters:
    def test_the_ingress_source_and_the_functions_egress_are_read_nothing_else(self) -> None:
        read = counts([REPORTER_TEXT], at=5.0)
        assert read.at == 5.0
        # StateFun's own `in` (593: every remote call's answer counted too) and the router's records are not names in.
        assert list(read.ingested.values()) == [400.0]
        assert list(read.egressed.values()) == [390.0]

    def test_each_task_manager_keeps_its_own_series(self) -> None:
        other = REPORTER_TEXT.replace('tm_id="tm1"', 'tm_id="tm2"').replace(" 400.0", " 100.0")
        assert sorted(counts([REPORTER_TEXT, other]).ingested.values()) == [100.0, 400.0]

    def test_no_reporter_text_has_no_series(self) -> None:
        read = counts(["# nothing of the job yet\n"])
        assert not read.ingested and not read.egressed

    def test_the_greeters_histogram_is_read_cumulative_with_its_top_bucket(self) -> None:
        read = latency_buckets(greeter_text(0.0005, 0.005, 0.005, 5.0))
        assert read == Buckets(((0.001, 1.0), (0.01, 3.0), (0.1, 3.0), (math.inf, 4.0)))
        assert read.ceiling == 0.1

    def test_a_greeter_without_the_histogram_has_none(self) -> None:
        assert latency_buckets("# HELP other_total x\n# TYPE other_total counter\nother_total 1.0\n") is None


class TestRates:
    def test_per_second_summed_over_the_series(self) -> None:
        before = {(("s", "0"),): 100.0, (("s", "1"),): 50.0}
        after = {(("s", "0"),): 300.0, (("s", "1"),): 150.0}
        assert rate(before, after, 2.0) == 150.0

    def test_nothing_moved_is_zero_per_second(self) -> None:
        assert rate({(("s", "0"),): 7.0}, {(("s", "0"),): 7.0}, 1.0) == 0.0

    def test_a_counter_that_went_down_restarted_and_counts_from_zero(self) -> None:
        assert rate({(("s", "0"),): 1000.0}, {(("s", "0"),): 30.0}, 1.0) == 30.0

    def test_a_new_series_counts_from_the_next_reading(self) -> None:
        # A restarted task's new attempt: its count began at some unknown time, not within this interval.
        before = {(("attempt", "0"),): 500.0}
        after = {(("attempt", "0"),): 600.0, (("attempt", "1"),): 9000.0}
        assert rate(before, after, 1.0) == 100.0

    def test_no_series_in_both_readings_is_unknown_not_zero(self) -> None:
        assert rate({(("attempt", "0"),): 500.0}, {(("attempt", "1"),): 20.0}, 1.0) is None
        assert rate({}, {}, 1.0) is None


class TestQuantiles:
    def test_only_the_observations_between_the_readings_count(self) -> None:
        # 100 requests under 1 ms before; 100 between 1 and 10 ms since: the quantiles are the latter's.
        before = buckets(100, 0, 0, 0)
        after = buckets(100, 100, 0, 0)
        assert quantile(0.5, before, after) == pytest.approx(0.001 + 0.009 * 0.5)
        assert quantile(0.99, before, after) == pytest.approx(0.001 + 0.009 * 0.99)

    def test_interpolated_in_the_bucket_as_prometheus_does(self) -> None:
        between_readings = buckets(50, 40, 10, 0)
        empty = buckets(0, 0, 0, 0)
        assert quantile(0.5, empty, between_readings) == pytest.approx(0.001)  # the 50th of 100: the first's top
        assert quantile(0.25, empty, between_readings) == pytest.approx(0.0005)
        assert quantile(0.99, empty, between_readings) == pytest.approx(0.01 + 0.09 * 0.9)

    def test_no_request_in_between_is_unknown(self) -> None:
        assert quantile(0.5, buckets(5, 5, 0, 0), buckets(5, 5, 0, 0)) is None
        assert quantile(0.99, buckets(0, 0, 0, 0), buckets(0, 0, 0, 0)) is None

    def test_above_the_highest_bound_is_infinite_not_the_bound(self) -> None:
        assert quantile(0.99, buckets(0, 0, 0, 0), buckets(90, 0, 0, 10)) == math.inf

    def test_a_histogram_that_went_down_restarted_and_counts_from_zero(self) -> None:
        # The greeter restarted between the readings: all it holds now was observed since.
        assert quantile(0.5, buckets(500, 500, 0, 0), buckets(0, 0, 10, 0)) == pytest.approx(0.055)


def status(**changes: object) -> StackStatus:
    """A running single-mode stack, as collect_status would see it."""
    base = StackStatus(
        run_dir="/run",
        daemons=("kafka", "greeter", "runtime"),
        procs=[
            ProcStatus("kafka", 10, True, "/run/kafka.log", 300 * 2**20),
            ProcStatus("greeter", 11, True, "/run/greeter.log", 120 * 2**20),
            ProcStatus("runtime", 12, True, "/run/runtime.log", 400 * 2**20),
        ],
        job_id="j1",
        job_state="RUNNING",
        failures=2,
        checkpoint=Checkpoint(7, 10_000, "file:/run/checkpoints/j1/chk-7"),
        lag=Lag(1234, {0: 1234}, True),
        notes=[],
    )
    return replace(base, **changes)


def counted(at: float, ingested: float, egressed: float) -> Counts:
    return Counts(at, {(("s", "0"),): ingested}, {(("s", "0"),): egressed})


def shown(view: object) -> str:
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(view)
    return console.export_text()


class TestView:
    before = status(counts=counted(10.0, 1000, 900), latency=buckets(100, 0, 0, 0))
    after = status(counts=counted(12.0, 1400, 1200), latency=buckets(100, 100, 0, 0))

    def test_two_snapshots_tell_the_rates_and_quantiles(self) -> None:
        seen = between(self.before, self.after)
        assert seen.ingested_per_s == 200.0 and seen.egressed_per_s == 150.0
        assert seen.p50_s == pytest.approx(0.0055)

    def test_the_view_shows_every_figure(self) -> None:
        text = shown(render(self.after, between(self.before, self.after), Path("/run"), 1.0, now=12.5))
        lines = [" ".join(line.split()) for line in text.splitlines()]
        for expected in (
            "kafka running 10 300 MB",
            "greeter running 11 120 MB",
            "job RUNNING",
            "restarts 2",
            "names in 200.0/s",
            "greetings out 150.0/s",
            "ingress lag 1,234",
            "checkpoint 2.5 s ago (#7)",
            "greeter p50 5.50 ms",
            "greeter p99 9.91 ms",
        ):
            assert expected in lines, f"{expected!r} not in:\n{text}"
        assert "every 1 s" in text and "(Ctrl-C quits)" in text

    def test_the_first_snapshot_and_no_traffic_show_a_dash_never_a_number(self) -> None:
        first = " ".join(shown(render(self.after, between(None, self.after), Path("/run"), 1.0, 12.5)).split())
        assert "names in - greetings out -" in first and "greeter p50 - greeter p99 -" in first
        idle = replace(self.after, latency=self.before.latency, counts=counted(12.0, 1000, 900))
        quiet = " ".join(shown(render(idle, between(self.before, idle), Path("/run"), 1.0, 12.5)).split())
        # No request answered: no latency; nothing moved: 0 per second, which is a measurement.
        assert "names in 0.0/s greetings out 0.0/s" in quiet and "greeter p50 - greeter p99 -" in quiet

    def test_a_stopped_daemon_is_marked_and_its_values_are_dashes(self) -> None:
        procs = [*self.after.procs[:1], ProcStatus("greeter", 11, False, "/run/greeter.log"), *self.after.procs[2:]]
        down = replace(self.after, procs=procs, latency=None, notes=["the greeter's metrics: refused"])
        text = shown(render(down, between(self.before, down), Path("/run"), 1.0, 12.5))
        lines = [" ".join(line.split()) for line in text.splitlines()]
        assert "greeter stopped - -" in lines
        assert "greeter p99 -" in lines and "names in 200.0/s" in lines
        assert "note: the greeter's metrics: refused" in lines

    def test_a_daemon_never_started_is_stopped_and_a_finished_extra_exited(self) -> None:
        half = replace(self.after, procs=[*self.after.procs[:2], ProcStatus("generator", 20, False, "")])
        lines = [" ".join(line.split()) for line in shown(render(half, Between(), Path("/r"), 1, 0)).splitlines()]
        assert "runtime stopped - -" in lines and "generator exited - -" in lines

    def test_a_quantile_above_the_top_bucket_says_so(self) -> None:
        slow = replace(self.after, latency=buckets(100, 0, 0, 100))
        assert "greeter p99 > 100 ms" in " ".join(
            shown(render(slow, between(self.before, slow), Path("/r"), 1, 0)).split()
        )

    def test_a_lost_transaction_is_shown_in_red_above_the_notes(self) -> None:
        lost = LostCommit("2026-12-07 18:29:26,710", "t-0", 20, 1)
        struck = replace(self.after, lost_commits=(lost,), notes=["a note"])
        text = " ".join(shown(render(struck, between(self.before, struck), Path("/run"), 1.0, 12.5)).split())
        assert "LOST: 2026-12-07 18:29:26,710: the egress could not commit" in text
        assert text.index("LOST:") < text.index("note: a note") and "greetings are lost" in text
        line = plain_line(struck, between(self.before, struck), Path("/run"), now=12.5)
        assert "| LOST: 2026-12-07 18:29:26,710: " in line and "producer 20, epoch 1" in line

    def test_one_plain_line_holds_the_same(self) -> None:
        line = plain_line(self.after, between(self.before, self.after), Path("/run"), now=12.5)
        assert "\n" not in line
        for part in ("job RUNNING", "names in 200.0/s", "greeter p50 5.50 ms", "greeter running pid 11 rss 120 MB"):
            assert f"| {part}" in line, line
        assert "no stack recorded in /run" in plain_line(None, Between(), Path("/run"), 0)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def snapshots(statuses: list[StackStatus | None], stop: threading.Event) -> Callable[[], StackStatus | None]:
    """A `take` that hands out `statuses`, then asks the loop to stop (what Ctrl-C does)."""
    remaining = list(statuses)

    def take() -> StackStatus | None:
        if len(remaining) == 1:
            stop.set()
        return remaining.pop(0)

    return take


class TestLoop:
    def test_a_pipe_gets_one_line_per_snapshot_rates_from_the_second_on(self) -> None:
        stop, out = threading.Event(), io.StringIO()
        take = snapshots([TestView.before, None, TestView.before, TestView.after], stop)
        assert watch_status(take, Path("/run"), stop, out, interval=0.01) == 0
        lines = out.getvalue().splitlines()
        assert len(lines) == 4
        assert "names in -" in lines[0] and "no stack recorded in /run" in lines[1] and "names in -" in lines[2]
        assert "names in 200.0/s" in lines[3]

    def test_a_terminal_gets_the_view_redrawn(self) -> None:
        stop, out = threading.Event(), Terminal()
        take = snapshots([TestView.before, TestView.after], stop)
        assert watch_status(take, Path("/run"), stop, out, interval=0.01) == 0
        assert "greeter-stack status --watch" in out.getvalue() and "200.0/s" in out.getvalue()
        assert "\x1b[" in out.getvalue(), "drawn in place with the terminal's control sequences"


class TestCommandLine:
    def test_ctrl_c_ends_the_watch_with_0_and_says_nothing_else(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        taken: list[tuple[Path, LostCommitScanner | None]] = []

        def read_status(run_dir: Path, lost: LostCommitScanner | None = None) -> None:
            taken.append((run_dir, lost))
            if len(taken) == 2:
                signal.raise_signal(signal.SIGINT)

        monkeypatch.setattr("stack.cli.read_status", read_status)
        assert main(["--run-dir", str(tmp_path), "status", "--watch", "--interval", "0.01"]) == 0
        out, err = capsys.readouterr()
        # One scanner for the whole watch: each refresh reads only what the task logs gained.
        (first_dir, first_lost), (second_dir, second_lost) = taken
        assert first_dir == second_dir == tmp_path.resolve() and err == ""
        assert isinstance(first_lost, LostCommitScanner) and second_lost is first_lost
        # No stack recorded in the folder: the watch runs on and says so (an `up` later would show up).
        assert [line.split(" ", 2)[2] for line in out.splitlines()] == [
            f"no stack recorded in {tmp_path.resolve()}: start one with `greeter-stack up`"
        ] * 2

    @pytest.mark.parametrize("interval", ["0", "-1", "soon", "nan"])
    def test_a_bad_interval_is_refused(self, interval: str, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exited:
            main(["status", "--watch", "--interval", interval])
        assert exited.value.code == 2 and "expected a number of seconds above 0" in capsys.readouterr().err

    def test_an_interval_without_watch_is_refused(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exited:
            main(["status", "--interval", "2"])
        assert exited.value.code == 2 and "--interval needs --watch" in capsys.readouterr().err
