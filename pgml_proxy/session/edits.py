"""Where a pgml call's replacement goes in the statement text, and which rows its arguments come from.

Pure text work over the analysis (no I/O): the spans a replacement covers (the call, a field access, a
``.*`` expansion, a ``WITH ORDINALITY``), the column name a select-list entry keeps, the SQL key that
names a row's argument tuple, the hidden columns of a spliced call, and the ``SELECT DISTINCT`` that
reads a materialized call's argument tuples.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pglast import parser

from pgml_proxy.errors import FeatureNotSupported
from pgml_proxy.session.splice import SplicedCall
from pgml_proxy.sql import literals
from pgml_proxy.sql.model import CallSite, Clause, CommonTable, QueryLevel, Span
from pgml_proxy.sql.text import splice


def row_dependent(call: CallSite) -> bool:
    """The call's value may differ from row to row: its arguments read the rows of its query (or, in
    RETURNING, the rows the statement writes)."""
    return not call.constant and (reads_rows(call) or call.clause is Clause.RETURNING)


def reads_rows(call: CallSite) -> bool:
    """The call's query level, or one it is nested in, has rows to read (a FROM clause): its arguments may
    come from them, directly or as a correlated subquery's outer references. Without any, a subquery
    argument is just an expression that the upstream evaluates once."""
    return rows_level(call) is not None


def _has_rows(level: QueryLevel) -> bool:
    return level.from_clause is not None or bool(level.sources)


def rows_level(call: CallSite) -> QueryLevel | None:
    """The nearest query level, from the call's own outwards, whose rows the call can read."""
    level = call.level
    while level is not None and not _has_rows(level):
        # A WITH query cannot read the rows of the level that holds the WITH, only of those around it.
        level = level.parent.parent if level.in_with and level.parent is not None else level.parent
    return level


def key_of(texts: Iterable[str]) -> str:
    """The SQL naming a row's argument tuple: the same text in the fetch and in the lookup."""
    return "jsonb_build_array(" + ", ".join(f"({text})" for text in texts) + ")::text"


def argument_key(call: CallSite, dependent: Sequence[int], sql: str) -> str:
    return key_of(call.args[i].span.text(sql) for i in dependent)


def splice_edits(
    sql: str, planned: SplicedCall, texts: Sequence[str]
) -> tuple[tuple[int, int, str], tuple[int, int, str]]:
    """The placeholder column in place of the call's select-list entry, and the hidden argument columns
    (``texts``: the arguments' SQL) appended to the select list."""
    call = planned.site
    target, expression, level = call.target_span, call.expr_span, call.level
    assert target is not None and expression is not None and level is not None
    assert level.targets_end is not None
    # The placeholder keeps the casts as written, so the upstream describes the column's final type.
    placeholder = (
        sql[target.start : call.span.start]
        + f"NULL::{planned.returns.name}"
        + sql[call.span.end : expression.end]
        + f" AS {literals.identifier(planned.placeholder)}"
    )
    hidden = "".join(
        f", ({texts[i]}) AS {literals.identifier(planned.hidden_name(i))}" for i in planned.dependent
    )
    end = level.targets_end
    return (target.start, target.end, placeholder), (end, end, hidden)


def replacement_edit(call: CallSite, replacement: str) -> tuple[int, int, str]:
    """Where ``replacement`` goes: the call, or with ``(call).field`` the whole field access."""
    if call.star:
        # (pgml.f(...)).*: the replacement is the columns themselves, so it must be a select-list entry.
        if call.expr_span is None or call.expr_span != call.target_span:
            raise FeatureNotSupported(
                f"(pgml.{call.name}(…)).* is supported only as a whole select-list entry"
            )
        return call.expr_span.start, call.expr_span.end, replacement
    if call.field is not None and call.expr_span is not None:
        # (pgml.chunk(...)).chunk: the field's values replace the whole access; casts stay applied.
        casts = "".join(f"::{cast}" for cast in call.casts)
        return call.expr_span.start, call.expr_span.end, f"({replacement}){casts}"
    # WITH ORDINALITY is part of the replacement, which numbers the rows itself.
    return call.span.start, call.ordinality_end or call.span.end, replacement


def call_edits(call: CallSite, replacement: str) -> list[tuple[int, int, str]]:
    """Put ``replacement`` where the call was, keeping the column's name and any field access."""
    edits = [replacement_edit(call, replacement)]
    if (
        call.target_index is not None
        and call.alias is None
        and call.column_name
        and call.target_span
        and not call.star
    ):
        # The column kept the function's name; a replacement would be named after its own parts.
        end = call.target_span.end
        edits.append((end, end, f" AS {literals.identifier(call.column_name)}"))
    return edits


def with_replacements(sql: str, span: Span, calls: Sequence[CallSite], done: dict[int, str]) -> str:
    """The text of ``span`` with the pgml calls inside it that are already evaluated replaced."""
    inside = [i for i in done if span.start <= calls[i].span.start and calls[i].span.end <= span.end]
    outermost = [
        i for i in inside if not any(j != i and encloses(calls[j].span, calls[i].span) for j in inside)
    ]
    edits = []
    for i in outermost:
        start, end, text = replacement_edit(calls[i], done[i])
        edits.append((start - span.start, end - span.start, text))
    return splice(sql[span.start : span.end], sorted(edits))


def encloses(outer: Span, inner: Span) -> bool:
    return outer.start <= inner.start and inner.end <= outer.end and outer != inner


def fetch_query(
    sql: str, call: CallSite, calls: Sequence[CallSite], done: dict[int, str], key: str, types: str
) -> str:
    """``SELECT DISTINCT <key>, <types> FROM <the call's rows>``: a superset of the rows is always safe."""
    level = rows_level(call)
    assert level is not None
    if level is not call.level:
        # A correlated subquery without rows of its own: its outer references range over the rows of the
        # enclosing level, less the FROM item the subquery itself is (a LATERAL one).
        inside = [n for n, source in enumerate(level.sources) if encloses(source.span, call.span)]
        if inside or level.from_clause is None or level.kind != "select":
            items = [
                with_replacements(sql, source.span, calls, done)
                for n, source in enumerate(level.sources)
                if n not in inside
            ]
            where = None  # it may name the excluded item
        else:
            items = [with_replacements(sql, level.from_clause, calls, done)]
            where = level.where
    elif call.clause is Clause.FROM or level.from_clause is None or level.kind != "select":
        items = [
            with_replacements(sql, source.span, calls, done)
            for n, source in enumerate(level.sources)
            if n != call.source_index and not (call.clause is Clause.FROM and source.has_call)
        ]
        where = None if call.clause is Clause.FROM else level.where
    else:
        items = [with_replacements(sql, level.from_clause, calls, done)]
        where = level.where
    if not items:
        raise FeatureNotSupported(f"pgml.{call.name}: cannot tell which rows its arguments come from")
    condition = f" WHERE {where.text(sql)}" if where is not None else ""
    columns = f"{key}, {types}" if types else key
    body = f"SELECT DISTINCT {columns} FROM {', '.join(items)}{condition}"
    return visible_with(sql, call, calls, done, body) + body


def visible_with(sql: str, call: CallSite, calls: Sequence[CallSite], done: dict[int, str], body: str) -> str:
    """The ``WITH`` that ``body`` (SQL the proxy runs on its own to read the call's arguments) needs: the WITH
    queries visible at the call that it names, and those these name in turn. Visible are the call's own
    level's and every enclosing level's, up to the call (a call in a WITH query reads its earlier siblings,
    as the PostgresML SDK's chunking and query embeddings do); of one name the innermost wins. A
    data-modifying one would run a second time: reading it is not supported."""
    visible: dict[str, tuple[CommonTable, bool]] = {}
    level = call.level
    while level is not None:
        for cte in level.ctes:
            if cte.span.end <= call.span.start:  # not a later sibling, nor the query holding the call
                visible.setdefault(cte.name, (cte, level.recursive))
        level = level.parent
    if not visible:
        return ""
    needed: dict[str, tuple[CommonTable, bool]] = {}
    pending = _names(body, visible)
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed[name] = visible[name]
        cte = visible[name][0]
        if cte.modifying:
            raise FeatureNotSupported(
                f"pgml.{call.name} with arguments read from the data-modifying WITH query "
                f'"{cte.name}" is not supported',
                hint="Write the rows in a statement of their own, then call the function over them.",
            )
        pending |= _names(cte.span.text(sql), visible)
    if not needed:
        return ""
    ordered = sorted(needed.values(), key=lambda item: item[0].span.start)
    texts = ", ".join(with_replacements(sql, cte.span, calls, done) for cte, _ in ordered)
    return f"WITH {'RECURSIVE ' if any(r for _, r in ordered) else ''}{texts} "


def _names(text: str, names: Iterable[str]) -> set[str]:
    """Which of ``names`` are identifier (or non-reserved keyword) tokens of ``text``, as Postgres folds them."""
    wanted = set(names)
    found: set[str] = set()
    for token in parser.scan(text):
        if token.name == "IDENT" or token.kind in ("UNRESERVED_KEYWORD", "COL_NAME_KEYWORD"):
            word = text[token.start : token.end + 1]
            folded = word[1:-1].replace('""', '"') if word.startswith('"') else word.lower()
            if folded in wanted:
                found.add(folded)
    return found
