"""Splitting a byte stream into typed messages without copying or decoding their payloads.

Each message is a type byte, an Int32 length that counts itself, and a body. The scanner hands back the
longest prefix of complete messages so the caller can forward it as one write, and the offsets of only
the messages the caller watches; everything else is relayed as the bytes that arrived.
"""

from __future__ import annotations

import struct
from typing import Final

from pgml_proxy.errors import ProtocolViolation

MAX_MESSAGE_LENGTH: Final = 1 << 30
"""Postgres refuses anything larger (its PQ_LARGE_MESSAGE_LIMIT is 1 GiB - 1)."""

HEADER: Final = struct.Struct("!BI")

Frame = tuple[int, int, int]
"""(type byte, body start, body end) within the chunk returned by :meth:`MessageScanner.feed`."""


class MessageScanner:
    """Frames one direction of a connection.

    ``valid`` restricts the type bytes accepted (frontend streams); a byte outside it, or a length
    outside [4, 1 GiB], is a protocol violation reported as soon as the header arrives, without
    waiting for a body that may never come.
    """

    __slots__ = ("_need", "_pending", "valid", "watched")

    def __init__(self, watched: frozenset[int], valid: frozenset[int] | None = None) -> None:
        self.watched = watched
        self.valid = valid
        self._pending = bytearray()
        self._need = 0  # size the pending message will have once complete; 0 until its header is in

    @property
    def has_partial(self) -> bool:
        """True while a message has begun arriving but is not complete."""
        return bool(self._pending)

    def drain(self) -> bytes:
        """Hand over the bytes of a message still arriving, so another scanner can take the stream on."""
        pending, self._pending, self._need = bytes(self._pending), bytearray(), 0
        return pending

    def push_back(self, data: bytes) -> None:
        """Return complete-but-unprocessed bytes to the front of the stream, to be scanned again later."""
        self._pending[:0] = data
        self._need = 0

    def feed(self, data: bytes) -> tuple[bytes, list[Frame]]:
        """Take newly arrived bytes; return the complete messages and the watched frames among them."""
        if self._pending:
            self._pending += data
            if len(self._pending) < self._need:
                # A large message arriving in pieces: appending is all there is to do, so a body of
                # N chunks costs O(N), not a rescan of everything pending per chunk.
                return b"", []
            buf = bytes(self._pending)
        else:
            buf = data
        size = len(buf)
        pos = 0
        frames: list[Frame] = []
        watched = self.watched
        valid = self.valid
        unpack = HEADER.unpack_from
        while size - pos >= 5:
            kind, length = unpack(buf, pos)
            if valid is not None and kind not in valid:
                raise ProtocolViolation(f"invalid frontend message type {kind}")
            if length < 4 or length > MAX_MESSAGE_LENGTH:
                raise ProtocolViolation(f"invalid message length {length} for message type {kind}")
            end = pos + 1 + length
            if end > size:
                break
            if kind in watched:
                frames.append((kind, pos + 5, end))
            pos = end
        if pos == size:
            self._pending.clear()
            self._need = 0
            return buf, frames
        if valid is not None and size - pos < 5 and buf[pos] not in valid:
            raise ProtocolViolation(f"invalid frontend message type {buf[pos]}")
        self._pending = bytearray(buf[pos:])
        self._need = 1 + HEADER.unpack_from(buf, pos)[1] if size - pos >= 5 else 0
        return buf[:pos], frames


def message(kind: int, body: bytes) -> bytes:
    """Frame a body as one message of the given type."""
    return HEADER.pack(kind, len(body) + 4) + body


def cstring(value: str) -> bytes:
    """A NUL-terminated UTF-8 string as the protocol writes it."""
    return value.encode() + b"\x00"


def read_cstring(buf: bytes, pos: int) -> tuple[str, int]:
    """Decode the NUL-terminated string at ``pos``; return it and the offset after its NUL."""
    end = buf.index(b"\x00", pos)
    return buf[pos:end].decode("utf-8", "replace"), end + 1


def read_values(buf: bytes, pos: int, count: int) -> tuple[list[bytes | None], int]:
    """``count`` length-prefixed values (length -1 is NULL), as DataRow and Bind carry them."""
    values: list[bytes | None] = []
    for _ in range(count):
        (size,) = struct.unpack_from("!i", buf, pos)
        pos += 4
        if size < 0:
            values.append(None)
        else:
            values.append(bytes(buf[pos : pos + size]))
            pos += size
    return values, pos
