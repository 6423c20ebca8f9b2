"""Structured log lines: ``time level logger message``, one event per line, to stderr."""

from __future__ import annotations

import logging
import sys

LEVELS = ("debug", "info", "warning", "error")


def configure(level: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"invalid log level {level!r}: expected one of {', '.join(LEVELS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    for name in ("pgml_proxy", "pgml_engines"):  # the engine's log lines (model loads, streams) too
        root = logging.getLogger(name)
        root.handlers[:] = [handler]
        root.setLevel(level.upper())
        root.propagate = False
