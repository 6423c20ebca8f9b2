"""The upstream's half of a session: what the server sends, framed and tracked, with no I/O.

During startup it makes the proxy's only edits to relayed traffic: the upstream's BackendKeyData is kept
and replaced by a key the proxy issued, and SCRAM-SHA-256-PLUS is dropped from the SASL offer. Once the
session is ready, complete messages pass through untouched while ReadyForQuery, ParameterStatus and
ErrorResponse are read on the way.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable

from pgml_proxy import metrics
from pgml_proxy.session.replacements import ARGUMENTS_CHANGED
from pgml_proxy.wire import auth, codes
from pgml_proxy.wire.cancel import CancelKey, parse_backend_key_data
from pgml_proxy.wire.error_response import (
    DETAIL,
    HINT,
    MESSAGE,
    SEVERITY,
    SEVERITY_NONLOCALIZED,
    SQLSTATE,
    decode_fields,
    encode_fields,
    is_fatal,
)
from pgml_proxy.wire.extended import PARAMETER_DESCRIPTION, parameter_description, parameter_types
from pgml_proxy.wire.framing import MessageScanner
from pgml_proxy.wire.status import IDLE, IN_TRANSACTION, negotiated_minor, parameter_status

_READY_WATCHED = frozenset(
    (codes.READY_FOR_QUERY, codes.PARAMETER_STATUS, codes.ERROR_RESPONSE, PARAMETER_DESCRIPTION)
)
MARKER_PREFIX = "pgml_proxy_error_"
"""Statements by this name never exist: describing one makes the upstream fail right there, in order,
and the session replaces that error with the one it means."""
_STARTUP_WATCHED = _READY_WATCHED | {
    codes.AUTHENTICATION,
    codes.BACKEND_KEY_DATA,
    codes.NEGOTIATE_PROTOCOL_VERSION,
}

IssueKey = Callable[[int], CancelKey]
"""Given the negotiated protocol minor version, hand out a cancel key for the client."""


class UpstreamSide:
    __slots__ = (
        "_issue_key",
        "_scanner",
        "_trims",
        "authenticated",
        "closed_by_fatal",
        "markers",
        "parameters",
        "protocol_minor",
        "proxy_key",
        "raised",
        "ready_count",
        "skipping_to_sync",
        "transaction_status",
        "transactions_ended",
        "upstream_key",
    )

    def __init__(self, requested_minor: int, issue_key: IssueKey) -> None:
        self._scanner = MessageScanner(_STARTUP_WATCHED)
        self._issue_key = issue_key
        self.protocol_minor = requested_minor
        self.authenticated = False
        self.ready_count = 0
        # An error went by since the last ReadyForQuery: the upstream ignores extended-protocol messages
        # until the next Sync, so a side query sent now would never be answered.
        self.skipping_to_sync = False
        self.transaction_status = IDLE
        # ReadyForQuery outside a transaction block counted: a portal (or cursor without HOLD) opened
        # when the count was n is gone once it is n + 1, as the transaction it lived in has ended.
        self.transactions_ended = 0
        self.parameters: dict[str, str] = {}
        self.upstream_key: CancelKey | None = None
        self.proxy_key: CancelKey | None = None
        self.closed_by_fatal = False
        self.markers: dict[str, bytes] = {}
        self.raised: Counter[str] = (
            Counter()
        )  # SQLSTATEs of errors the proxy had the upstream raise, due back
        self._trims: deque[tuple[int, int | None]] = deque()

    def expect_parameter_description(self, segment: int, keep: int | None) -> None:
        """A Describe of a statement went upstream in the segment ending with ReadyForQuery ``segment + 1``;
        ``keep`` parameters of its ParameterDescription are the client's (None: all)."""
        self._trims.append((segment, keep))

    def feed(self, data: bytes) -> bytes:
        """Take bytes from the upstream; return those to send to the client."""
        chunk, frames = self._scanner.feed(data)
        if not frames:
            return chunk
        if self.ready_count:
            edits: list[tuple[int, int, bytes]] | None = None
            for kind, start, end in frames:
                replacement = self._track(kind, chunk, start, end)
                if replacement is not None:
                    edits = [*(edits or ()), (start - 5, end, replacement)]
            return _apply(chunk, edits) if edits else chunk
        return self._startup(chunk, frames)

    def answered_by_proxy(self, status: int) -> None:
        """The proxy answered a client request itself (an error it raised, with this status)."""
        self.ready_count += 1
        self.transaction_changed(status)

    def transaction_changed(self, status: int) -> None:
        """The proxy's own statements (not seen here) changed the upstream's transaction status."""
        self.transaction_status = status
        if status != IN_TRANSACTION:
            self.transactions_ended += 1

    def _track(self, kind: int, chunk: bytes, start: int, end: int) -> bytes | None:
        """Note what a message says; return what the client should get instead, if anything."""
        if kind == codes.READY_FOR_QUERY:
            self.ready_count += 1
            self.transaction_changed(chunk[start])
            self.skipping_to_sync = False
        elif kind == codes.PARAMETER_STATUS:
            name, value = parameter_status(chunk[start:end])
            self.parameters[name] = value
        elif kind == PARAMETER_DESCRIPTION:
            while self._trims and self._trims[0][0] < self.ready_count:
                self._trims.popleft()  # its Describe was skipped after an error
            keep = self._trims.popleft()[1] if self._trims else None
            if keep is not None:
                return parameter_description(parameter_types(chunk[start:end])[:keep])
        else:  # ErrorResponse
            self.skipping_to_sync = True
            failure = _serialization_failure(chunk[start:end]) if _CHANGED in chunk[start:end] else None
            if failure is not None:
                metrics.error("40001")  # the proxy's own error, in place of the upstream's
                return failure
            fields = decode_fields(chunk[start:end])
            if self.markers and MARKER_PREFIX in fields.get(MESSAGE, ""):
                for name in list(self.markers):
                    if f'"{name}"' in fields[MESSAGE]:
                        return self.markers.pop(name)
            sqlstate = fields.get(SQLSTATE, "")
            if self.raised[sqlstate] > 0:
                self.raised[sqlstate] -= 1  # the proxy's error, counted when it was raised
            else:
                metrics.upstream_error(sqlstate)
            if is_fatal(chunk[start:end]):
                self.closed_by_fatal = True
        return None

    def expect_raised(self, sqlstate: str) -> None:
        """The proxy has the upstream raise an error of its own (in a transaction block): when it comes
        back it is not counted as the upstream's."""
        self.raised[sqlstate] += 1

    def _startup(self, chunk: bytes, frames: list[tuple[int, int, int]]) -> bytes:
        """Relay the startup phase, swapping in the proxy's cancel key and removing channel binding."""
        out: list[bytes] = []
        pos = 0
        for kind, start, end in frames:
            body = chunk[start:end]
            replacement: bytes | None = None
            if kind == codes.AUTHENTICATION:
                code = auth.auth_code(body)
                if code == auth.AUTH_SASL:
                    replacement = auth.without_channel_binding(body)
                elif code == auth.AUTH_OK:
                    self.authenticated = True
            elif kind == codes.NEGOTIATE_PROTOCOL_VERSION:
                self.protocol_minor = negotiated_minor(body)
            elif kind == codes.BACKEND_KEY_DATA:
                self.upstream_key = parse_backend_key_data(body)
                self.proxy_key = self._issue_key(self.protocol_minor)
                replacement = self.proxy_key.backend_key_data()
            else:
                replacement = self._track(kind, chunk, start, end)
            if replacement is not None:
                out.append(chunk[pos : start - 5])
                out.append(replacement)
                pos = end
        if self.ready_count:
            self._scanner.watched = _READY_WATCHED
        if not out:
            return chunk
        out.append(chunk[pos:])
        return b"".join(out)


def _apply(chunk: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    out, pos = [], 0
    for start, end, replacement in edits:
        out += [chunk[pos:start], replacement]
        pos = end
    out.append(chunk[pos:])
    return b"".join(out)


_CHANGED = ARGUMENTS_CHANGED.encode()


def _serialization_failure(body: bytes) -> bytes | None:
    """A materialized call's lookup found no result: the rows changed between the proxy's read of the
    arguments and the statement. That is a serialization failure (40001), which clients and ORMs retry."""
    fields = decode_fields(body)
    if fields.get(SQLSTATE) != "22P02":
        return None
    _, _, detail = fields.get(MESSAGE, "").partition(ARGUMENTS_CHANGED)
    call, _, arguments = detail.rstrip('"').partition(": ")
    failure = {code: fields[code] for code in (SEVERITY, SEVERITY_NONLOCALIZED) if code in fields}
    failure[SQLSTATE] = "40001"
    failure[MESSAGE] = f"could not serialize access: rows changed while {call} ran"
    failure[DETAIL] = (
        f"No result was computed for the arguments {arguments}: they changed after the proxy read them."
    )
    failure[HINT] = "Retry the transaction."
    return encode_fields(codes.ERROR_RESPONSE, failure)
