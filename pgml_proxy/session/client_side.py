"""The client's half of a session: what the client sends, framed and checked, with no I/O."""

from __future__ import annotations

from pgml_proxy.sql.text import mentions_pgml
from pgml_proxy.wire import codes
from pgml_proxy.wire.framing import MessageScanner

# Each of these is answered by exactly one ReadyForQuery, which is how the proxy knows a session is idle.
_ANSWERED_BY_READY = frozenset((codes.QUERY, codes.SYNC, codes.FUNCTION_CALL))
_WATCHED = _ANSWERED_BY_READY | {codes.TERMINATE}


class ClientSide:
    """Frames the client's stream; counts requests that await a ReadyForQuery; notices Terminate."""

    __slots__ = ("_scanner", "requests", "terminated")

    def __init__(self) -> None:
        self._scanner = MessageScanner(_WATCHED, codes.FRONTEND_AUTH_TYPES)
        # The StartupMessage itself is answered by the first ReadyForQuery.
        self.requests = 1
        self.terminated = False

    def authenticated(self) -> None:
        """From now on the client may send the whole frontend vocabulary, but no more password messages."""
        self._scanner.valid = codes.FRONTEND_READY_TYPES

    @property
    def mid_message(self) -> bool:
        return self._scanner.has_partial

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        """Take bytes from the client; return those to forward upstream, and a Query to intercept.

        A Query whose text mentions ``pgml`` is handed back on its own; whatever followed it stays
        unscanned until the next call, so the messages after it keep their order. Raises
        ProtocolViolation.
        """
        chunk, frames = self._scanner.feed(data)
        for kind, start, end in frames:
            if kind == codes.TERMINATE:
                # Like the server, ignore anything a client sends after Terminate.
                self.terminated = True
                return chunk[: start - 5], None
            self.requests += 1
            if kind == codes.QUERY and mentions_pgml(memoryview(chunk)[start:end]):
                self._scanner.push_back(chunk[end:])
                return chunk[: start - 5], chunk[start:end]
        return chunk, None
