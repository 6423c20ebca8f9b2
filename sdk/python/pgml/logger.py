"""``init_logger`` (contract §1.2): the ``pgml`` logger's level and format from arguments or LOG_LEVEL/LOG_FORMAT.

At DEBUG every SQL statement is logged with its parameters (pgml/connection.py does the logging).
"""

from __future__ import annotations

import json
import logging
import os

_LEVELS = {
    "TRACE": logging.DEBUG,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
}


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "timestamp": self.formatTime(record),
                "level": record.levelname,
                "target": record.name,
                "message": record.getMessage(),
            }
        )


def init_logger(level: str | None = None, format: str | None = None) -> None:
    """Send the SDK's log to stderr at ``level`` (default ERROR); ``format="Json"`` gives JSON lines."""
    name = (level or os.environ.get("LOG_LEVEL") or "ERROR").upper()
    if name not in _LEVELS:
        raise ValueError(f"log level must be one of {', '.join(_LEVELS)}, got {name!r}")
    logger = logging.getLogger("pgml")
    logger.setLevel(_LEVELS[name])
    handler = logging.StreamHandler()
    style = format or os.environ.get("LOG_FORMAT") or ""
    handler.setFormatter(
        _JsonFormatter()
        if style == "Json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    for old in [h for h in logger.handlers if getattr(h, "_pgml", False)]:
        logger.removeHandler(old)
    handler._pgml = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
