"""Result encoders against the real server: it parses our binary, and its text must equal ours."""

from __future__ import annotations

import math
import random
import struct

import numpy as np
import psycopg
import pytest

from pgml_proxy.wire.types import (
    BINARY_FORMAT,
    BOOL,
    FLOAT4,
    FLOAT4_ARRAY,
    FLOAT8,
    INT8,
    JSONB,
    RECORD,
    TEXT,
    TEXT_FORMAT,
    VOID,
    PgType,
    decode_column,
    decode_parameter,
    float4_list_text,
    float4_text,
    vector_binary,
    vector_text,
)

rng = random.Random(7)
FLOATS = [
    0.0, -0.0, 0.1, -1.5, 1e-5, 1.234e-5, 0.0001, 999999.0, 1e6, 9999999.0, 123456789.0, 1e15, 1e16, 1e-45,
    3.4028235e38, 1.17549435e-38, 12345.678, math.nan, math.inf, -math.inf,
    *(rng.uniform(-1, 1) for _ in range(50)), *(rng.uniform(-1e30, 1e30) for _ in range(20)),
    *(np.float32(rng.uniform(-1, 1)) * 10.0 ** rng.randint(-40, 38) for _ in range(50)),
]  # fmt: skip
JSON_VALUES = [
    {"bb": 1, "a": [1e-5, 1.5e20, 2.0, -0.5], "c": 'x\u0001é\n\t"\\', "": None, "z": True, "y": False},
    [{"label": "POSITIVE", "score": 0.9998}, {"label": "NEGATIVE", "score": 1.2e-4}],
    "plain string",
    42,
    [],
    {},
    {"nested": {"b": [1, 2, {"aa": 1, "b": 2}], "a": "ü😀"}},
]


@pytest.fixture(scope="module")
def server(upstream):
    with psycopg.connect(upstream.url(), autocommit=True) as conn:
        conn.execute("set extra_float_digits = 1")
        yield conn.pgconn


def roundtrip(pgconn, pg_type: PgType, value) -> tuple[bytes, bytes]:
    """Send our binary encoding as a typed parameter; return the server's text and binary for it."""
    ours = pg_type.encode(value, BINARY_FORMAT)
    text = pgconn.exec_params(b"select $1", [ours], [pg_type.oid], [1], 0).get_value(0, 0)
    binary = pgconn.exec_params(b"select $1", [ours], [pg_type.oid], [1], 1).get_value(0, 0)
    return text, binary


@pytest.mark.parametrize("pg_type", [FLOAT4, FLOAT8], ids=["float4", "float8"])
def test_float_text_and_binary_match_the_server(server, pg_type):
    for value in FLOATS:
        text, binary = roundtrip(server, pg_type, float(value))
        assert pg_type.encode(float(value), TEXT_FORMAT) == text, value
        assert pg_type.encode(float(value), BINARY_FORMAT) == binary, value


def test_real_array_matches_the_server(server):
    for values in ([0.1, -2.5, 1e-7, None, 3.0], [], [float(v) for v in FLOATS[:40]], [None]):
        text, binary = roundtrip(server, FLOAT4_ARRAY, values)
        assert FLOAT4_ARRAY.encode(values, TEXT_FORMAT) == text
        assert FLOAT4_ARRAY.encode(values, BINARY_FORMAT) == binary


@pytest.mark.parametrize(
    ("pg_type", "values"),
    [
        (BOOL, [True, False]),
        (INT8, [0, -1, 2**63 - 1, -(2**63)]),
        (TEXT, ["", "plain", "ünïcødé 😀", "line\nbreak", "quote ' and \" \\"]),
    ],
    ids=["bool", "int8", "text"],
)
def test_scalars_match_the_server(server, pg_type, values):
    for value in values:
        text, binary = roundtrip(server, pg_type, value)
        assert pg_type.encode(value, TEXT_FORMAT) == text
        assert pg_type.encode(value, BINARY_FORMAT) == binary


def test_jsonb_is_canonical_like_the_server(server):
    for value in JSON_VALUES:
        text, binary = roundtrip(server, JSONB, value)
        assert JSONB.encode(value, TEXT_FORMAT) == text, value
        assert JSONB.encode(value, BINARY_FORMAT) == binary


def test_jsonb_refuses_values_json_cannot_hold():
    with pytest.raises(ValueError):
        JSONB.encode({"score": math.nan}, TEXT_FORMAT)


def test_record_matches_the_server(server):
    fields = [
        (TEXT, "a b"),
        (TEXT, None),
        (TEXT, ""),
        (TEXT, 'x"y\\z'),
        (INT8, 1),
        (FLOAT8, 0.5),
        (BOOL, True),
    ]
    sql = b"select row('a b'::text, null::text, ''::text, 'x\"y\\z'::text, 1::int8, 0.5::float8, true)"
    assert RECORD.encode(fields, TEXT_FORMAT) == server.exec_params(sql, [], [], [], 0).get_value(0, 0)
    assert RECORD.encode(fields, BINARY_FORMAT) == server.exec_params(sql, [], [], [], 1).get_value(0, 0)
    chunk = [(INT8, 1), (TEXT, 'First (chunk), with "quotes"')]
    sql = b"select row(1::int8, 'First (chunk), with \"quotes\"'::text)"
    assert RECORD.encode(chunk, TEXT_FORMAT) == server.exec_params(sql, [], [], [], 0).get_value(0, 0)


def test_null_is_none_in_every_type():
    for pg_type in (BOOL, INT8, FLOAT4, FLOAT8, TEXT, JSONB, FLOAT4_ARRAY, RECORD):
        assert pg_type.encode(None, TEXT_FORMAT) is None
        assert pg_type.encode(None, BINARY_FORMAT) is None


def test_void_is_empty():
    assert VOID.encode("", TEXT_FORMAT) == b""
    assert struct.calcsize("!i") == VOID.size


def test_real_array_input_text_reads_back_as_the_same_values(server):
    values = [float(np.float32(v)) for v in FLOATS] + [None]
    text = FLOAT4_ARRAY.input_text(values)
    result = server.exec_params(b"select $1::real[]", [text.encode()], [0], [0], 1).get_value(0, 0)
    assert result == FLOAT4_ARRAY.encode(values, BINARY_FORMAT)


def test_fast_float_lists_print_exactly_like_float4_text():
    values = [float(np.float32(v)) for v in FLOATS]
    embedding_like = (np.random.default_rng(3).standard_normal(20000) * 0.05).astype(np.float32).tolist()
    for sample in (values, embedding_like, [], [1.0, 2.0, 0.5]):
        expected = "{" + ",".join(float4_text(v) for v in sample) + "}"
        assert float4_list_text(sample).decode() == expected


def test_vector_text_and_binary_match_pgvector(server):
    server.exec_(b"create extension if not exists vector")
    values = [float(np.float32(v)) for v in FLOATS if math.isfinite(v)][:100]
    binary = vector_binary(values)
    text = server.exec_params(b"select $1::vector::text", [vector_text(values)], [0], [0], 0).get_value(0, 0)
    assert text == vector_text(values)
    received = server.exec_params(b"select $1::text::vector", [text], [0], [0], 1).get_value(0, 0)
    assert received == binary


@pytest.mark.parametrize("extra", [0, -1, -4, -15])
def test_lower_extra_float_digits_print_like_the_server(upstream, extra):
    with psycopg.connect(upstream.url(), autocommit=True) as conn:
        conn.execute(f"set extra_float_digits = {extra}")
        raw = conn.pgconn
        values = [float(np.float32(v)) for v in FLOATS]
        for pg_type, value in [(FLOAT4, v) for v in values] + [(FLOAT8, float(v)) for v in FLOATS]:
            ours = pg_type.encode(value, BINARY_FORMAT)
            text = raw.exec_params(b"select $1", [ours], [pg_type.oid], [1], 0).get_value(0, 0)
            assert pg_type.encode(value, TEXT_FORMAT, extra) == text, (pg_type.name, value)
        array = [*values[:40], None]
        ours = FLOAT4_ARRAY.encode(array, BINARY_FORMAT)
        text = raw.exec_params(b"select $1", [ours], [FLOAT4_ARRAY.oid], [1], 0).get_value(0, 0)
        assert FLOAT4_ARRAY.encode(array, TEXT_FORMAT, extra) == text


@pytest.mark.parametrize(
    ("sql_type", "literal"),
    [
        ("real[]", "'{0.1,-2.5,1e-7,NaN,Infinity,-Infinity,3}'"),
        ("real[]", "'{1.5,NULL,2}'"),
        ("real[]", "'{}'"),
        ("double precision[]", "'{0.30000000000000004,-1e300}'"),
        ("integer[]", "'{1,-2,2147483647}'"),
        ("bigint[]", "'{-9223372036854775808,0}'"),
        ("smallint[]", "'{1,NULL,-32768}'"),
        ("boolean[]", "'{t,f,NULL}'"),
        ("real[]", "NULL"),
        ("smallint[]", "'{{1,2},{3,NULL}}'"),
        ("real[]", "'{{{1.5,NaN}},{{2,-3}}}'"),
    ],
)
def test_columns_of_arrays_read_like_each_value(server, sql_type, literal):
    """The splice reads a window's argument column at once (fast paths for numeric arrays, text and
    binary): exactly what reading each value on its own gives."""
    for fmt in (TEXT_FORMAT, BINARY_FORMAT):
        raw = server.exec_params(f"select {literal}::{sql_type}".encode(), [], [], [], fmt).get_value(0, 0)
        column = [raw, None, raw]
        expected = [None if v is None else decode_parameter(sql_type, fmt, v) for v in column]
        assert repr(decode_column(sql_type, fmt, column)) == repr(expected)  # repr: NaN equals NaN


def test_float4_columns_print_like_one_value_at_a_time():
    values = [float(np.float32(v)) for v in FLOATS]
    column = [None, *values, None]
    assert FLOAT4.encode_column(column, TEXT_FORMAT) == [FLOAT4.encode(v, TEXT_FORMAT) for v in column]
    assert FLOAT4.encode_column(column, BINARY_FORMAT) == [FLOAT4.encode(v, BINARY_FORMAT) for v in column]
    assert FLOAT4.encode_column(column, TEXT_FORMAT, -2) == [
        FLOAT4.encode(v, TEXT_FORMAT, -2) for v in column
    ]
