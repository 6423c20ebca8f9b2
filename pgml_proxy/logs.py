"""Log lines to stderr, one event per line: ``time level logger message`` as text, or one JSON object.

JSON lines (``--log-format json``) carry ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``,
``message``, ``exception`` when there is one, and any ``extra`` fields a call attached, for log collectors that
parse rather than grep.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any, Final

from pgml_proxy.config import LOG_FORMATS, LOG_LEVELS

_RECORD_FIELDS: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
"""Attributes every LogRecord has; anything else on a record came from ``extra=``."""


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in event:
                event[key] = value
        return json.dumps(event, default=str, ensure_ascii=False)


def configure(level: str, log_format: str = "text") -> None:
    if level not in LOG_LEVELS:
        raise ValueError(f"invalid log level {level!r}: expected one of {', '.join(LOG_LEVELS)}")
    if log_format not in LOG_FORMATS:
        raise ValueError(f"invalid log format {log_format!r}: expected one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    for name in ("pgml_proxy", "pgml_engines"):  # the engine's log lines (model loads, streams) too
        root = logging.getLogger(name)
        root.handlers[:] = [handler]
        root.setLevel(level.upper())
        root.propagate = False
