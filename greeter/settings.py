"""Every GREETER_* setting, named once and parsed at start-up into a frozen object.

A bad value fails start-up with a message naming the variable; nothing is read at import time.
"""

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
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
_TLS_VARIABLES = ("GREETER_TLS_CERT", "GREETER_TLS_KEY", "GREETER_TLS_CA")


def _tls(env: Mapping[str, str]) -> TlsFiles | None:
    """All three files or none: a greeter with half a TLS set-up would serve plain HTTP or no one."""
    values = {name: env.get(name, "").strip() for name in _TLS_VARIABLES}
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
        raise SettingsError(f"GREETER_TLS_CERT and GREETER_TLS_KEY do not load as a PEM pair: {error}") from None
    try:
        context.load_verify_locations(cafile=files.ca)
    except (ssl.SSLError, OSError) as error:
        raise SettingsError(
            f"GREETER_TLS_CA={values['GREETER_TLS_CA']!r} is not a PEM CA certificate: {error}"
        ) from None
    return files


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    defaults = Settings()
    log_level = env.get("GREETER_LOG_LEVEL", defaults.log_level).strip().upper() or defaults.log_level
    if log_level not in _LOG_LEVELS:
        raise SettingsError(f"GREETER_LOG_LEVEL={log_level!r} is not one of {', '.join(_LOG_LEVELS)}")
    return Settings(
        seen_count_ttl_seconds=_int(env, "GREETER_SEEN_COUNT_TTL", defaults.seen_count_ttl_seconds, 0),
        max_name_length=_int(env, "GREETER_MAX_NAME_LENGTH", defaults.max_name_length, 1),
        max_request_bytes=_int(env, "GREETER_MAX_REQUEST_BYTES", defaults.max_request_bytes, 1024),
        log_level=log_level,
        tls=_tls(env),
    )
