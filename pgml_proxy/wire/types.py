"""Types the proxy writes into result rows: OIDs and exact text and binary encoders.

Text output matches what PostgreSQL itself prints (float shortest-exact with its own fixed/exponent
thresholds, canonical jsonb, record syntax), so a client cannot tell a proxy-produced value from one the
server produced. Binary output follows each type's send function.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import numpy as np
import orjson

from pgml_proxy.wire.framing import read_values

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
    # Text that the server reads back as the same value, when a faster one than ``text`` exists: values
    # the proxy writes into statements are parsed by the server, which then prints them its own way.
    input: Callable[[Any], str] | None = None
    # Float types: the text Postgres prints when the session's extra_float_digits is 0 or less.
    rounded: Callable[[Any, int], bytes] | None = None
    # ``text`` of many non-NULL values at once, when that is faster than one by one.
    texts: Callable[[Sequence[Any]], list[bytes]] | None = None

    def encode(self, value: Any, fmt: int, extra_float_digits: int = 1) -> bytes | None:
        """The column value for a DataRow; None stands for SQL NULL."""
        if value is None:
            return None
        if fmt == BINARY_FORMAT:
            return self.binary(value)
        if extra_float_digits <= 0 and self.rounded is not None:
            return self.rounded(value, extra_float_digits)
        return self.text(value)

    def encode_column(
        self, values: Sequence[Any], fmt: int, extra_float_digits: int = 1
    ) -> list[bytes | None]:
        """``encode`` of every value of a column."""
        if fmt == BINARY_FORMAT or self.texts is None or (extra_float_digits <= 0 and self.rounded):
            return [self.encode(value, fmt, extra_float_digits) for value in values]
        present = [i for i, value in enumerate(values) if value is not None]
        out: list[bytes | None] = [None] * len(values)
        for i, text in zip(present, self.texts([values[i] for i in present]), strict=True):
            out[i] = text
        return out

    def input_text(self, value: Any) -> str | None:
        """The value as text for the server to read (None for NULL)."""
        if value is None:
            return None
        return self.input(value) if self.input is not None else self.text(value).decode()


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


_FLT_DIG: Final = 6
_DBL_DIG: Final = 15


def _rounded(value: float, digits: int) -> str:
    """Postgres's float output with extra_float_digits <= 0: ``%.*g`` with that many digits (at least 1)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return f"{value:.{max(1, digits)}g}"


def float4_texts(values: Sequence[float]) -> list[bytes]:
    """``float4_text`` of every value, about twenty times faster: an embedding is hundreds of floats per
    row, a spliced column thousands of rows per window.

    orjson writes float32 with the same shortest-digit algorithm (Ryu) Postgres uses; its notation
    differs only for zeros, whole numbers and magnitudes outside [1e-4, 1e6), which are redone exactly.
    """
    array = np.asarray(values, dtype=np.float32)
    parts = orjson.dumps(array, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",") if array.size else []
    magnitude = np.abs(array)
    exact = (magnitude >= 1e-4) & (magnitude < 1e6) & (array != np.trunc(array))
    for index in np.flatnonzero(~exact).tolist():
        parts[index] = float4_text(float(array[index])).encode()
    return parts


def float4_list_text(values: Sequence[float | None], open_: bytes = b"{", close: bytes = b"}") -> bytes:
    """``float4_text`` of every element, comma-separated between ``open_`` and ``close``."""
    if None in values:
        return open_ + ",".join("NULL" if v is None else float4_text(v) for v in values).encode() + close
    return open_ + b",".join(float4_texts(values)) + close  # type: ignore[arg-type]


# -- arrays ----------------------------------------------------------------------------------------


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


_JSON_ESCAPES: Final = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def _json_string(value: str) -> str:
    """A JSON string as Postgres's escape_json writes it: named escapes, other controls as \\u00XX."""
    escaped = (
        _JSON_ESCAPES.get(char) or (f"\\u{ord(char):04x}" if ord(char) < 0x20 else char) for char in value
    )
    return '"' + "".join(escaped) + '"'


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


def parse_record_text(text: str) -> list[str | None]:
    """A composite in record_out syntax as its field texts: ``(1.5,"a b",)`` → ``['1.5', 'a b', None]``."""
    if not (text.startswith("(") and text.endswith(")")):
        raise ValueError(f"malformed record literal: {text!r}")
    fields: list[str | None] = []
    pos, end = 1, len(text) - 1
    while True:
        out: list[str] = []
        quoted = False
        while pos < end and text[pos] != ",":
            char = text[pos]
            if char == '"':
                quoted = True
                pos += 1
                while not (text[pos] == '"' and text[pos + 1 : pos + 2] != '"'):
                    if text[pos] in '"\\':  # a doubled quote or a backslash escapes the next character
                        pos += 1
                    out.append(text[pos])
                    pos += 1
            elif char == "\\":
                pos += 1
                out.append(text[pos])
            else:
                out.append(char)
            pos += 1
        fields.append("".join(out) if out or quoted else None)
        if pos >= end:
            return fields
        pos += 1  # the comma


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
FLOAT4: Final = PgType(
    "real",
    700,
    lambda v: float4_text(v).encode(),
    lambda v: struct.pack("!f", v),
    4,
    rounded=lambda v, extra: _rounded(v, _FLT_DIG + extra).encode(),
    texts=float4_texts,
)
FLOAT8: Final = PgType(
    "double precision",
    701,
    lambda v: float8_text(v).encode(),
    lambda v: struct.pack("!d", v),
    8,
    rounded=lambda v, extra: _rounded(v, _DBL_DIG + extra).encode(),
)
TEXT: Final = PgType("text", 25, _utf8, _utf8)
JSONB: Final = PgType(
    "jsonb", 3802, lambda v: jsonb_text(v).encode(), lambda v: b"\x01" + jsonb_text(v).encode()
)


def _float4_input(value: float) -> str:
    """Nine significant digits read back as exactly the same float4 (and cost far less than the shortest)."""
    return _SPECIAL_FLOATS.get(str(value)) or format(value, ".9g")


_SPECIAL_FLOATS: Final = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}

FLOAT4_ARRAY: Final = PgType(
    "real[]",
    1021,
    float4_list_text,
    _array_binary(FLOAT4.oid, lambda v: struct.pack("!f", v)),
    input=lambda values: "{" + ",".join("NULL" if v is None else _float4_input(v) for v in values) + "}",
    rounded=lambda values, extra: (
        "{" + ",".join("NULL" if v is None else _rounded(v, _FLT_DIG + extra) for v in values) + "}"
    ).encode(),
)


def vector_text(values: Sequence[float]) -> bytes:
    """pgvector's ``vector`` output: the same shortest floats as ``real[]``, in brackets."""
    return float4_list_text(values, b"[", b"]")


def vector_binary(values: Sequence[float]) -> bytes:
    """pgvector's ``vector_send``: dimensions, an unused int16, then the float4 elements."""
    return struct.pack(f"!hh{len(values)}f", len(values), 0, *values)


def _array_element(text: str) -> str:
    """An element as array_out writes it: quoted when empty, NULL-like, or holding special characters."""
    if text == "" or text.upper() == "NULL" or any(c in '{},"\\' or c.isspace() for c in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


TEXT_ARRAY: Final = PgType(
    "text[]",
    1009,
    lambda values: (
        "{" + ",".join("NULL" if v is None else _array_element(v) for v in values) + "}"
    ).encode(),
    _array_binary(TEXT.oid, _utf8),
)
_POSTGRES_EPOCH: Final = 946_684_800
"""2000-01-01 00:00:00 UTC as Unix time: timestamps travel in binary as microseconds since it."""


def _timestamptz_text(unix_time: float) -> bytes:
    """ISO output in UTC, as Postgres writes a timestamptz with DateStyle ISO and TimeZone UTC."""
    moment = datetime.datetime.fromtimestamp(unix_time, datetime.UTC)
    return (moment.strftime("%Y-%m-%d %H:%M:%S.%f").rstrip("0").rstrip(".") + "+00").encode()


TIMESTAMPTZ: Final = PgType(
    "timestamp with time zone",
    1184,
    _timestamptz_text,
    lambda v: struct.pack("!q", round((v - _POSTGRES_EPOCH) * 1_000_000)),
    8,
)
RECORD: Final = PgType("record", 2249, record_text, record_binary)
VOID: Final = PgType("void", 2278, lambda v: b"", lambda v: b"", 4)


# -- casts ---------------------------------------------------------------------------------------------

_CAST_NAMES: Final = {
    "real[]": frozenset({"real[]", "float4[]", "pg_catalog.float4[]"}),
    "text": frozenset({"text", "pg_catalog.text"}),
    "bigint": frozenset({"bigint", "int8", "pg_catalog.int8"}),
    "jsonb": frozenset({"jsonb", "pg_catalog.jsonb"}),
}


def keeps_type(pg_type: PgType, casts: Sequence[str]) -> bool:
    """Whether casts (as the analysis writes them) leave a value of ``pg_type`` as it is, so the proxy can
    write the value itself without converting it."""
    same = _CAST_NAMES.get(pg_type.name, frozenset({pg_type.name}))
    return all(cast in same for cast in casts)


# -- parameters the client binds -------------------------------------------------------------------

TYPE_NAMES: Final = {
    0: "unknown",
    705: "unknown",
    16: "boolean",
    19: "name",
    20: "bigint",
    21: "smallint",
    23: "integer",
    25: "text",
    114: "json",
    700: "real",
    701: "double precision",
    1009: "text[]",
    1015: "character varying[]",
    1042: "character",
    1043: "character varying",
    1700: "numeric",
    3802: "jsonb",
    3807: "jsonb[]",
    1000: "boolean[]",
    1005: "smallint[]",
    1007: "integer[]",
    1016: "bigint[]",
    1021: "real[]",
    1022: "double precision[]",
    1231: "numeric[]",
    2249: "record",
}
"""Type names of the OIDs a client may declare for parameters the proxy reads."""

_TEXT_LIKE: Final = frozenset(("text", "character varying", "character", "name", "unknown"))

TYPE_OIDS: Final = {name: oid for oid, name in TYPE_NAMES.items() if oid not in (0, 705)}


def decode_column(type_name: str, fmt: int, column: Sequence[bytes | memoryview | None]) -> list[Any]:
    """``decode_parameter`` of every value of a column (None: SQL NULL). Numeric arrays in text, as
    Postgres prints them, take a fast path: one split and one conversion per value."""
    element = type_name[:-2] if type_name.endswith("[]") else None
    if fmt == BINARY_FORMAT and element in _BINARY_NUMBERS:
        return [
            None if raw is None else _binary_numbers(type_name, _BINARY_NUMBERS[element], raw)
            for raw in column
        ]
    convert = _NUMBER_ELEMENTS.get(element or "") if fmt == TEXT_FORMAT else None
    if convert is None:
        return [None if raw is None else decode_parameter(type_name, fmt, bytes(raw)) for raw in column]
    out: list[Any] = []
    for raw in column:
        if raw is None:
            out.append(None)
            continue
        data = bytes(raw)
        inner = data[1:-1]
        if data[:1] != b"{" or b"{" in inner or b"NULL" in inner or b'"' in inner:
            out.append(decode_parameter(type_name, fmt, data))  # bounds, nested, NULL elements, quoted
        else:
            out.append(list(map(convert, inner.split(b","))) if inner else [])
    return out


_NUMBER_ELEMENTS: Final[dict[str, Callable[[bytes], Any]]] = {
    "real": float,
    "double precision": float,
    "smallint": int,
    "integer": int,
    "bigint": int,
}


_BINARY_NUMBERS: Final = {
    "real": "f",
    "double precision": "d",
    "smallint": "h",
    "integer": "i",
    "bigint": "q",
    "boolean": "?",
}
"""struct codes of the array elements ``decode_column`` reads in one unpack per value."""


@functools.lru_cache(maxsize=64)
def _array_layout(code: str, count: int) -> struct.Struct:
    """A one-dimensional array's elements without NULLs: a length before each value."""
    return struct.Struct("!" + ("i" + code) * count)


def _binary_numbers(type_name: str, code: str, raw: bytes | memoryview) -> list[Any]:
    ndim, has_null, _ = struct.unpack_from("!iiI", raw)
    if ndim != 1 or has_null:
        return decode_parameter(type_name, BINARY_FORMAT, bytes(raw))  # type: ignore[no-any-return]
    (count,) = struct.unpack_from("!i", raw, 12)
    return list(_array_layout(code, count).unpack_from(raw, 20)[1::2])


def decode_parameter(type_name: str, fmt: int, data: bytes) -> Any:
    """A bound parameter's value, read as ``type_name`` (an OID the client declared, or the type the
    proxy gave the parameter); binary input follows each type's receive function."""
    if fmt == BINARY_FORMAT:
        return _decode_binary(type_name, data)
    text = data.decode()
    if type_name in ("json", "jsonb"):
        return json.loads(text)
    if type_name == "record":
        return parse_record_text(text)
    if type_name.endswith("[]"):
        element = type_name[:-2]
        if element in _NUMBER_ELEMENTS and text.count("{") > 1:
            return nested_numbers(text)
        elements = parse_array_text(text)
        if element in _TEXT_LIKE:
            return elements
        return [None if e is None else decode_parameter(element, fmt, e.encode()) for e in elements]
    if type_name in ("smallint", "integer", "bigint"):
        return int(text)
    if type_name in ("real", "double precision", "numeric"):
        return float(text)
    if type_name == "boolean":
        return text.lower() in ("t", "true", "yes", "on", "1")
    return text


def _decode_binary(type_name: str, data: bytes) -> Any:
    if type_name == "record":  # each field in its own type's layout, named by its OID
        (count,) = struct.unpack_from("!i", data)
        fields: list[Any] = []
        pos = 4
        for _ in range(count):
            oid, size = struct.unpack_from("!Ii", data, pos)
            pos += 8
            field_type = TYPE_NAMES.get(oid)
            if size >= 0 and (field_type is None or field_type in ("unknown", "record")):
                raise ValueError(f"a record field of type OID {oid} cannot be read here; cast it")
            fields.append(None if size < 0 else _decode_binary(str(field_type), data[pos : pos + size]))
            pos += max(size, 0)
        return fields
    if type_name == "numeric":
        return _numeric_from_binary(data)
    if type_name == "jsonb":
        return json.loads(data[1:].decode())
    if type_name == "json":
        return json.loads(data.decode())
    if type_name.endswith("[]"):  # each element in its type's receive layout, nested by dimension
        element = type_name[:-2]
        dims, elements = _array_from_binary(data)
        values = [None if e is None else _decode_binary(element, e) for e in elements]
        for size in reversed(dims[1:]):
            values = [values[i : i + size] for i in range(0, len(values), size)]
        return values
    integer = {"smallint": "!h", "integer": "!i", "bigint": "!q"}.get(type_name)
    if integer:
        return struct.unpack(integer, data)[0]
    if type_name == "real":
        return struct.unpack("!f", data)[0]
    if type_name == "double precision":
        return struct.unpack("!d", data)[0]
    if type_name == "boolean":
        return data != b"\x00"
    return data.decode()


def _numeric_from_binary(data: bytes) -> float:
    """numeric_send's layout: digit count, weight, sign, display scale, then base-10000 digits."""
    count, weight, sign, _ = struct.unpack_from("!hhHh", data)
    if sign == 0xC000:
        return math.nan
    if sign in (0xD000, 0xF000):
        return math.inf if sign == 0xD000 else -math.inf
    digits = struct.unpack_from(f"!{count}H", data, 8)
    value = sum(Decimal(d).scaleb(4 * (weight - i)) for i, d in enumerate(digits))
    return float(-value if sign == 0x4000 else value)


def _array_from_binary(data: bytes) -> tuple[list[int], list[bytes | None]]:
    """An array in array_recv layout: its dimensions, and its elements in row-major order, each as its
    own binary value."""
    ndim, _, _ = struct.unpack_from("!iiI", data)
    dims = [struct.unpack_from("!i", data, 12 + 8 * n)[0] for n in range(ndim)]
    values, _ = read_values(data, 12 + 8 * ndim, math.prod(dims) if dims else 0)
    return dims, [None if v is None else bytes(v) for v in values]


def nested_numbers(text: str) -> list[Any]:
    """A numeric array of several dimensions, ``{{1,2},{3,NULL}}``, as nested lists (JSON's syntax but for
    the brackets and NULL; Python's JSON reader takes NaN and Infinity)."""
    if text.startswith("["):  # explicit bounds: ``[0:1][0:1]={{…}}``
        text = text[text.index("=") + 1 :]
    try:
        return json.loads(text.replace("{", "[").replace("}", "]").replace("NULL", "null"))  # type: ignore[no-any-return]
    except ValueError:
        raise ValueError(f"malformed array literal: {text!r}") from None


def parse_array_text(text: str) -> list[str | None]:
    """A one-dimensional array literal such as ``{a,"b c",NULL}`` as its element strings."""
    text = text.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise ValueError(f"malformed array literal: {text!r}")
    values: list[str | None] = []
    pos, end = 1, len(text) - 1
    while pos < end:
        if text[pos] == '"':
            pos += 1
            out = []
            while text[pos] != '"':
                if text[pos] == "\\":
                    pos += 1
                out.append(text[pos])
                pos += 1
            values.append("".join(out))
            pos += 1
        else:
            stop = text.find(",", pos)
            stop = end if stop == -1 else stop
            item = text[pos:stop].strip()
            if item.startswith("{"):
                raise ValueError("only one-dimensional arrays are accepted here")
            values.append(None if item.upper() == "NULL" else item)
            pos = stop
        if pos < end and text[pos] == ",":
            pos += 1
    return values
