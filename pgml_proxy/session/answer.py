"""Answer (DESIGN §4): a statement made only of pgml calls with constant arguments, answered by the proxy.

``SELECT pgml.version()``, ``SELECT pgml.embed('m', 'hi') AS e`` or ``SELECT chunk FROM pgml.chunk(…)``
never reach the upstream: the proxy writes RowDescription, DataRows and CommandComplete itself, with the
names, types and row shapes Postgres would give them (set-returning calls in the select list run in
lockstep, shorter ones padded with NULL). A column the proxy cannot type by itself (a cast to another
type, an unknown column) makes :func:`answer` return None, and the statement is folded instead, so the
upstream types it and reports its errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pgml_proxy.functions.signatures import Column, Signature
from pgml_proxy.sql.model import AnswerColumn, CallSite
from pgml_proxy.wire.framing import cstring, message
from pgml_proxy.wire.rows import COMMAND_COMPLETE, Field, data_row, row_description
from pgml_proxy.wire.types import RECORD, TEXT_FORMAT, PgType, keeps_type

Computed = Mapping[int, tuple[Signature, Any]]
"""Results of the statement's outermost calls, by call index: the overload and its value."""


def answer(
    columns: Sequence[AnswerColumn], calls: Sequence[CallSite], results: Computed, extra_float_digits: int = 1
) -> bytes | None:
    """The statement's whole answer up to CommandComplete, or None when the upstream must type it."""
    shaped = shape(columns, calls, results)
    if shaped is None:
        return None
    fields, rows = shaped
    out = [row_description(fields)]
    out += [
        data_row([t.encode(v, TEXT_FORMAT, extra_float_digits) for t, v in zip(types, row, strict=True)])
        for types, row in rows
    ]
    out.append(message(COMMAND_COMPLETE, cstring(f"SELECT {len(rows)}")))
    return b"".join(out)


Rows = list[tuple[list[PgType], list[Any]]]


def shape(
    columns: Sequence[AnswerColumn], calls: Sequence[CallSite], results: Computed
) -> tuple[list[Field], Rows] | None:
    """The statement's columns (text format) and rows, or None when the upstream must type them."""
    if columns[0].kind != "call":
        return _from_function(columns, calls, results)
    return _select_list(columns, results)


def _field(name: str, pg_type: PgType) -> Field:
    return Field(name, 0, 0, pg_type.oid, pg_type.size, -1, TEXT_FORMAT)


def _select_list(columns: Sequence[AnswerColumn], results: Computed) -> tuple[list[Field], Rows] | None:
    """``SELECT pgml.f(…), …`` without FROM: one value per call, set-returning calls in lockstep."""
    types: list[PgType] = []
    values: list[list[Any]] = []  # per column, its values (one for a scalar call)
    repeat: list[bool] = []
    for column in columns:
        signature, result = results[column.call]
        returns = signature.returns
        items = list(result) if signature.set_returning else [result]
        if isinstance(returns, PgType):
            pg_type = returns
        elif column.field is not None:
            position = next((i for i, c in enumerate(returns) if c.name == column.field), None)
            if position is None:
                return None
            pg_type = returns[position].type
            items = [None if row is None else row[position] for row in items]
        else:  # a whole composite: Postgres writes it as a record
            pg_type = RECORD
            items = [None if row is None else _record(returns, row) for row in items]
        if not keeps_type(pg_type, column.casts):
            return None
        types.append(pg_type)
        values.append(items)
        repeat.append(not signature.set_returning)
    fields = [_field(c.name or "?column?", t) for c, t in zip(columns, types, strict=True)]
    count = max((len(v) for v, r in zip(values, repeat, strict=True) if not r), default=1)
    rows: Rows = []
    for n in range(count):
        row = [v[0] if r else (v[n] if n < len(v) else None) for v, r in zip(values, repeat, strict=True)]
        rows.append((types, row))
    return fields, rows


def _from_function(
    columns: Sequence[AnswerColumn], calls: Sequence[CallSite], results: Computed
) -> tuple[list[Field], Rows] | None:
    """``SELECT cols FROM pgml.f(…) [AS a]``: the function's rows, the columns picked by name."""
    signature, result = results[columns[0].call]
    call = calls[columns[0].call]
    returns = signature.returns
    rows_in = list(result) if signature.set_returning else [result]
    if isinstance(returns, PgType):  # one column, named after the alias or the function
        available: list[Column] = [Column(call.from_alias or call.name, returns)]
        rows_in = [(value,) for value in rows_in]
    else:
        available = list(returns)
    if len(call.column_aliases) > len(available):
        return None  # the upstream reports it
    names = [*call.column_aliases, *(c.name for c in available[len(call.column_aliases) :])]
    available = [Column(name, c.type) for name, c in zip(names, available, strict=True)]
    picked: list[tuple[str, int]] = []
    for column in columns:
        if column.kind == "star":
            picked += [(c.name, i) for i, c in enumerate(available)]
            continue
        position = next((i for i, c in enumerate(available) if c.name == column.column), None)
        if position is None or not keeps_type(available[position].type, column.casts):
            return None
        picked.append((column.name or available[position].name, position))
    types = [available[i].type for _, i in picked]
    fields = [_field(name, t) for (name, _), t in zip(picked, types, strict=True)]
    return fields, [(types, [row[i] for _, i in picked]) for row in rows_in]


def _record(columns: Sequence[Column], row: Sequence[Any]) -> list[tuple[PgType, Any]]:
    return [(c.type, value) for c, value in zip(columns, row, strict=True)]
