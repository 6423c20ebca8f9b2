"""Types the proxy writes into result rows: OIDs and exact text and binary encoders.

Text output matches what PostgreSQL itself prints (float shortest-exact with its own fixed/exponent
thresholds, canonical jsonb, record syntax), so a client cannot tell a proxy-produced value from one the
server produced. Binary output follows each type's send function.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import numpy as np

TEXT_FORMAT: Final = 0
BINARY_FORMAT: Final = 1

Encoder = Callable[[Any], bytes]


@dataclass(frozen=True, slots=True)
class PgType:
    name: str
    oid: int
    text: Encoder
    binary: Encoder
    size: int = -1  # typlen as RowDescription reports it (-1: variable)

    def encode(self, value: Any, fmt: int) -> bytes | None:
        """The column value for a DataRow; None stands for SQL NULL."""
        if value is None:
            return None
        return self.binary(value) if fmt == BINARY_FORMAT else self.text(value)


# -- floats ----------------------------------------------------------------------------------------


def _shortest(value: float, exact: np.floating[Any], fixed_below: int) -> str:
    """Postgres's shortest-exact float text: fixed notation for exponents in [-4, fixed_below)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0" if str(value).startswith("-") else "0"
    mantissa, exponent_text = np.format_float_scientific(exact, unique=True, trim="-").split("e")
    exponent = int(exponent_text)
    sign = "-" if mantissa.startswith("-") else ""
    digits = mantissa.lstrip("-").replace(".", "")
    if -4 <= exponent < fixed_below:
        if exponent < 0:
            return f"{sign}0.{'0' * (-exponent - 1)}{digits}"
        whole = digits[: exponent + 1].ljust(exponent + 1, "0")
        fraction = digits[exponent + 1 :]
        return f"{sign}{whole}.{fraction}" if fraction else f"{sign}{whole}"
    head, tail = digits[0], digits[1:]
    return f"{sign}{head}{'.' + tail if tail else ''}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"


def float4_text(value: float) -> str:
    return _shortest(float(np.float32(value)), np.float32(value), 6)


def float8_text(value: float) -> str:
    return _shortest(float(value), np.float64(value), 15)


# -- arrays ----------------------------------------------------------------------------------------


def _array_text(element: Callable[[Any], str]) -> Encoder:
    def encode(values: Sequence[Any]) -> bytes:
        return ("{" + ",".join("NULL" if v is None else element(v) for v in values) + "}").encode()

    return encode


def _array_binary(element_oid: int, element: Encoder) -> Encoder:
    """One-dimensional array in array_send layout: ndim, has-nulls, element type, dims, elements."""

    def encode(values: Sequence[Any]) -> bytes:
        has_null = any(v is None for v in values)
        if not values:
            return struct.pack("!iiI", 0, 0, element_oid)
        parts = [struct.pack("!iiIii", 1, int(has_null), element_oid, len(values), 1)]
        for value in values:
            if value is None:
                parts.append(b"\xff\xff\xff\xff")
            else:
                data = element(value)
                parts.append(struct.pack("!i", len(data)) + data)
        return b"".join(parts)

    return encode


# -- jsonb -----------------------------------------------------------------------------------------


def _json_string(value: str) -> str:
    out = ['"']
    for char in value:
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif char == "\b":
            out.append("\\b")
        elif char == "\f":
            out.append("\\f")
        elif ord(char) < 0x20:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def jsonb_text(value: Any) -> str:
    """Postgres-canonical jsonb text: keys by length then bytes, ", " and ": ", numbers as numeric."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value} cannot be represented in jsonb")
        return format(Decimal(repr(value)), "f")
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(str(k).encode()), str(k).encode()))
        return "{" + ", ".join(f"{_json_string(str(k))}: {jsonb_text(value[k])}" for k in keys) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(jsonb_text(v) for v in value) + "]"
    if isinstance(value, np.generic):
        return jsonb_text(value.item())
    raise TypeError(f"cannot encode {type(value).__name__} as jsonb")


# -- records ---------------------------------------------------------------------------------------


def _record_field(text: str) -> str:
    if text == "" or any(c in text for c in '"\\(),') or any(c.isspace() for c in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '""') + '"'
    return text


def record_text(fields: Sequence[tuple[PgType, Any]]) -> bytes:
    """A composite in record_out syntax: ``(a,"b c",)`` with NULL as nothing."""
    parts = ["" if v is None else _record_field(t.text(v).decode()) for t, v in fields]
    return ("(" + ",".join(parts) + ")").encode()


def record_binary(fields: Sequence[tuple[PgType, Any]]) -> bytes:
    parts = [struct.pack("!i", len(fields))]
    for pg_type, value in fields:
        data = pg_type.encode(value, BINARY_FORMAT)
        parts.append(struct.pack("!I", pg_type.oid))
        parts.append(b"\xff\xff\xff\xff" if data is None else struct.pack("!i", len(data)) + data)
    return b"".join(parts)


# -- the types -------------------------------------------------------------------------------------


def _utf8(value: str) -> bytes:
    return value.encode()


BOOL: Final = PgType("boolean", 16, lambda v: b"t" if v else b"f", lambda v: b"\x01" if v else b"\x00", 1)
INT8: Final = PgType("bigint", 20, lambda v: str(int(v)).encode(), lambda v: struct.pack("!q", v), 8)
FLOAT4: Final = PgType("real", 700, lambda v: float4_text(v).encode(), lambda v: struct.pack("!f", v), 4)
FLOAT8: Final = PgType(
    "double precision", 701, lambda v: float8_text(v).encode(), lambda v: struct.pack("!d", v), 8
)
TEXT: Final = PgType("text", 25, _utf8, _utf8)
JSONB: Final = PgType(
    "jsonb", 3802, lambda v: jsonb_text(v).encode(), lambda v: b"\x01" + jsonb_text(v).encode()
)
FLOAT4_ARRAY: Final = PgType(
    "real[]", 1021, _array_text(float4_text), _array_binary(FLOAT4.oid, lambda v: struct.pack("!f", v))
)
RECORD: Final = PgType("record", 2249, record_text, record_binary)
VOID: Final = PgType("void", 2278, lambda v: b"", lambda v: b"", 4)
