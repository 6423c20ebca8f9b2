"""Side queries: statements the proxy runs on the session's own upstream connection, sans I/O.

They use a named statement and portal with a reserved prefix, never the unnamed ones (which belong to
the client) and never a simple Query (which would destroy them). The upstream's answer is read here and
never reaches the client, except an error, which is the client's error too.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from pgml_proxy.functions.registry import SessionQueryFailed
from pgml_proxy.sql.literals import identifier
from pgml_proxy.sql.text import parameter_numbers
from pgml_proxy.wire import codes
from pgml_proxy.wire.extended import Bind, Parse
from pgml_proxy.wire.framing import MessageScanner, cstring, message, read_values

SIDE_PREFIX: Final = "pgml_proxy_side_"
"""Side statements and portals get a name of their own each time: a failed one may leave its name taken
until the transaction (portal) or the session (statement) ends."""
TEXT_OID: Final = 25
BYTEA_OID: Final = 17
CLOSE_COMPLETE: Final = ord("3")
PARSE_COMPLETE: Final = ord("1")
BIND_COMPLETE: Final = ord("2")
ROW_DESCRIPTION: Final = ord("T")
COPY_DATA: Final = ord("d")
_WATCHED: Final = frozenset(
    (
        ord("D"),
        COPY_DATA,
        codes.ERROR_RESPONSE,
        codes.READY_FOR_QUERY,
        codes.NOTICE_RESPONSE,
        codes.PARAMETER_STATUS,
    )
)


def side_query_messages(sql: str, name: str) -> bytes:
    """Parse, Bind, Execute and Close of one statement with text results, then Sync.

    Sync is right only while the client has nothing in flight (its own implicit transaction would
    end); the session runs these only then.
    """
    return b"".join(
        (
            Parse(name, sql, ()).encode(),
            message(codes.BIND, cstring(name) * 2 + b"\x00\x00\x00\x00\x00\x00"),
            message(codes.EXECUTE, cstring(name) + struct.pack("!I", 0)),
            message(codes.CLOSE, b"P" + cstring(name)),
            message(codes.CLOSE, b"S" + cstring(name)),
            message(codes.SYNC, b""),
        )
    )


def pipeline_query_messages(sql: str, bind: Bind, param_types: Sequence[int], name: str) -> bytes:
    """A side query inside the client's pipeline: the client's own parameter values, Flush not Sync.

    Its answer is told apart from the answers still owed to the client by its RowDescription, whose one
    column is named like the statement.
    """
    referenced = parameter_numbers(sql)
    types = tuple(
        (param_types[i] if i < len(param_types) else 0)
        if i + 1 in referenced
        else (BYTEA_OID if bind.format_of(i) else TEXT_OID)  # unused here, but it must have a type
        for i in range(len(bind.values))
    )
    tagged = f"SELECT pgml_side.pgml_value AS {identifier(name)} FROM ({sql}) AS pgml_side(pgml_value)"
    named = cstring(name)
    return b"".join(
        (
            Parse(name, tagged, types).encode(),
            message(codes.BIND, named + named + bind.parameters_part() + struct.pack("!H", 0)),
            message(codes.DESCRIBE, b"P" + named),
            message(codes.EXECUTE, named + struct.pack("!I", 0)),
            message(codes.CLOSE, b"P" + named),
            message(codes.CLOSE, b"S" + named),
            message(codes.FLUSH, b""),
        )
    )


@dataclass
class SideQueryResult:
    """What came back: text rows (or a COPY's lines), the error's raw ErrorResponse if any, and the
    transaction status."""

    rows: list[list[str | None]] = field(default_factory=list)
    copied: list[bytes] = field(default_factory=list)
    error: bytes | None = None
    passthrough: list[bytes] = field(default_factory=list)  # notices and status changes for the client
    status: int = 0


class SideQueryReader:
    """Consumes the upstream's answer to :func:`side_query_messages` up to its ReadyForQuery."""

    def __init__(self) -> None:
        self._scanner = MessageScanner(_WATCHED)
        self.result = SideQueryResult()
        self.done = False

    def feed(self, data: bytes) -> None:
        chunk, frames = self._scanner.feed(data)
        for kind, start, end in frames:
            body = chunk[start:end]
            if kind == ord("D"):
                self.result.rows.append(_data_row(body))
            elif kind == COPY_DATA:
                self.result.copied.append(bytes(body))
            elif kind == codes.ERROR_RESPONSE:
                self.result.error = chunk[start - 5 : end]
            elif kind == codes.READY_FOR_QUERY:
                self.result.status = body[0]
                self.done = True
            else:
                self.result.passthrough.append(chunk[start - 5 : end])


def _data_row(body: bytes) -> list[str | None]:
    (count,) = struct.unpack_from("!H", body)
    values, _ = read_values(body, 2, count)
    return [None if v is None else v.decode() for v in values]


class PipelineQueryReader:
    """Reads the answer to :func:`pipeline_query_messages` out of the stream the client is owed.

    Until the side query's tagged RowDescription shows up, messages belong to the client and pass
    through — except ParseComplete and BindComplete, held back since the last two before the tag are the
    side query's own. An ErrorResponse before the tag means the client's pipeline failed first: the
    upstream skips the side query, and the error is the client's.
    """

    def __init__(self, tag: str) -> None:
        self._scanner = MessageScanner(frozenset())
        self._tag = cstring(tag)
        self._held: list[bytes] = []
        self._started = False
        self._closes = 0
        self.result = SideQueryResult()
        self.done = False
        self.skipped = False

    def feed(self, data: bytes) -> bytes:
        """Take upstream bytes; return those that are the client's."""
        chunk, _ = self._scanner.feed(data)
        passthrough: list[bytes] = []
        pos = 0
        while pos < len(chunk) and not self.done:
            kind, length = struct.unpack_from("!BI", chunk, pos)
            end = pos + 1 + length
            whole, body = chunk[pos:end], chunk[pos + 5 : end]
            pos = end
            if self._started:
                self._own(kind, whole, body)
            elif kind in (PARSE_COMPLETE, BIND_COMPLETE):
                self._held.append(whole)
            elif kind == ROW_DESCRIPTION and self._tag in body:
                passthrough += self._held[:-2]  # the last two are the side query's Parse and Bind
                self._held.clear()
                self._started = True
            else:
                passthrough += [*self._held, whole]
                self._held.clear()
                if kind == codes.ERROR_RESPONSE:
                    self.done = self.skipped = True
        if self.done:
            passthrough += [*self._held, chunk[pos:], self._scanner.drain()]
        return b"".join(passthrough)

    def _own(self, kind: int, whole: bytes, body: bytes) -> None:
        if kind == ord("D"):
            self.result.rows.append(_data_row(body))
        elif kind == codes.ERROR_RESPONSE:
            self.result.error = whole  # the upstream now skips to the client's Sync
            self.done = True
        elif kind == CLOSE_COMPLETE:
            self._closes += 1
            self.done = self._closes == 2
        elif kind in (codes.NOTICE_RESPONSE, codes.PARAMETER_STATUS):
            self.result.passthrough.append(whole)


class SideQuerySkipped(Exception):
    """The client's pipeline had already failed, so the upstream skipped the side query."""


class SideQueryFailed(SessionQueryFailed):
    """The upstream rejected a side query; its error is what the client's statement gets."""

    def __init__(self, result: SideQueryResult) -> None:
        super().__init__("side query failed")
        self.result = result
