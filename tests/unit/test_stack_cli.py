"""stack/cli.py, stack/logs.py and stack/status.py without starting anything."""

import io
import threading
from pathlib import Path

import pytest

from stack import daemons
from stack.cli import _config, _parser, main
from stack.config import MODES, StackConfig, from_env
from stack.kafka import Lag
from stack.logs import Follower, follow, log_files, print_logs
from stack.rest import Checkpoint
from stack.status import ProcStatus, StackStatus, format_status
from tests.support.waiting import wait_for


def test_help_shows_the_environment_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["up", "--help"])
    text = capsys.readouterr().out
    for variable in ("GREETER_STACK_CHECKPOINT_INTERVAL_MS", "GREETER_STACK_PORT_KAFKA", "GREETER_SEEN_COUNT_TTL"):
        assert variable in text.replace("\n", "").replace(" ", "") or variable in text


def test_up_flags_make_the_config(tmp_path: Path) -> None:
    defaults = StackConfig()
    args = _parser(defaults).parse_args(
        [
            "--run-dir",
            str(tmp_path),
            "up",
            "--port-kafka",
            "19092",
            "--checkpoint-interval-ms",
            "750",
            "--mode",
            "cluster",
            "--with-generator",
            "--generator-args",
            "--rate 10",
            "--extra",
            "tail=tail -f /dev/null",
        ]
    )
    config = _config(args, defaults)
    assert config.run_dir == tmp_path.resolve()
    assert config.ports.kafka == 19092 and config.checkpoint_interval_ms == 750 and config.mode == "cluster"
    assert [e.name for e in config.extras] == ["generator", "tail"]
    assert config.extras[0].argv[-4:] == ("--bootstrap-servers", "127.0.0.1:19092", "--rate", "10")
    assert config.extras[1].argv == ("tail", "-f", "/dev/null")


def test_a_bad_environment_value_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GREETER_STACK_PORT_GREETER", "http")
    assert main(["status"]) == 2
    assert "GREETER_STACK_PORT_GREETER" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--parallelism", "-1"), ("--start-timeout-s", "soon"), ("--seen-count-ttl", "sixty"), ("--mode", "local")],
)
def test_a_bad_flag_is_refused_as_its_variable_is(flag: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parser(StackConfig()).parse_args(["up", flag, value])
    assert exit_info.value.code == 2
    assert f"{flag}={value!r}" in capsys.readouterr().err


def test_status_and_down_without_a_stack(tmp_path: Path) -> None:
    assert main(["--run-dir", str(tmp_path), "down"]) == 0
    assert main(["--run-dir", str(tmp_path), "status"]) == 1


def test_env_defaults_reach_the_parser(tmp_path: Path) -> None:
    defaults = from_env({"GREETER_STACK_RUN_DIR": str(tmp_path), "GREETER_STACK_GREETER_WORKERS": "5"})
    args = _parser(defaults).parse_args(["up"])
    assert args.run_dir == tmp_path.resolve() and args.greeter_workers == 5


def test_logs_are_prefixed(tmp_path: Path) -> None:
    (tmp_path / "kafka.log").write_text("one\ntwo\n")
    (tmp_path / "greeter.log").write_text("hello\n")
    out = io.StringIO()
    print_logs(log_files(tmp_path), 1, out)
    assert out.getvalue() == "greeter | hello\nkafka   | two\n"
    with pytest.raises(KeyError, match="known: greeter, kafka"):
        log_files(tmp_path, "jobmanager")


def test_follow_prints_only_what_is_appended(tmp_path: Path) -> None:
    log = tmp_path / "greeter.log"
    log.write_text("old\n")
    follower = Follower([log])
    out = io.StringIO()
    with log.open("a") as handle:
        handle.write("new line\npart")
    follower.poll(out)
    assert out.getvalue() == "greeter | new line\n"
    with log.open("a") as handle:
        handle.write("ial\n")
    follower.poll(out)
    assert out.getvalue().endswith("greeter | partial\n")
    log.write_text("")  # truncated by a --fresh start
    log.write_text("again\n")
    follower.poll(out)
    assert out.getvalue().endswith("greeter | again\n")


class _Terminal(io.StringIO):
    """What `logs -f` prints; `polled` is set once it has looked at the files (each look ends with a flush)."""

    def __init__(self) -> None:
        super().__init__()
        self.polled = threading.Event()

    def flush(self) -> None:
        super().flush()
        self.polled.set()


def test_follow_prints_what_is_appended_until_asked_to_stop(tmp_path: Path) -> None:
    log = tmp_path / "greeter.log"
    log.write_text("old\n")
    terminal, stop = _Terminal(), threading.Event()
    following = threading.Thread(target=follow, args=([log], terminal, stop), kwargs={"interval": 0.05}, daemon=True)
    following.start()
    assert terminal.polled.wait(10), "follow never looked at the log"
    with log.open("a") as handle:
        handle.write("new\n")
    wait_for("the appended line on the terminal", lambda: "new" in terminal.getvalue(), 10, every=0.05)
    stop.set()  # what Ctrl-C does
    following.join(10)
    assert not following.is_alive(), "follow went on after the stop"
    assert terminal.getvalue() == "greeter | new\n"


def test_format_status() -> None:
    status = StackStatus(
        run_dir="/run",
        daemons=("kafka", "greeter", "jobmanager", "taskmanager"),
        procs=[ProcStatus("kafka", 10, True, "/run/kafka.log"), ProcStatus("taskmanager", 11, False, "/run/tm.log")],
        job_id="j1",
        job_state="RUNNING",
        failures=2,
        checkpoint=Checkpoint(7, 10_000, "file:/run/checkpoints/j1/chk-7"),
        lag=Lag(5, {0: 2, 1: 3}, True),
        notes=[],
    )
    text = format_status(status, now_ms=12_500)
    assert "taskmanager  pid 11       DOWN" in text
    assert "j1 RUNNING (failures: 2)" in text
    assert "#7, completed 2.5 s ago" in text
    assert "lag          group greeter on names: 5 (p0=2 p1=3)" in text
    assert not status.healthy


@pytest.mark.parametrize("mode", MODES)
def test_healthy_means_the_daemons_of_the_mode_up_and_the_job_running(mode: str) -> None:
    names = daemons.names(StackConfig(mode=mode))
    up = [ProcStatus(name, i, True, "") for i, name in enumerate(names)]
    finished = ProcStatus("generator", 9, False, "")
    status = StackStatus("/run", names, [*up, finished], "j", "RUNNING", 0, None, None, [])
    assert status.healthy
    assert not StackStatus("/run", names, up, "j", "RESTARTING", 0, None, None, []).healthy
    assert not StackStatus("/run", names, up[:-1], "j", "RUNNING", 0, None, None, []).healthy
