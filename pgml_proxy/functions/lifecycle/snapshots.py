"""Snapshots (§3.5): a relation's columns and rows read through the client's session, the snapshot row,
its reuse when ``relation_name`` is NULL, and the materialized copy."""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np
from pgml_engines import classical
from pgml_engines.notices import notify

from pgml_proxy.errors import InvalidParameterValue
from pgml_proxy.functions.lifecycle.catalog import (
    SAMPLINGS,
    Catalog,
    enum_error,
    in_one_transaction,
    jsonb_literal,
    session_of,
)
from pgml_proxy.functions.registry import CallContext, json_object
from pgml_proxy.sql.literals import identifier, quote
from pgml_proxy.wire.types import nested_numbers, parse_array_text

_INTEGERS: Final = frozenset(("int2", "int4", "int8"))
_FLOATS: Final = frozenset(("float4", "float8", "numeric"))
_NON_FINITE: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class SnapshotSettings(Protocol):
    """What taking or reusing a snapshot needs of a call's arguments (train's, tune's, snapshot's)."""

    @property
    def relation_name(self) -> str | None: ...
    @property
    def y_column_names(self) -> tuple[str, ...]: ...
    @property
    def test_size(self) -> float: ...
    @property
    def test_sampling(self) -> str: ...
    @property
    def materialize_snapshot(self) -> bool: ...
    @property
    def preprocess(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class SnapshotRequest:
    """pgml.snapshot's arguments."""

    relation_name: str
    y_column_names: tuple[str, ...]
    test_size: float
    test_sampling: str
    materialize_snapshot: bool
    preprocess: dict[str, Any]


@dataclass
class Snapshot:
    id: int
    relation_name: str
    y_column_names: list[str]
    test_size: float
    test_sampling: str
    materialized: bool
    preprocess: dict[str, Any] = field(default_factory=dict)
    new: bool = True


@dataclass(frozen=True, slots=True)
class _RelationColumn:
    name: str
    pg_type: str  # ``float4``, ``int2[]``
    nullable: bool

    @property
    def element(self) -> str:
        return self.pg_type.removesuffix("[]")

    @property
    def is_array(self) -> bool:
        return self.pg_type.endswith("[]")


def _split_relation(relation_name: str) -> tuple[str, str]:
    """§3.5: ``a.b`` is table ``b`` of schema ``a``; a bare name is looked for in ``public`` only."""
    schema, dot, table = relation_name.partition(".")
    return (schema, table) if dot else ("public", relation_name)


async def _columns(catalog: Catalog, relation_name: str) -> tuple[str, list[_RelationColumn]]:
    """The relation's SQL name and its columns in ordinal order (array types spelled ``int2[]``)."""
    schema, table = _split_relation(relation_name)
    found = await catalog.one(
        "SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE n.nspname = {quote(schema)} AND c.relname = {quote(table)} "
        "AND c.relkind IN ('r', 'v', 'm', 'p', 'f')"
    )
    if found is None:
        if "." not in relation_name:
            raise InvalidParameterValue(
                f'Relation "{table}" could not be found in the public schema. Please specify the table '
                f"schema, e.g. pgml.{table}"
            )
        raise InvalidParameterValue(f'Relation "{relation_name}" does not exist')
    rows = await catalog.rows(
        "SELECT a.attname, CASE WHEN t.typelem <> 0 AND t.typlen = -1 "
        "THEN (SELECT e.typname FROM pg_catalog.pg_type e WHERE e.oid = t.typelem) || '[]' "
        "ELSE t.typname END, NOT a.attnotnull "
        "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid "
        f"WHERE a.attrelid = {found[0]} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
    )
    columns = [_RelationColumn(str(name), str(pg_type), nullable == "t") for name, pg_type, nullable in rows]
    return f"{identifier(schema)}.{identifier(table)}", columns


def _scalar(element: str, text: str) -> Any:
    if element in _INTEGERS:
        return int(text)
    if element in _FLOATS:
        return float(text)
    if element == "bool":
        return text == "t"
    return text


def field_value(pg_type: str, text: str) -> Any:
    """A value of a column of type ``pg_type`` (``float4``, ``int2[]``) read from its text, as a record's
    field comes in a row-form prediction (arrays of numbers may have several dimensions)."""
    element = pg_type.removesuffix("[]")
    if element == pg_type:
        return _scalar(element, text)
    if element in _INTEGERS | _FLOATS and text.count("{") > 1:
        return nested_numbers(text)
    return [None if e is None else _scalar(element, e) for e in parse_array_text(text)]


def _array(element: str, value: Any) -> Any:
    """An array read as JSON: numbers stay, NaN/Infinity (JSON strings) become floats."""
    if isinstance(value, list):
        return [_array(element, v) for v in value]
    if isinstance(value, str) and element in _FLOATS:
        return _NON_FINITE.get(value, value)
    return value


async def _read(
    catalog: Catalog, table_sql: str, columns: Sequence[_RelationColumn]
) -> list[classical.ColumnData]:
    """Every row of the relation in one COPY, in its natural order, as typed column values."""
    if columns and all(c.pg_type in _BINARY_NUMBERS for c in columns):
        names = ", ".join(identifier(c.name) for c in columns)
        data = await catalog.copy_out(f"COPY (SELECT {names} FROM {table_sql}) TO STDOUT (FORMAT binary)")
        return [
            classical.ColumnData(c.name, c.pg_type, v, nullable=c.nullable)
            for c, v in zip(columns, _binary_numbers(b"".join(data), columns), strict=True)
        ]
    selected = ", ".join(
        f"to_jsonb({identifier(c.name)})::text" if c.is_array else identifier(c.name) for c in columns
    )
    lines = await catalog.copy_out(f"COPY (SELECT {selected} FROM {table_sql}) TO STDOUT")
    fields = (
        list(zip(*(line[:-1].split(b"\t") for line in lines), strict=True)) if lines else [()] * len(columns)
    )
    return [
        classical.ColumnData(c.name, c.pg_type, _column_values(c, f), nullable=c.nullable)
        for c, f in zip(columns, fields, strict=True)
    ]


_BINARY_NUMBERS: Final = {"int2": ">i2", "int4": ">i4", "int8": ">i8", "float4": ">f4", "float8": ">f8"}
"""Column types whose binary COPY fields have one width, so that a table of them is one numpy view."""
_COPY_SIGNATURE: Final = b"PGCOPY\n\xff\r\n\x00"


def _binary_numbers(data: bytes, columns: Sequence[_RelationColumn]) -> list[np.ndarray]:
    """The columns of a binary COPY of fixed-width numbers, as float64 arrays (NULL: NaN). Without NULLs
    every tuple has one layout and the whole body is read as one structured array."""
    if not data.startswith(_COPY_SIGNATURE):
        raise InvalidParameterValue("the upstream's binary COPY did not start with its signature")
    (extension,) = struct.unpack_from("!i", data, len(_COPY_SIGNATURE) + 4)
    body = memoryview(data)[len(_COPY_SIGNATURE) + 8 + extension : -2]  # the trailer is an int16 -1
    widths = [np.dtype(_BINARY_NUMBERS[c.pg_type]) for c in columns]
    layout = np.dtype(
        [("count", ">i2")]
        + [field for n, width in enumerate(widths) for field in ((f"l{n}", ">i4"), (f"v{n}", width))]
    )
    if len(body) % layout.itemsize == 0:
        tuples = np.frombuffer(body, dtype=layout)
        if (tuples["count"] == len(columns)).all() and all(
            (tuples[f"l{n}"] == width.itemsize).all() for n, width in enumerate(widths)
        ):
            return [tuples[f"v{n}"].astype(np.float64) for n in range(len(columns))]
    values: list[list[float]] = [[] for _ in columns]  # some NULL: tuple by tuple
    pos = 0
    while pos < len(body):
        pos += 2
        for n, width in enumerate(widths):
            (size,) = struct.unpack_from("!i", body, pos)
            pos += 4
            if size < 0:
                values[n].append(math.nan)
                continue
            values[n].append(float(np.frombuffer(body, dtype=width, count=1, offset=pos)[0]))
            pos += size
    return [np.asarray(v, dtype=np.float64) for v in values]


_COPY_NULL: Final = b"\\N"
_COPY_ESCAPE: Final = re.compile(rb"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.))", re.DOTALL)
_COPY_ESCAPED: Final = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}


def _copy_text(field: bytes) -> str:
    """A field of COPY's text format as its text: backslash escapes undone."""
    if b"\\" not in field:
        return field.decode()

    def one(match: re.Match[bytes]) -> bytes:
        octal, hexadecimal, char = match.groups()
        if octal is not None:
            return bytes((int(octal, 8) & 0xFF,))
        if hexadecimal is not None:
            return bytes((int(hexadecimal, 16),))
        return _COPY_ESCAPED.get(char, char)

    return _COPY_ESCAPE.sub(one, field).decode()


def _column_values(column: _RelationColumn, fields: Sequence[bytes]) -> Sequence[Any]:
    """One column's COPY fields as values: numbers as one float64 array (NULL is NaN: one conversion for
    the whole column, where a table is millions of numbers), everything else value by value."""
    if column.element in _INTEGERS | _FLOATS and not column.is_array:
        return np.array([b"NaN" if f == _COPY_NULL else f for f in fields], dtype=np.float64)
    texts = [None if f == _COPY_NULL else _copy_text(f) for f in fields]
    if column.is_array:
        return [None if t is None else _array(column.element, json.loads(t)) for t in texts]
    return [None if t is None else _scalar(column.element, t) for t in texts]


async def latest_snapshot(catalog: Catalog, project_id: int) -> Snapshot:
    """§3.5: the snapshot of the project's most recent model, its stored settings and preprocessors."""
    found = await catalog.one(
        "SELECT s.id, s.relation_name, s.y_column_name, s.test_size, s.test_sampling, s.materialized, s.columns "
        "FROM pgml.models m JOIN pgml.snapshots s ON s.id = m.snapshot_id "
        f"WHERE m.project_id = {project_id} ORDER BY m.created_at DESC, m.id DESC LIMIT 1"
    )
    if found is None:
        raise InvalidParameterValue(
            "You must pass a `relation_name` and `y_column_name` to snapshot the first time you train a model."
        )
    snapshot_id, relation, labels, test_size, sampling, materialized, columns = found
    preprocess = {
        str(c["name"]): c["preprocessor"]
        for c in (json.loads(columns) if columns else [])
        if isinstance(c, Mapping) and c.get("preprocessor")
    }
    return Snapshot(
        id=int(str(snapshot_id)),
        relation_name=str(relation),
        y_column_names=[y for y in parse_array_text(labels) if y is not None] if labels else [],
        test_size=float(str(test_size)),
        test_sampling=str(sampling),
        materialized=materialized == "t",
        preprocess=preprocess,
        new=False,
    )


async def take_snapshot(
    catalog: Catalog, arguments: SnapshotSettings, task: str
) -> tuple[Snapshot, list[classical.ColumnData]]:
    """§3.5 with a relation: its columns introspected, the snapshot row, the rows read (materialized:
    copied into ``pgml."snapshot_<id>"`` first and read from there)."""
    relation = arguments.relation_name
    assert relation is not None
    notify("INFO", f'Snapshotting table "{relation}", this may take a little while...')
    table_sql, columns = await _columns(catalog, relation)
    names = {c.name for c in columns}
    for label in arguments.y_column_names:
        if label not in names:
            raise InvalidParameterValue(
                f"Column `{label}` not found. Did you pass the correct `y_column_name`?"
            )
    supervised = task in ("regression", "classification", "text_classification", "text_pair_classification")
    labels = list(arguments.y_column_names) if supervised else []
    [[snapshot_id]] = await catalog.rows(
        "INSERT INTO pgml.snapshots (relation_name, y_column_name, test_size, test_sampling, status, "
        f"materialized) VALUES ({quote(relation)}, "
        f"{('ARRAY[' + ', '.join(quote(y) for y in labels) + ']::text[]') if labels else 'NULL'}, "
        f"{arguments.test_size!r}, {quote(arguments.test_sampling)}::pgml.sampling, 'in_progress', "
        f"{'true' if arguments.materialize_snapshot else 'false'}) RETURNING id"
    )
    snapshot = Snapshot(
        id=int(str(snapshot_id)),
        relation_name=relation,
        y_column_names=labels,
        test_size=arguments.test_size,
        test_sampling=arguments.test_sampling,
        materialized=arguments.materialize_snapshot,
        preprocess=dict(arguments.preprocess),
    )
    if snapshot.materialized:
        copy = f"pgml.{identifier(f'snapshot_{snapshot.id}')}"
        await catalog.rows(f"CREATE TABLE {copy} AS SELECT * FROM {table_sql}")
        table_sql = copy
    return snapshot, await _read(catalog, table_sql, columns)


async def describe_snapshot(
    catalog: Catalog, snapshot: Snapshot, columns: Sequence[classical.ColumnData]
) -> None:
    """A snapshot's column objects (name, type, whether a label) and row count, where no training computes
    their statistics (pgml.snapshot, pgml.tune)."""
    described = [
        {"name": c.name, "pg_type": c.pg_type, "label": c.name in snapshot.y_column_names} for c in columns
    ]
    samples = len(columns[0].values) if columns else 0
    await catalog.rows(
        f"UPDATE pgml.snapshots SET columns = {jsonb_literal(described)}, "
        f"analysis = {jsonb_literal({'samples': samples})}, status = 'successful' WHERE id = {snapshot.id}"
    )


async def snapshot(context: CallContext, calls: list[tuple[Any, ...]]) -> list[Any]:
    """pgml.snapshot (§2.1): a materialized snapshot of the relation, attached to no project (so a train
    without a relation never reuses it); its two inputs back."""
    catalog = Catalog(session_of(context))
    await catalog.check_installed("snapshot")
    results = []
    for relation, label, test_size, sampling, preprocess in calls:
        if sampling not in SAMPLINGS:
            raise enum_error("sampling", sampling)
        arguments = SnapshotRequest(
            relation_name=relation,
            y_column_names=(label,),
            test_size=float(test_size),
            test_sampling=sampling,
            materialize_snapshot=True,
            preprocess=json_object(preprocess, "preprocess"),
        )

        async def work(arguments: SnapshotRequest = arguments) -> None:
            taken, columns = await take_snapshot(catalog, arguments, "regression")
            await describe_snapshot(catalog, taken, columns)

        await in_one_transaction(catalog, work)
        results.append([(relation, label)])
    return results


async def reuse_snapshot(
    catalog: Catalog, arguments: SnapshotSettings, project_id: int
) -> tuple[Snapshot, list[classical.ColumnData]]:
    """§3.5 without a relation: the latest snapshot's settings; its copy when materialized, else the live
    relation (re-sampled)."""
    snapshot = await latest_snapshot(catalog, project_id)
    notify("INFO", f'Using existing snapshot from "pgml"."snapshot_{snapshot.id}"')
    snapshot.preprocess = {**snapshot.preprocess, **arguments.preprocess}
    if snapshot.materialized:
        table_sql, columns = await _columns(catalog, f"pgml.snapshot_{snapshot.id}")
    else:
        table_sql, columns = await _columns(catalog, snapshot.relation_name)
    return snapshot, await _read(catalog, table_sql, columns)
