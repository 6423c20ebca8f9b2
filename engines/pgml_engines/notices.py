"""Messages for the client of the statement being served (PostgreSQL NOTICE / WARNING / INFO).

The proxy sets :data:`SINK` in each session's task; the engine calls :func:`notify` for what a user should see
(a model taking long to load, an argument that is ignored). A ContextVar, so that concurrent sessions sharing one
Engine each get their own messages without passing a callback through every call.

Contextvars do not follow ``run_in_executor``: the engine calls :func:`notify` only on the event loop, in the
caller's task (or a ``loop.call_later`` callback scheduled from it, which runs in a copy of that task's context).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar

log = logging.getLogger(__name__)

#: Severity ("NOTICE", "WARNING", "INFO") and message → delivered to the session's client; None: nobody listens.
SINK: ContextVar[Callable[[str, str], None] | None] = ContextVar("pgml_engines_notice_sink", default=None)


def notify(severity: str, message: str) -> None:
    """Hand a message to the current session's sink, if any. A failing sink never fails the statement."""
    sink = SINK.get()
    if sink is None:
        return
    try:
        sink(severity, message)
    except Exception:
        log.exception("notice sink failed for %s: %s", severity, message)
