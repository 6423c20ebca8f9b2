"""Side queries: statements the proxy runs on the session's own upstream connection, sans I/O.

They use a named statement and portal with a reserved prefix, never the unnamed ones (which belong to
the client) and never a simple Query (which would destroy them). The upstream's answer is read here and
never reaches the client, except an error, which is the client's error too.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from pgml_proxy.wire import codes
from pgml_proxy.wire.framing import MessageScanner, cstring, message

SIDE_NAME: Final = "pgml_proxy_side"
_WATCHED: Final = frozenset(
    (ord("D"), codes.ERROR_RESPONSE, codes.READY_FOR_QUERY, codes.NOTICE_RESPONSE, codes.PARAMETER_STATUS)
)


def side_query_messages(sql: str) -> bytes:
    """Parse, Bind, Execute and Close of one statement with text results, then Sync.

    Sync is right only while the client has nothing in flight (its own implicit transaction would end);
    the session runs side queries only then.
    """
    name = cstring(SIDE_NAME)
    return b"".join(
        (
            message(codes.PARSE, name + cstring(sql) + struct.pack("!H", 0)),
            message(codes.BIND, name + name + struct.pack("!HHH", 0, 0, 0)),
            message(codes.EXECUTE, name + struct.pack("!I", 0)),
            message(codes.CLOSE, b"S" + name),
            message(codes.SYNC, b""),
        )
    )


@dataclass
class SideQueryResult:
    """What came back: text rows, the error's raw ErrorResponse if any, and the transaction status."""

    rows: list[list[str | None]] = field(default_factory=list)
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
            elif kind == codes.ERROR_RESPONSE:
                self.result.error = chunk[start - 5 : end]
            elif kind == codes.READY_FOR_QUERY:
                self.result.status = body[0]
                self.done = True
            else:
                self.result.passthrough.append(chunk[start - 5 : end])


def _data_row(body: bytes) -> list[str | None]:
    (count,) = struct.unpack_from("!H", body)
    pos = 2
    values: list[str | None] = []
    for _ in range(count):
        (size,) = struct.unpack_from("!i", body, pos)
        pos += 4
        if size < 0:
            values.append(None)
        else:
            values.append(body[pos : pos + size].decode())
            pos += size
    return values


class SideQueryFailed(Exception):
    """The upstream rejected a side query; its error is what the client's statement gets."""

    def __init__(self, result: SideQueryResult) -> None:
        super().__init__("side query failed")
        self.result = result
