"""The client's half of a session: what the client sends, framed and checked, with no I/O."""

from __future__ import annotations

from pgml_proxy.metrics import RELAY
from pgml_proxy.sql.text import PGML_MARK
from pgml_proxy.wire import codes
from pgml_proxy.wire.framing import MessageScanner

# Each of these is answered by exactly one ReadyForQuery, which is how the proxy knows a session is idle.
_ANSWERED_BY_READY = frozenset((codes.QUERY, codes.SYNC, codes.FUNCTION_CALL))
_WATCHED = _ANSWERED_BY_READY | {codes.TERMINATE, codes.PARSE}
# While the session holds prepared statements that call pgml, every message naming a statement matters,
# and while it has spliced portals, every Execute.
_STATEMENT_MESSAGES = frozenset((codes.PARSE, codes.BIND, codes.DESCRIBE, codes.CLOSE))
_EXECUTE = frozenset((codes.EXECUTE,))

_TEXT_MESSAGES = frozenset((codes.QUERY, codes.PARSE))
# Words of a statement that may change the settings the session caches (statement_timeout,
# extra_float_digits): naming one, or resetting all.
_SETTING_WORDS = (b"statement_timeout", b"float_digits", b"reset", b"discard")
# Words of a statement that may use or drop a PREPARE the session holds itself.
_HELD_WORDS = (b"execute", b"deallocate", b"discard")

Intercepted = tuple[int, bytes]
"""A message the session handles itself: its type byte and body."""


class ClientSide:
    """Frames the client's stream; counts requests that await a ReadyForQuery; notices Terminate."""

    __slots__ = (
        "_executes",
        "_held",
        "_scanner",
        "_streams",
        "_tracking",
        "requests",
        "settings_touched",
        "terminated",
    )

    def __init__(self) -> None:
        self._scanner = MessageScanner(_WATCHED, codes.FRONTEND_AUTH_TYPES)
        # The StartupMessage itself is answered by the first ReadyForQuery.
        self.requests = 1
        self.terminated = False
        self._tracking = False
        self._executes = False
        self._held = False
        self._streams = False
        # A statement that may change statement_timeout or extra_float_digits went by: the session's
        # cached values are stale.
        self.settings_touched = False

    def track_statements(self, on: bool) -> None:
        """Hand back every Parse, Bind, Describe and Close, not only those that mention pgml."""
        self._tracking = on
        self._watch()

    def track_held_statements(self, on: bool) -> None:
        """Hand back Queries that may EXECUTE or DEALLOCATE a statement the session holds itself."""
        self._held = on

    def track_executes(self, on: bool) -> None:
        """Hand back every Execute, and every message naming a statement or portal (a Bind may replace a
        portal whose Executes are handed back)."""
        self._executes = on
        self._watch()

    def track_streams(self, on: bool) -> None:
        """Hand back every Query and every extended-protocol message but Sync and Flush: a FETCH or
        Execute may read a stream the session holds, and its text need not mention pgml."""
        self._streams = on
        self._watch()

    @property
    def _naming(self) -> bool:
        return self._tracking or self._executes or self._streams

    def _watch(self) -> None:
        watched = _WATCHED | _STATEMENT_MESSAGES if self._naming else _WATCHED
        self._scanner.watched = watched | _EXECUTE if self._executes or self._streams else watched

    def authenticated(self) -> None:
        """From now on the client may send the whole frontend vocabulary, but no more password messages."""
        self._scanner.valid = codes.FRONTEND_READY_TYPES

    @property
    def mid_message(self) -> bool:
        return self._scanner.has_partial

    def feed(self, data: bytes) -> tuple[bytes, Intercepted | None]:
        """Take bytes from the client; return those to forward upstream, and a message to intercept.

        A Query or Parse whose text mentions ``pgml`` (and, while statements are tracked, any message
        naming a statement; while executes are, every Execute) is handed back on its own; whatever
        followed it stays unscanned until the next call, so the messages after it keep their order.
        Raises ProtocolViolation.
        """
        chunk, frames = self._scanner.feed(data)
        for kind, start, end in frames:
            if kind == codes.TERMINATE:
                # Like the server, ignore anything a client sends after Terminate.
                self.terminated = True
                return chunk[: start - 5], None
            if kind in _ANSWERED_BY_READY:
                self.requests += 1
                if kind != codes.QUERY:
                    continue
            elif kind != codes.PARSE and not self._naming:
                continue
            pgml = False
            is_text = kind in _TEXT_MESSAGES
            if is_text:
                # One lowered copy serves both checks (the fast path's own rule, mentions_pgml's).
                text = chunk[start:end].lower()
                pgml = (
                    PGML_MARK in text
                    or self._streams
                    or (self._held and any(word in text for word in _HELD_WORDS))
                )
                if b"set" in text or b"discard" in text:  # SET, RESET, set_config(), DISCARD ALL
                    self.settings_touched |= any(word in text for word in _SETTING_WORDS)
            if pgml or (self._naming and kind in _STATEMENT_MESSAGES) or kind == codes.EXECUTE:
                self._scanner.push_back(chunk[end:])
                return chunk[: start - 5], (kind, chunk[start:end])
            if is_text:
                RELAY.statements += 1  # the fast path: a plain integer, folded into metrics when scraped
        return chunk, None
