"""greeter-stack / python -m stack: the local stack without Docker (fetch | up | down | savepoint | rescale |
rotate-kafka-credentials | upgrade-greeter | status | logs | watch | prometheus-config).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import threading
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from clitools.signals import ForcedExit, StopFlag, stop_on_signals

from . import operations
from .config import RUN_DIR, UP_SETTINGS, ConfigError, EnvSetting, Extra, Ports, StackConfig, from_env, port_env_var
from .fetch import PrerequisiteError, fetch
from .kafka_auth import KafkaAuthFiles, client_flags
from .live import watch_status
from .local import LocalStack
from .logs import LostCommitScanner, follow, log_files, print_logs
from .monitoring import prometheus_config
from .readiness import Interrupted, StartError
from .status import format_status, read_status
from .supervise import watch


def _flag_type(setting: EnvSetting, flag: str) -> Callable[[str], Any]:
    """The setting's own parser, its error in argparse's words: a flag is checked as its variable is."""

    def parse(text: str) -> Any:
        try:
            return setting.read(text, flag)
        except ConfigError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0:  # also NaN
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of seconds above 0")
    return value


def _parser(defaults: StackConfig) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greeter-stack", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=defaults.run_dir,
        help=f"{RUN_DIR.help} (env {RUN_DIR.variable})",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="resolve the jars with Maven (up does it too)")
    up = sub.add_parser(
        "up",
        help="start everything and wait until the job runs",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    up.add_argument("--fresh", action="store_true", help="wipe Kafka data and checkpoints first")
    up.add_argument(
        "--from-savepoint",
        type=Path,
        metavar="PATH",
        help="resume the job from this savepoint (or retained checkpoint) instead of the newest retained checkpoint",
    )
    up.add_argument(
        "--foreground", action="store_true", help="stay attached: stop everything on Ctrl-C or when a process dies"
    )
    for setting in UP_SETTINGS:
        default = getattr(defaults, setting.field)
        flag, help_text = "--" + setting.field.replace("_", "-"), f"{setting.help} (env {setting.variable})"
        if isinstance(default, bool):  # --tls / --no-tls: a flag overrides the environment either way
            up.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        else:
            up.add_argument(flag, default=default, type=_flag_type(setting, flag), help=help_text)
    for port in fields(Ports):
        up.add_argument(
            f"--port-{port.name.replace('_', '-')}",
            type=int,
            default=getattr(defaults.ports, port.name),
            help=f"env {port_env_var(port.name)}",
        )
    for tool, example in (("generator", "--count 10"), ("consumer", "tail --timeout 30")):
        up.add_argument(f"--with-{tool}", action="store_true", help=f"also run greeter-{tool}")
        up.add_argument(
            f"--{tool}-args",
            default="",
            help=f"extra arguments for greeter-{tool}, with = when they start with a dash: --{tool}-args='{example}'",
        )
    up.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="another command to run after the job (log run/NAME.log)",
    )
    sub.add_parser("down", help="stop every recorded process (SIGTERM, then SIGKILL)")
    sub.add_parser(
        "savepoint", help="take a savepoint of the running job into RUN_DIR/savepoints and print its location"
    )
    rescale = sub.add_parser(
        "rescale",
        help="cancel the job with a savepoint, start or stop TaskManagers for PARALLELISM, resume from the savepoint",
    )
    rescale.add_argument("parallelism", type=int, metavar="PARALLELISM", help="the job's new parallelism")
    sub.add_parser(
        "rotate-kafka-credentials",
        help="--kafka-security sasl-ssl: new passwords for the runtime's, generator's, consumer's and monitor's Kafka "
        "logins in RUN_DIR/kafka-clients; open connections keep working, new ones need the new files",
    )
    sub.add_parser(
        "upgrade-greeter",
        help="replace the greeter's gunicorn in place (new code and gunicorn settings; same environment), "
        "refusing no request",
    )
    watch_parser = sub.add_parser(
        "watch", help="wait until Ctrl-C, or until a process dies (naming it); then stop everything"
    )
    watch_parser.add_argument(
        "--while-pid", type=int, metavar="PID", help="also stop everything once this process (a consumer) has exited"
    )
    status = sub.add_parser("status", help="processes, job, last checkpoint, ingress lag")
    status.add_argument(
        "--watch",
        action="store_true",
        help="a live view until Ctrl-C, refreshed every --interval: processes and their memory, job, restarts, "
        "names/s in, greetings/s out, lag, checkpoint age, the greeter's p50/p99; one line per refresh when stdout "
        "is not a terminal",
    )
    status.add_argument(
        "--interval",
        type=_seconds,
        metavar="S",
        help="with --watch: seconds between refreshes (default: 1)",
    )
    logs = sub.add_parser("logs", help="print (or -f follow) the log files, prefixed by process")
    logs.add_argument(
        "name", nargs="?", help="one process (kafka, greeter, runtime or jobmanager and taskmanager, ...)"
    )
    logs.add_argument(
        "-n", "--lines", type=int, default=40, help="print the last LINES lines of each log (default: %(default)s)"
    )
    logs.add_argument(
        "-f", "--follow", action="store_true", help="then keep printing what is appended, like tail -f, until Ctrl-C"
    )
    prometheus = sub.add_parser(
        "prometheus-config",
        help="print a prometheus.yml that scrapes this stack's greeter and Flink JVMs on their ports",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    prometheus.add_argument("--scrape-interval", default="5s", help="how often Prometheus scrapes each target")
    prometheus.add_argument("--evaluation-interval", default="5s", help="how often Prometheus evaluates the rules")
    prometheus.add_argument(
        "--rules",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a rule file for Prometheus to load (repeatable), e.g. deploy/monitoring/alerts.yml",
    )
    return parser


def _config(args: argparse.Namespace, defaults: StackConfig) -> StackConfig:
    values = {setting.field: getattr(args, setting.field) for setting in UP_SETTINGS}
    ports = Ports(**{p.name: getattr(args, "port_" + p.name) for p in fields(Ports)})
    extras = []
    # Where the extras' Kafka is: the settings of this `up` (each CLI logs in as its own principal when secured).
    kafka = replace(defaults, run_dir=args.run_dir.resolve(), ports=ports, kafka_security=args.kafka_security)
    for tool in ("generator", "consumer"):
        if getattr(args, f"with_{tool}"):
            command = [str(defaults.venv_bin / f"greeter-{tool}"), *client_flags(kafka, tool)]
            extras.append(Extra(tool, (*command, *shlex.split(getattr(args, f"{tool}_args")))))
    for spec in args.extra:
        name, sep, command = spec.partition("=")
        if not sep or not name or not command:
            raise ConfigError(f"--extra {spec!r}: expected NAME=COMMAND")
        extras.append(Extra(name, tuple(shlex.split(command))))
    return replace(defaults, run_dir=args.run_dir.resolve(), ports=ports, extras=tuple(extras), **values)


def main(argv: list[str] | None = None) -> int:
    """greeter-stack: run one subcommand. Exit 2 on a bad setting, 1 when it fails (or `status` finds the stack
    unhealthy), 128 + signal when a stop signal ended it.
    """
    try:
        defaults = from_env()
    except ConfigError as error:
        print(f"greeter-stack: {error}", file=sys.stderr)
        return 2
    parser = _parser(defaults)
    args = parser.parse_args(argv)
    watching = args.command == "status" and args.watch
    if args.command == "status" and args.interval is not None and not watching:
        parser.error("status: --interval needs --watch")
    try:
        # The first Ctrl-C/SIGTERM asks for a clean stop (waits end, `down` runs); a second one forces.
        with stop_on_signals(StopFlag()) as stop:
            try:
                code = _run(args, defaults, stop.event)
            except Interrupted:
                code = 1
            # Ctrl-C is how `status --watch` ends, not an interruption of it.
            return stop.exit_code if stop.exit_code is not None and not watching else code
    except ForcedExit as forced:
        return forced.exit_code
    except (ConfigError, PrerequisiteError, StartError, RuntimeError, KeyError, OSError) as error:
        message = error.args[0] if isinstance(error, KeyError) else error  # KeyError's str() adds quotes
        print(f"greeter-stack: {message}", file=sys.stderr)
        return 2 if isinstance(error, ConfigError) else 1


def _alive(pid: int) -> Callable[[], bool]:
    def alive() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    return alive


def _run(args: argparse.Namespace, defaults: StackConfig, stop: threading.Event) -> int:
    run_dir: Path = args.run_dir.resolve()
    if args.command == "fetch":
        print("fetched" if fetch(replace(defaults, run_dir=run_dir)) else "up to date", file=sys.stderr)
        return 0
    if args.command == "up":
        stack = LocalStack(_config(args, defaults), stop=stop)
        stack.up(fresh=args.fresh, restore_from=args.from_savepoint)
        return watch(stack) if args.foreground else 0
    if args.command == "logs":
        files = log_files(run_dir, args.name)
        print_logs(files, args.lines, sys.stdout)
        if args.follow:
            follow(files, sys.stdout, stop)
        return 0
    if args.command == "status" and args.watch:  # also before an `up`, and on after a `down`
        lost = LostCommitScanner()  # kept across refreshes: each reads only what the task logs gained
        return watch_status(lambda: read_status(run_dir, lost), run_dir, stop, sys.stdout, args.interval or 1.0)
    if not (run_dir / "stack.json").exists():
        if args.command == "down":
            print(f"no stack recorded in {run_dir}: nothing to stop", file=sys.stderr)
            return 0
        print(f"no stack recorded in {run_dir}: start one with `greeter-stack up`", file=sys.stderr)
        return 1
    stack = LocalStack.attach(run_dir, stop=stop)
    if args.command == "watch":
        if not stack.running():
            print(f"nothing to watch: no process of the stack in {run_dir} is running", file=sys.stderr)
            return 1
        return watch(stack, keep_going=_alive(args.while_pid) if args.while_pid else lambda: True)
    if args.command == "down":
        stack.down()
        return 0
    if args.command == "savepoint":
        print(operations.savepoint(stack))
        return 0
    if args.command == "rescale":
        print(operations.rescale(stack, args.parallelism))
        return 0
    if args.command == "rotate-kafka-credentials":
        rotated = operations.rotate_kafka_credentials(stack)
        print(
            f"new Kafka passwords for {', '.join(rotated)} in {KafkaAuthFiles(run_dir).clients_dir}. The runtime takes "
            "its new login when its JVMs start again: `greeter-stack down`, then `greeter-stack up` (the job resumes "
            "from its last checkpoint, no greeting lost); restart a generator or consumer to read its new file",
            file=sys.stderr,
        )
        return 0
    if args.command == "upgrade-greeter":
        print(operations.upgrade_greeter(stack).pid)
        return 0
    if args.command == "prometheus-config":
        print(prometheus_config(stack.config, args.scrape_interval, args.evaluation_interval, args.rules), end="")
        return 0
    status = stack.status()
    print(format_status(status))
    return 0 if status.healthy else 1
