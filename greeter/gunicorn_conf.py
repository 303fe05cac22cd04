"""The one gunicorn configuration, used by greeter-serve, the local stack, the Dockerfile, compose and k8s.

A thin mapping of greeter.settings.Settings: every value comes from a GREETER_* variable parsed there, and a
bad one stops gunicorn with a message naming it. greeter-serve's --bind and --workers override the first two.
"""

import os
import ssl
import sys

from prometheus_client import multiprocess

from greeter.metrics import flush_all
from greeter.settings import SettingsError, load_settings

try:
    _settings = load_settings()
except SettingsError as error:  # a message naming the variable, not gunicorn's traceback of this file
    sys.exit(f"greeter: {error}")

bind = _settings.bind
workers = _settings.worker_count
worker_class = _settings.worker_class
keepalive = _settings.keepalive_seconds
timeout = _settings.timeout_seconds
graceful_timeout = _settings.graceful_timeout_seconds
# Access logs would cost more than the function on the hot path; /metrics counts requests instead.
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
# Load the app once in the master: a bad setting or a broken install fails before any worker forks.
preload_app = True
proc_name = "greeter"
# gunicorn 27's control socket sits at one path per user: two greeters on a host would fight over it.
control_socket_disable = True

# Mutual TLS, when GREETER_TLS_CERT, GREETER_TLS_KEY and GREETER_TLS_CA are set (greeter/settings.py checks them):
# the runtime can authenticate to a remote function only with a client certificate.
if _settings.tls is not None:
    certfile = str(_settings.tls.cert)
    keyfile = str(_settings.tls.key)
    ca_certs = str(_settings.tls.ca)
    # 2, not True: gunicorn turns True into 1 = CERT_OPTIONAL, which serves clients that show no certificate.
    cert_reqs = ssl.CERT_REQUIRED


def child_exit(server: object, worker: object) -> None:
    """gunicorn's child_exit hook, in the master: drop the dead worker's live gauges from the shared metrics files."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined,no-untyped-call]


def worker_exit(server: object, worker: object) -> None:
    """gunicorn's worker_exit hook, in the exiting worker: write what it counted since the last periodic flush."""
    flush_all()
