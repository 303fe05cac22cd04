"""Every GREETER_* setting, named once and parsed at start-up into a frozen object.

A bad value fails start-up with a message naming the variable; nothing is read at import time.
"""

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path


class SettingsError(ValueError):
    """A GREETER_* variable holds a value the greeter cannot use."""


@dataclass(frozen=True)
class TlsFiles:
    """Mutual TLS: the greeter's certificate chain and key, and the CA whose certificates it accepts (PEM)."""

    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True)
class Settings:
    """The greeter's configuration: each field is a GREETER_* variable (see load_settings); defaults here."""

    # Forget a user this many seconds after their last call; 0 = never forget.
    seen_count_ttl_seconds: int = 0
    # Longest name (in characters) that is greeted; longer ones are dead-lettered.
    max_name_length: int = 256
    # Largest request body accepted (413 above): the runtime's own cap (the async transport's
    # payload_max_bytes, 32 MiB), which 10,000 batched records of 1 KiB fit with room.
    max_request_bytes: int = 32 * 1024 * 1024
    # Log level of the greeter's own logger.
    log_level: str = "INFO"
    # None: plain HTTP. Set: HTTPS, and only clients with a certificate signed by `ca` are served (the runtime).
    tls: TlsFiles | None = None
    # Loopback by default; containers set GREETER_BIND=0.0.0.0:8000.
    bind: str = "127.0.0.1:8000"
    # The function is CPU-bound and holds no state: one worker per core keeps every core busy without the
    # context switching of more. 0 = the machine's CPU count.
    workers: int = 0
    # gunicorn's worker class: the greeter's bounded uvicorn worker (greeter/server/worker.py), unless a
    # benchmark swaps it.
    worker_class: str = "greeter.server.worker.GreeterWorker"
    # Seconds an idle connection is kept open: longer than the runtime's pooled-connection lifetime, so the
    # runtime, not the server, closes idle ones (a server-side close races the runtime's next request).
    keepalive_seconds: int = 75
    # Seconds a request may take to arrive in full, headers and body, counted from its first byte: a client
    # that sends half a request, or a byte a second, is cut off (408) instead of holding a connection forever.
    # Also the deadline of a TLS handshake.
    read_timeout_seconds: int = 10
    # Open connections per worker; one more is answered 503 and closed at once, before it can hold memory.
    max_connections: int = 1000
    # Longest request line (method, target, version) in bytes: 400 above it.
    max_request_line_bytes: int = 8190
    # Largest request head (request line and headers) in bytes: 431 above it.
    max_header_bytes: int = 65536
    # A worker silent this long is stuck: gunicorn restarts it and the runtime retries its batch.
    timeout_seconds: int = 30
    # On SIGTERM a worker drains its connections for this long less 1 s (greeter/server/bounded_http.py), then exits.
    graceful_timeout_seconds: int = 20

    @property
    def worker_count(self) -> int:
        """The number of workers to run: `workers`, or the machine's CPU count when that is 0."""
        return self.workers or os.cpu_count() or 1


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# The variables another program sets to configure a greeter it starts (the local stack): named here only.
SEEN_COUNT_TTL_VARIABLE = "GREETER_SEEN_COUNT_TTL"
TLS_VARIABLES = ("GREETER_TLS_CERT", "GREETER_TLS_KEY", "GREETER_TLS_CA")  # TlsFiles' cert, key, ca


def tls_environment(files: TlsFiles) -> dict[str, str]:
    """The GREETER_TLS_* variables that make a greeter serve mutual TLS with `files`."""
    return dict(zip(TLS_VARIABLES, (str(files.cert), str(files.key), str(files.ca)), strict=True))


def _tls(env: Mapping[str, str]) -> TlsFiles | None:
    """All three files or none: a greeter with half a TLS set-up would serve plain HTTP or no one."""
    values = {name: env.get(name, "").strip() for name in TLS_VARIABLES}
    missing = [name for name, value in values.items() if not value]
    if len(missing) == len(values):
        return None
    if missing:
        given = ", ".join(name for name in values if name not in missing)
        raise SettingsError(f"{given} set but {', '.join(missing)} not: mutual TLS needs all of {', '.join(values)}")
    for name, value in values.items():
        if not Path(value).is_file():
            raise SettingsError(f"{name}={value!r} is not a file")
    files = TlsFiles(*(Path(value) for value in values.values()))
    # Load them now, so a bad file stops start-up instead of every worker at its first handshake.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(files.cert, files.key)
    except (ssl.SSLError, OSError) as error:
        cert, key, _ = TLS_VARIABLES
        raise SettingsError(f"{cert} and {key} do not load as a PEM pair: {error}") from None
    try:
        context.load_verify_locations(cafile=files.ca)
    except (ssl.SSLError, OSError) as error:
        ca = TLS_VARIABLES[2]
        raise SettingsError(f"{ca}={values[ca]!r} is not a PEM CA certificate: {error}") from None
    return files


def max_name_length(env: Mapping[str, str] | None = None) -> int:
    """GREETER_MAX_NAME_LENGTH alone: the consumer needs it to tell poison from requests, and nothing else."""
    return _int(os.environ if env is None else env, "GREETER_MAX_NAME_LENGTH", Settings.max_name_length, 1)


def seen_count_ttl(env: Mapping[str, str] | None = None) -> int:
    """GREETER_SEEN_COUNT_TTL alone: the local stack checks the value it passes on to the greeter."""
    return _int(os.environ if env is None else env, SEEN_COUNT_TTL_VARIABLE, Settings.seen_count_ttl_seconds, 0)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Every GREETER_* setting from `env` (the process environment if None); a bad value raises SettingsError.
    The TLS files are loaded now, so a bad one fails here rather than at the first handshake.
    """
    env = os.environ if env is None else env
    defaults = Settings()
    log_level = env.get("GREETER_LOG_LEVEL", defaults.log_level).strip().upper() or defaults.log_level
    if log_level not in _LOG_LEVELS:
        raise SettingsError(f"GREETER_LOG_LEVEL={log_level!r} is not one of {', '.join(_LOG_LEVELS)}")
    return Settings(
        seen_count_ttl_seconds=seen_count_ttl(env),
        max_name_length=max_name_length(env),
        max_request_bytes=_int(env, "GREETER_MAX_REQUEST_BYTES", defaults.max_request_bytes, 1024),
        log_level=log_level,
        tls=_tls(env),
        bind=_bind(env.get("GREETER_BIND", "").strip() or defaults.bind, "GREETER_BIND"),
        workers=_int(env, "GREETER_WORKERS", defaults.workers, 0),
        worker_class=env.get("GREETER_WORKER_CLASS", "").strip() or defaults.worker_class,
        keepalive_seconds=_int(env, "GREETER_KEEPALIVE", defaults.keepalive_seconds, 1),
        read_timeout_seconds=_int(env, "GREETER_READ_TIMEOUT", defaults.read_timeout_seconds, 1),
        max_connections=_int(env, "GREETER_MAX_CONNECTIONS", defaults.max_connections, 1),
        max_request_line_bytes=_int(env, "GREETER_MAX_REQUEST_LINE", defaults.max_request_line_bytes, 256),
        max_header_bytes=_int(env, "GREETER_MAX_HEADER_BYTES", defaults.max_header_bytes, 1024),
        timeout_seconds=_int(env, "GREETER_TIMEOUT", defaults.timeout_seconds, 1),
        graceful_timeout_seconds=_int(env, "GREETER_GRACEFUL_TIMEOUT", defaults.graceful_timeout_seconds, 1),
    )


def _bind(value: str, name: str) -> str:
    """Return `value` if it is HOST:PORT with a port gunicorn can bind; SettingsError naming `name` otherwise.
    (unix: sockets are not accepted: no launcher here uses one.)
    """
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"{name}={value!r} is not HOST:PORT")
    return value


def with_overrides(settings: Settings, *, bind: str | None, workers: int | None) -> Settings:
    """`settings` with greeter-serve's --bind and --workers applied, each checked as its variable is."""
    if bind is not None:
        settings = replace(settings, bind=_bind(bind, "--bind"))
    if workers is not None:
        if workers < 0:
            raise SettingsError(f"--workers={workers} must be at least 0")
        settings = replace(settings, workers=workers)
    return settings
