"""Structured logs: one JSON object per line, with the fields a call site passes in `extra`."""

import json
import logging
import sys
import time
from typing import Any

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC, milliseconds), level, logger, message, the `extra` fields, any traceback."""

    converter = time.gmtime  # type: ignore[assignment]  # timestamps in UTC, as the trailing Z says

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line; a value JSON cannot hold is written as its str()."""
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str) -> None:
    """Route the greeter's loggers to stderr as JSON lines (gunicorn's own logs stay as gunicorn writes them)."""
    logger = logging.getLogger("greeter")
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
