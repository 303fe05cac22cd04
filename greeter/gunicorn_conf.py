"""The one gunicorn configuration, used by greeter-serve, the local stack, the Dockerfile, compose and k8s.

Each value can be changed through the environment variable named beside it.
"""

import os
import ssl

from prometheus_client import multiprocess

from greeter.metrics import flush_all
from greeter.settings import load_settings

# Loopback by default; containers set GREETER_BIND=0.0.0.0:8000.
bind = os.environ.get("GREETER_BIND", "127.0.0.1:8000")
# The function is CPU-bound and holds no state: one worker per core keeps every core busy without
# the context switching of more.
workers = int(os.environ.get("GREETER_WORKERS", str(os.cpu_count() or 1)))
# The runtime pools HTTP connections; gunicorn's `sync` worker closes each one after a response, which
# made the runtime fail and retry thousands of deliveries. This worker keeps connections open.
worker_class = os.environ.get("GREETER_WORKER_CLASS", "greeter.worker.KeepAliveWorker")
# Longer than the runtime's idle connection lifetime, so the runtime, not the server, closes idle ones.
keepalive = int(os.environ.get("GREETER_KEEPALIVE", "75"))
# A worker silent this long is stuck: its batch will be retried by the runtime after the restart.
timeout = int(os.environ.get("GREETER_TIMEOUT", "30"))
# On SIGTERM, batches in flight finish (milliseconds each) before the worker exits.
graceful_timeout = int(os.environ.get("GREETER_GRACEFUL_TIMEOUT", "20"))
# Access logs would cost more than the function on the hot path; /metrics counts requests instead.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GREETER_LOG_LEVEL", "info").lower()
# Load the app once in the master: a bad setting or a broken install fails before any worker forks.
preload_app = True
proc_name = "greeter"
# gunicorn 27's control socket sits at one path per user: two greeters on a host would fight over it.
control_socket_disable = True

# Mutual TLS, when GREETER_TLS_CERT, GREETER_TLS_KEY and GREETER_TLS_CA are set (greeter/settings.py checks them):
# the runtime can authenticate to a remote function only with a client certificate.
_tls = load_settings().tls
if _tls is not None:
    certfile = str(_tls.cert)
    keyfile = str(_tls.key)
    ca_certs = str(_tls.ca)
    # 2, not True: gunicorn turns True into 1 = CERT_OPTIONAL, which serves clients that show no certificate.
    cert_reqs = ssl.CERT_REQUIRED


def child_exit(server: object, worker: object) -> None:
    # Drop the dead worker's live gauges from the shared metrics files.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined,no-untyped-call]


def worker_exit(server: object, worker: object) -> None:
    # In the exiting worker: the metrics it counted since the last periodic flush go to its file.
    flush_all()
