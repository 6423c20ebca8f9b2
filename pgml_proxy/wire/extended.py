"""Extended-protocol messages the proxy reads or rewrites: Parse, Bind, Describe/Close, ParameterDescription."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from pgml_proxy.wire import codes
from pgml_proxy.wire.framing import cstring, message, read_cstring, read_values

PARAMETER_DESCRIPTION = ord("t")
PARSE_COMPLETE = message(ord("1"), b"")
BIND_COMPLETE = message(ord("2"), b"")
CLOSE_COMPLETE = message(ord("3"), b"")


@dataclass(frozen=True, slots=True)
class Parse:
    statement: str
    query: str
    param_types: tuple[int, ...]

    @classmethod
    def decode(cls, body: bytes) -> Parse:
        statement, pos = read_cstring(body, 0)
        query, pos = read_cstring(body, pos)
        (count,) = struct.unpack_from("!H", body, pos)
        types = struct.unpack_from(f"!{count}I", body, pos + 2)
        return cls(statement, query, types)

    def encode(self) -> bytes:
        types = struct.pack(f"!H{len(self.param_types)}I", len(self.param_types), *self.param_types)
        return message(codes.PARSE, cstring(self.statement) + cstring(self.query) + types)


@dataclass(frozen=True, slots=True)
class Bind:
    portal: str
    statement: str
    param_formats: tuple[int, ...]
    values: tuple[bytes | None, ...]
    result_formats: tuple[int, ...]

    @classmethod
    def decode(cls, body: bytes) -> Bind:
        portal, pos = read_cstring(body, 0)
        statement, pos = read_cstring(body, pos)
        (count,) = struct.unpack_from("!H", body, pos)
        formats = struct.unpack_from(f"!{count}H", body, pos + 2)
        pos += 2 + 2 * count
        (count,) = struct.unpack_from("!H", body, pos)
        values, pos = read_values(body, pos + 2, count)
        (count,) = struct.unpack_from("!H", body, pos)
        results = struct.unpack_from(f"!{count}H", body, pos + 2)
        return cls(portal, statement, formats, tuple(values), results)

    def encode(self) -> bytes:
        return self.with_extra_values([])

    def format_of(self, index: int) -> int:
        """The format code of parameter ``index``: none given means text, one given applies to all."""
        if not self.param_formats:
            return 0
        return self.param_formats[0] if len(self.param_formats) == 1 else self.param_formats[index]

    def with_extra_values(self, extra: Sequence[tuple[int, bytes | None]]) -> bytes:
        """This Bind with more parameters appended, each (format code, value), the client's formats kept."""
        results = struct.pack(
            f"!H{len(self.result_formats)}H", len(self.result_formats), *self.result_formats
        )
        head = cstring(self.portal) + cstring(self.statement)
        return message(codes.BIND, head + self.parameters_part(extra) + results)

    def parameters_part(self, extra: Sequence[tuple[int, bytes | None]] = ()) -> bytes:
        """The format codes and values section of a Bind, with ``extra`` (format, value) pairs appended."""
        values = [*self.values, *(value for _, value in extra)]
        formats = [self.format_of(i) for i in range(len(self.values))] + [fmt for fmt, _ in extra]
        parts = [struct.pack(f"!H{len(formats)}H", len(formats), *formats), struct.pack("!H", len(values))]
        for value in values:
            parts.append(b"\xff\xff\xff\xff" if value is None else struct.pack("!i", len(value)) + value)
        return b"".join(parts)


def target(body: bytes) -> tuple[str, str]:
    """Describe and Close: ('S' or 'P', name)."""
    name, _ = read_cstring(body, 1)
    return chr(body[0]), name


def execute_portal(body: bytes) -> str:
    """Execute: the portal's name."""
    return read_cstring(body, 0)[0]


def execute_limit(body: bytes) -> int | None:
    """Execute: the most rows to return (None: no limit, sent as 0)."""
    _, pos = read_cstring(body, 0)
    (limit,) = struct.unpack_from("!i", body, pos)
    return limit if limit > 0 else None


def describe_statement(name: str) -> bytes:
    return message(codes.DESCRIBE, b"S" + cstring(name))


def parameter_types(body: bytes) -> tuple[int, ...]:
    (count,) = struct.unpack_from("!H", body)
    return struct.unpack_from(f"!{count}I", body, 2)


def parameter_description(types: tuple[int, ...]) -> bytes:
    return message(PARAMETER_DESCRIPTION, struct.pack(f"!H{len(types)}I", len(types), *types))
