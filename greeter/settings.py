"""Every GREETER_* setting, named once and parsed at start-up into a frozen object.

A bad value fails start-up with a message naming the variable; nothing is read at import time.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass


class SettingsError(ValueError):
    """A GREETER_* variable holds a value the greeter cannot use."""


@dataclass(frozen=True)
class Settings:
    # Forget a user this many seconds after their last call; 0 = never forget.
    seen_count_ttl_seconds: int = 0
    # Longest name (in characters) that is greeted; longer ones are dead-lettered.
    max_name_length: int = 256
    # Largest request body accepted (413 above). The runtime sends up to maxNumBatchRequests (10,000)
    # messages per address in one request: 10,000 records of 1 KiB fit with ample room.
    max_request_bytes: int = 64 * 1024 * 1024
    # Log level of the greeter's own logger.
    log_level: str = "INFO"


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
    )
