"""greeter-serve: serve greeter.app:app under gunicorn with the project's configuration."""

import argparse
import os
import sys
import tempfile
from pathlib import Path

from .settings import SettingsError, load_settings

CONFIG_FILE = Path(__file__).with_name("gunicorn_conf.py")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greeter-serve",
        description="Serve the greeter function (POST /statefun) under gunicorn.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--bind", default=os.environ.get("GREETER_BIND", "127.0.0.1:8000"), help="env GREETER_BIND")
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("GREETER_WORKERS", str(os.cpu_count() or 1))),
        help="env GREETER_WORKERS",
    )
    parser.add_argument("--pid", help="write the gunicorn master's PID to this file")
    return parser


def _metrics_dir() -> str:
    # Multi-process metrics need a directory shared by the workers and emptied at every start.
    directory = Path(
        os.environ.get("PROMETHEUS_MULTIPROC_DIR") or Path(tempfile.gettempdir()) / f"greeter-metrics-{os.getpid()}"
    )
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):  # values of a previous run would be summed into this one's
        stale.unlink()
    return str(directory)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        load_settings()  # fail here, naming the variable, rather than in every worker
    except SettingsError as error:
        print(f"greeter-serve: {error}", file=sys.stderr)
        return 2
    os.environ["GREETER_BIND"] = args.bind
    os.environ["GREETER_WORKERS"] = str(args.workers)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir()
    command = [sys.executable, "-m", "gunicorn", "--config", str(CONFIG_FILE)]
    if args.pid:
        command += ["--pid", args.pid]
    # exec keeps this PID: whoever started greeter-serve can signal gunicorn's master directly.
    os.execv(sys.executable, [*command, "greeter.app:app"])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
