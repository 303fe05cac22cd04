"""greeter-serve: serve greeter.app:app under gunicorn with the project's configuration."""

import argparse
import os
import sys
import tempfile
from pathlib import Path

from .settings import Settings, SettingsError, load_settings, with_overrides

CONFIG_FILE = Path(__file__).with_name("gunicorn_conf.py")


def _parser() -> argparse.ArgumentParser:
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="greeter-serve",
        description="Serve the greeter function (POST /statefun) under gunicorn. Every other setting is a "
        "GREETER_* variable (README: Configuration).",
    )
    parser.add_argument("--bind", help=f"HOST:PORT to listen on (env GREETER_BIND, default {defaults.bind})")
    parser.add_argument(
        "--workers", type=int, help="gunicorn worker processes (env GREETER_WORKERS, default: one per CPU)"
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
    """greeter-serve: check the settings, then exec gunicorn, which keeps this PID as its master.
    Returns 2 on a bad setting or flag; otherwise it does not return.
    """
    args = _parser().parse_args(argv)
    try:
        # Fail here, naming the variable or flag, rather than in gunicorn's config loader.
        settings = with_overrides(load_settings(), bind=args.bind, workers=args.workers)
    except SettingsError as error:
        print(f"greeter-serve: {error}", file=sys.stderr)
        return 2
    # gunicorn's console script, not `-m gunicorn`: on USR2 (an upgrade in place) gunicorn runs sys.argv[0] again
    # with this interpreter, and gunicorn/__main__.py run as a script shadows the standard library's `http`.
    command = [sys.executable, str(Path(sys.executable).with_name("gunicorn")), "--config", str(CONFIG_FILE)]
    # Command-line values win over the config file's, which reads the same variables without the flags.
    command += ["--bind", settings.bind, "--workers", str(settings.worker_count)]
    if args.pid:
        command += ["--pid", args.pid]
    # prometheus_client reads this variable itself, in every worker; it is not a greeter setting.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir()
    # exec keeps this PID: whoever started greeter-serve can signal gunicorn's master directly.
    os.execv(sys.executable, [*command, "greeter.app:app"])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
