"""The SQL that takes the place of a pgml call, for each position and result shape.

A folded call becomes SQL over *value slots*: one typed value per slot (arrays for set-returning
results). Under the simple protocol a slot is written as a typed literal; under the extended protocol
as an extra parameter ``$n::type``, so one rewritten statement serves every Bind. A materialized call
becomes a lookup of its row's result in a jsonb object.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final, Protocol

from pgml_proxy.errors import FeatureNotSupported
from pgml_proxy.functions.signatures import Column, Signature
from pgml_proxy.sql import literals
from pgml_proxy.sql.model import CallSite, Clause
from pgml_proxy.wire.types import PgType


class Slots(Protocol):
    def value(self, type_name: str) -> str:
        """SQL for the next slot, a value of ``type_name``."""
        ...


class LiteralSlots:
    """Slots written as typed literals, from values computed already (simple protocol)."""

    def __init__(self, texts: list[str | None]) -> None:
        self._texts: Iterator[str | None] = iter(texts)

    def value(self, type_name: str) -> str:
        return literals.typed(next(self._texts), type_name)


class ParameterSlots:
    """Slots written as parameters numbered after the client's, typed (extended protocol)."""

    def __init__(self, first: int) -> None:
        self.next = first
        self.types: list[str] = []

    def value(self, type_name: str) -> str:
        self.types.append(type_name)
        self.next += 1
        return f"${self.next - 1}::{type_name}"


def text_of(pg_type: PgType, value: Any) -> str | None:
    return pg_type.input_text(value)


def array_text(texts: list[str | None]) -> str:
    """An array literal's text with every element quoted, so any element text survives."""
    quoted = (
        '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"' if t is not None else "NULL" for t in texts
    )
    return "{" + ",".join(quoted) + "}"


def is_from_item(call: CallSite) -> bool:
    """The call is itself an item of a FROM list (``FROM pgml.chunk(...) c``), not inside one's arguments."""
    level = call.level
    if (
        call.clause is not Clause.FROM
        or call.parent is not None
        or level is None
        or call.source_index is None
    ):
        return False
    source = level.sources[call.source_index]
    return source.span.start == call.span.start or (source.lateral and source.span.start < call.span.start)


def _field(call: CallSite, columns: tuple[Column, ...]) -> tuple[int, Column]:
    for position, column in enumerate(columns):
        if column.name == call.field:
            return position, column
    raise FeatureNotSupported(f'column "{call.field}" not found in data type record')


def _no_star(call: CallSite) -> None:
    if call.star:
        raise FeatureNotSupported(f"(pgml.{call.name}(…)).* of a result that is not a row is not supported")


def _ordinality(call: CallSite) -> str:
    """`` WITH ORDINALITY`` when the call said so (the replacement then numbers its rows itself)."""
    if not call.ordinality:
        return ""
    if call.ordinality_end is None:
        raise FeatureNotSupported(f"pgml.{call.name} WITH ORDINALITY written this way is not supported yet")
    return " WITH ORDINALITY"


def _scalar_rows(call: CallSite, source: str, pg_type: PgType) -> str:
    """The FROM item a set-returning call of scalars was: ``source`` yields their texts."""
    column = literals.identifier(call.from_alias or call.name)
    ordinality = _ordinality(call)
    numbered = ", ordinality" if ordinality else ""
    return (
        f"(SELECT pgml_value::{pg_type.name} AS {column}{numbered} "
        f"FROM {source}{ordinality} AS pgml_rows(pgml_value{numbered}))"
    )


def _table_rows(call: CallSite, source: str, columns: tuple[Column, ...]) -> str:
    """The FROM item a call returning a table was: ``source`` yields its rows."""
    ordinality = _ordinality(call)
    names = [literals.identifier(c.name) for c in columns] + (["ordinality"] if ordinality else [])
    return f"(SELECT * FROM {source}{ordinality} AS pgml_rows({', '.join(names)}))"


def call_sql(call: CallSite, signature: Signature, slots: Slots) -> str:
    """The SQL standing for a folded call's value where the call was."""
    returns = signature.returns
    if not signature.set_returning:
        assert isinstance(returns, PgType)
        if is_from_item(call):  # a scalar function in FROM is a one-row relation
            alias = "" if call.from_alias else f" AS {literals.identifier(call.name)}"
            column = literals.identifier(call.from_alias or call.name)
            return f"(SELECT {slots.value(returns.name)} AS {column}){alias}"
        return f"({slots.value(returns.name)})"
    if is_from_item(call):
        alias = "" if call.from_alias else f" AS {literals.identifier(call.name)}"
        if isinstance(returns, PgType):
            return _scalar_rows(call, f"unnest({slots.value('text[]')})", returns) + alias
        arrays = ", ".join(slots.value(f"{c.type.name}[]") for c in returns)
        return _table_rows(call, f"unnest({arrays})", returns) + alias
    if isinstance(returns, PgType):
        _no_star(call)
        return f"(unnest({slots.value('text[]')}))::{returns.name}"
    if call.field is not None:
        _, column = _field(call, returns)
        return f"(unnest({slots.value(f'{column.type.name}[]')}))"
    if call.star:  # one column each, their unnests in lockstep over arrays of one length
        return ", ".join(
            f"(unnest({slots.value(f'{c.type.name}[]')})) AS {literals.identifier(c.name)}" for c in returns
        )
    arrays = ", ".join(slots.value(f"{c.type.name}[]") for c in returns)
    names = ", ".join(literals.identifier(c.name) for c in returns)
    return f"(unnest(ARRAY(SELECT ROW({names}) FROM unnest({arrays}) AS pgml_rows({names}))))"


def slot_texts(call: CallSite, signature: Signature, result: Any) -> list[str | None]:
    """The values for :func:`call_sql`'s slots, in the same order, as text."""
    returns = signature.returns
    if not signature.set_returning:
        assert isinstance(returns, PgType)
        return [text_of(returns, result)]
    if isinstance(returns, PgType):
        return [array_text([text_of(returns, value) for value in result])]
    if not is_from_item(call) and call.field is not None:
        position, column = _field(call, returns)
        return [array_text([text_of(column.type, row[position]) for row in result])]
    return [array_text([text_of(c.type, row[i]) for row in result]) for i, c in enumerate(returns)]


def lookup_value(signature: Signature, result: Any) -> Any:
    """How one result travels in the lookup object: a one-element list holding its text (scalar), or
    the rows as JSON (set-returning); the list keeps SQL NULL apart from a missing key."""
    returns = signature.returns
    if not signature.set_returning:
        assert isinstance(returns, PgType)
        return [text_of(returns, result)]
    if isinstance(returns, PgType):
        return [text_of(returns, value) for value in result]
    return [
        {
            c.name: row[i] if isinstance(row[i], (int, str)) or row[i] is None else text_of(c.type, row[i])
            for i, c in enumerate(returns)
        }
        for row in result
    ]


_MARKER_ROOM = 1_000_000
"""Characters of the marker and the arguments a failed lookup's error shows at most."""
ARGUMENTS_CHANGED = "pgml-proxy: arguments changed since they were read, in "
"""What a failed lookup's error says: :mod:`upstream_side` turns that error into a retryable 40001."""


def _found(call: CallSite, mapping: str, key: str) -> str:
    """This row's result in ``mapping``, or a failing cast naming the arguments when it has none."""
    # No COALESCE or CASE, where a set-returning argument (a nested pgml.chunk) is not allowed: a missing
    # result makes the index of a one-element array the failing cast of the marker text.
    result = f"({mapping}) -> ({key})"
    missing = f"(({result}) IS NULL)::int * {_MARKER_ROOM}"
    check = f"(substr(E'{ARGUMENTS_CHANGED}pgml.{call.name}: ' || ({key}), 1, {missing}) || '0')::int"
    return f"(jsonb_build_array({result}) -> {check})"


def lookup_sql(call: CallSite, signature: Signature, mapping: str, key: str) -> str:
    """The expression that finds this row's result in ``mapping`` (SQL for the jsonb object of results
    keyed by argument tuple); a row whose arguments changed since they were fetched fails loudly
    (SQLSTATE 40001, naming them) instead of reading NULL."""
    found = _found(call, mapping, key)
    returns = signature.returns
    lateral = "" if call.lateral else "LATERAL "
    alias = "" if call.from_alias else f" AS {literals.identifier(call.name)}"
    if not signature.set_returning:
        assert isinstance(returns, PgType)
        value = f"(({found}) ->> 0)::{returns.name}"
        if is_from_item(call):
            return f"{lateral}(SELECT {value} AS {literals.identifier(call.from_alias or call.name)}){alias}"
        return value
    if is_from_item(call):
        if isinstance(returns, PgType):
            return lateral + _scalar_rows(call, f"jsonb_array_elements_text({found})", returns) + alias
        definitions = ", ".join(f"{literals.identifier(c.name)} {c.type.name}" for c in returns)
        return (
            lateral
            + _table_rows(call, f"ROWS FROM (jsonb_to_recordset({found}) AS ({definitions}))", returns)
            + alias
        )
    if isinstance(returns, PgType):
        _no_star(call)
        return f"(jsonb_array_elements_text({found}))::{returns.name}"
    if call.field is not None:
        _, column = _field(call, returns)
        return f"(jsonb_array_elements({found}) ->> {literals.quote(column.name)})::{column.type.name}"
    if call.star:  # one column each, their element sets in lockstep over the same array
        return ", ".join(
            f"(jsonb_array_elements({found}) ->> {literals.quote(c.name)})::{c.type.name} "
            f"AS {literals.identifier(c.name)}"
            for c in returns
        )
    # The whole row, as Postgres gives a composite result: a record per element.
    definitions = ", ".join(f"{literals.identifier(c.name)} {c.type.name}" for c in returns)
    names = ", ".join(literals.identifier(c.name) for c in returns)
    return (
        f"(unnest(ARRAY(SELECT ROW({names}) FROM jsonb_to_recordset({found}) AS pgml_rows({definitions}))))"
    )


# -- whole rows of a nested select list, from a FROM item ----------------------------------------------

ROWS_ALIAS_PREFIX: Final = "pgml_proxy_rows_"


def rows_from_item(call: CallSite, signature: Signature, calls: Sequence[CallSite]) -> bool:
    """Whether a call's whole-row result comes from a function added to its level's FROM list, the column
    naming that item, rather than from a select-list ``unnest`` of anonymous records.

    Postgres resolves ``(column).field`` at an outer level (``WITH new AS (SELECT pgml.chunk(…) AS c …)
    SELECT (c).chunk_index FROM new``, as the PostgresML SDK writes it) only when the column's record type
    is known while parsing: a FROM item's column list is, an anonymous record is not ("record type has not
    been registered"). Only a nested level needs it (a top-level column goes to the client as it is), and
    only where a lateral function scan means what the select-list function meant: one set-returning pgml
    call as a whole column, no grouping or aggregate around it.
    """
    level = call.level
    return (
        signature.set_returning
        and isinstance(signature.returns, tuple)
        and call.in_subquery
        and call.clause is Clause.TARGET
        and call.target_index is not None
        and call.parent is None
        and call.field is None
        and not call.star
        and not call.in_aggregate
        and not any(a.aggregate for a in call.args)
        and level is not None
        and level.kind == "select"
        and level.group_by is None
        and (level.from_clause is not None or level.targets_end is not None)
        and not any(
            other is not call
            and other.level is level
            and other.clause is Clause.TARGET
            and other.set_returning
            for other in calls
        )
    )


def rows_alias(index: int) -> str:
    """The FROM item's name for the call at ``index`` of its statement (what the select list refers to)."""
    return literals.identifier(f"{ROWS_ALIAS_PREFIX}{index}")


def rows_call_item(signature: Signature, slots: Slots, alias: str) -> str:
    """The FROM item of a folded call's rows: its columns' arrays (the slots of :func:`slot_texts`)."""
    assert isinstance(signature.returns, tuple)
    arrays = ", ".join(slots.value(f"{c.type.name}[]") for c in signature.returns)
    names = ", ".join(literals.identifier(c.name) for c in signature.returns)
    return f"unnest({arrays}) AS {alias}({names})"


def rows_lookup_item(call: CallSite, signature: Signature, mapping: str, key: str, alias: str) -> str:
    """The FROM item of a materialized call's rows: this row's result in ``mapping`` (as :func:`lookup_sql`)."""
    assert isinstance(signature.returns, tuple)
    definitions = ", ".join(f"{literals.identifier(c.name)} {c.type.name}" for c in signature.returns)
    return f"LATERAL jsonb_to_recordset({_found(call, mapping, key)}) AS {alias}({definitions})"


def from_item_edit(call: CallSite, item: str) -> tuple[int, int, str]:
    """``item`` appended to the FROM list of the call's level (a FROM clause of its own where it has none)."""
    level = call.level
    assert level is not None
    if level.from_clause is not None:
        return level.from_clause.end, level.from_clause.end, f", {item}"
    assert level.targets_end is not None
    return level.targets_end, level.targets_end, f" FROM {item}"
