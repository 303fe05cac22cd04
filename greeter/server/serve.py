"""greeter-serve: the greeter under gunicorn, configured from one Settings built at start.

`main` reads the settings (GREETER_* variables, then --bind and --workers), builds the app with them (its
self-test and the released-state check run here, before gunicorn binds), and runs gunicorn's master in this
process through `GreeterServer`: gunicorn's options come from the same Settings (`gunicorn_options`), and the
worker (greeter/server/worker.py) takes the settings and the /statefun endpoint from the server it is given. Nothing
is read twice and nothing travels through a global.

An in-place upgrade (USR2) makes gunicorn run this process's command line again: the new master reads the
environment afresh, which is the old master's. (No `python -m greeter.server.serve`: the worker checks the server it
is given against greeter.server.serve's GreeterServer, which a module run as __main__ would define a second time.)
"""

import argparse
import os
import ssl
import sys
import tempfile
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from prometheus_client import multiprocess

from greeter.config.settings import Settings, SettingsError, load_settings, with_overrides
from greeter.function.greeter import Greeter
from greeter.function.state_schema import StateSchemaError
from greeter.web.app import GreeterService, build_service
from greeter.web.metrics import MULTIPROC_DIR_VARIABLE, flush_all
from greeter.web.self_test import SelfTestFailed


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    """gunicorn's settings for the greeter, each from `settings`; the hooks that keep the metrics true."""
    options: dict[str, Any] = {
        "bind": [settings.bind],
        "workers": settings.worker_count,
        "worker_class": settings.worker_class,
        "keepalive": settings.keepalive_seconds,
        "timeout": settings.timeout_seconds,
        "graceful_timeout": settings.graceful_timeout_seconds,
        # Access logs would cost more than the function on the hot path; /metrics counts requests instead.
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        # The app is built once in the master: a broken install fails before any worker forks.
        "preload_app": True,
        "proc_name": "greeter",
        # gunicorn 27's control socket sits at one path per user: two greeters on a host would fight over it.
        "control_socket_disable": True,
        "child_exit": _child_exit,
        "worker_exit": _worker_exit,
    }
    # Mutual TLS: the runtime can authenticate to a remote function only with a client certificate.
    if settings.tls is not None:
        options |= {
            "certfile": str(settings.tls.cert),
            "keyfile": str(settings.tls.key),
            "ca_certs": str(settings.tls.ca),
            # CERT_REQUIRED, not True: gunicorn turns True into 1 = CERT_OPTIONAL, which serves clients that
            # show no certificate.
            "cert_reqs": ssl.CERT_REQUIRED,
        }
    return options


def _child_exit(server: object, worker: Any) -> None:
    """gunicorn's child_exit hook, in the master: drop the dead worker's live gauges from the shared metrics files."""
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def _worker_exit(server: object, worker: object) -> None:
    """gunicorn's worker_exit hook, in the exiting worker: write what it counted since the last periodic flush."""
    flush_all()


class GreeterServer(BaseApplication):  # type: ignore[misc]  # gunicorn has no type hints
    """gunicorn's master serving `service`, configured by `settings`; its workers read both from it."""

    def __init__(self, settings: Settings, service: GreeterService, pid_file: str | None = None) -> None:
        self.settings = settings
        self.service = service
        self._pid_file = pid_file
        super().__init__()

    def load_config(self) -> None:
        """Set gunicorn's configuration from the settings (gunicorn calls this once, from __init__)."""
        for name, value in gunicorn_options(self.settings).items():
            self.cfg.set(name, value)
        if self._pid_file:
            self.cfg.set("pidfile", self._pid_file)

    def load(self) -> Flask:
        """The WSGI app, for gunicorn: the Flask app of the service built before the master started."""
        return self.service.flask_app


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
    parser.add_argument(
        "--check", action="store_true", help="build the app (settings, self-test, state check), then exit 0"
    )
    return parser


def _metrics_dir() -> str:
    """The multi-process metrics directory: the variable's, or a new one under the temporary directory.
    Emptied at a start, since a previous run's values would be summed into this one's; not at an in-place
    upgrade (gunicorn hands the new master its sockets in GUNICORN_FD), whose old workers still count there.
    """
    directory = Path(
        os.environ.get(MULTIPROC_DIR_VARIABLE) or Path(tempfile.gettempdir()) / f"greeter-metrics-{os.getpid()}"
    )
    directory.mkdir(parents=True, exist_ok=True)
    if "GUNICORN_FD" not in os.environ:
        for stale in directory.glob("*.db"):
            stale.unlink()
    return str(directory)


def main(argv: list[str] | None = None, greeter_type: type[Greeter] = Greeter) -> int:
    """greeter-serve: build the settings and the app, then run gunicorn's master until it stops.
    `greeter_type` serves another version of the function (the state-evolution tests). Returns 2 on a bad
    setting or flag, 1 when the app cannot be built (its reason on stderr), 0 after --check or a clean stop.
    """
    args = _parser().parse_args(argv)
    try:
        settings = with_overrides(load_settings(), bind=args.bind, workers=args.workers)
    except SettingsError as error:
        print(f"greeter-serve: {error}", file=sys.stderr)
        return 2
    # prometheus_client reads this variable itself, in every process; set before any metric is created.
    os.environ[MULTIPROC_DIR_VARIABLE] = _metrics_dir()
    try:
        service = build_service(settings, greeter_type)
    except (StateSchemaError, SelfTestFailed) as error:
        print(f"greeter-serve: {error}", file=sys.stderr)
        return 1
    server = GreeterServer(settings, service, args.pid)  # gunicorn checks each option as it is set
    if not args.check:
        server.run()
    return 0
