"""Result rows: RowDescription and DataRow codecs, exact and copy-light.

A spliced statement rewrites both on their way to the client (DESIGN §4): the RowDescription loses the
hidden argument columns and names the pgml column, and each DataRow gets the computed value in place of
the placeholder.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from pgml_proxy.wire.framing import cstring, message, read_cstring

ROW_DESCRIPTION: Final = ord("T")
DATA_ROW: Final = ord("D")
COMMAND_COMPLETE: Final = ord("C")
PORTAL_SUSPENDED: Final = ord("s")
EMPTY_QUERY: Final = ord("I")
NO_DATA: Final = ord("n")
_FIELD_TAIL: Final = struct.Struct("!IhIhih")
_COUNT: Final = struct.Struct("!h")
_LENGTH: Final = struct.Struct("!i")
_NULL: Final = b"\xff\xff\xff\xff"


@dataclass(frozen=True, slots=True)
class Field:
    """One column of a RowDescription."""

    name: str
    table_oid: int
    column: int
    type_oid: int
    size: int
    modifier: int
    format: int

    def renamed(self, name: str) -> Field:
        return replace(self, name=name)


def decode_row_description(body: bytes) -> list[Field]:
    (count,) = _COUNT.unpack_from(body, 0)
    fields, pos = [], 2
    for _ in range(count):
        name, pos = read_cstring(body, pos)
        fields.append(Field(name, *_FIELD_TAIL.unpack_from(body, pos)))
        pos += _FIELD_TAIL.size
    return fields


def row_description(fields: Sequence[Field]) -> bytes:
    """A whole RowDescription message."""
    parts = [_COUNT.pack(len(fields))]
    for f in fields:
        parts += [
            cstring(f.name),
            _FIELD_TAIL.pack(f.table_oid, f.column, f.type_oid, f.size, f.modifier, f.format),
        ]
    return message(ROW_DESCRIPTION, b"".join(parts))


def row_values(body: bytes | memoryview) -> list[bytes | memoryview | None]:
    """A DataRow body's column values (None for NULL), as views into ``body``: nothing is copied."""
    view = memoryview(body)
    (count,) = _COUNT.unpack_from(view, 0)
    values: list[bytes | memoryview | None] = []
    pos = 2
    for _ in range(count):
        (size,) = _LENGTH.unpack_from(view, pos)
        pos += 4
        if size < 0:
            values.append(None)
        else:
            values.append(view[pos : pos + size])
            pos += size
    return values


def data_row(values: Sequence[bytes | memoryview | None]) -> bytes:
    """A whole DataRow message."""
    parts: list[bytes | memoryview] = [_COUNT.pack(len(values))]
    for value in values:
        if value is None:
            parts.append(_NULL)
        else:
            parts += [_LENGTH.pack(len(value)), value]
    return message(DATA_ROW, b"".join(parts))
