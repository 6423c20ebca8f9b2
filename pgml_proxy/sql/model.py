"""The values an analysis hands to the session: plain frozen dataclasses, no pglast nodes.

Every offset is a *character* offset into the Python ``str`` the caller passed to ``analyze`` (pglast
converts libpg_query's byte offsets; the scanner reports characters too), and every span is half-open
``[start, end)``, so ``sql[span.start:span.end]`` is the text as the client wrote it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal as Lit


class Strategy(enum.Enum):
    """How the session evaluates one pgml call (DESIGN §4)."""

    #: The statement is nothing but pgml calls with constant arguments: the proxy writes the whole response.
    ANSWER = "answer"
    #: Constant arguments in a statement that also needs the upstream: evaluate once, bind the result.
    FOLD = "fold"
    #: Row-dependent scalar call that is a column of a plain top-level SELECT (or of a top-level INSERT,
    #: UPDATE or DELETE's RETURNING list): computed per row as the rows go to the client.
    SPLICE = "splice"
    #: Any other row-dependent position: fetch distinct arguments, compute, ship back, rewrite to look up.
    MATERIALIZE = "materialize"
    #: The call would run inside PostgreSQL (view, function body, trigger, default, …): answer 0A000.
    UNREACHABLE = "unreachable"


class Clause(enum.StrEnum):
    """Where a call sits inside its query level; the rewriter picks its replacement by this."""

    TARGET = "target"  # select list
    FROM = "from"  # a function in FROM (set-returning position), directly or inside a FROM item's expression
    JOIN_ON = "join_on"
    WHERE = "where"
    GROUP_BY = "group_by"
    HAVING = "having"
    WINDOW = "window"
    ORDER_BY = "order_by"
    DISTINCT_ON = "distinct_on"
    LIMIT = "limit"  # LIMIT / OFFSET / FETCH
    VALUES = "values"  # VALUES lists (also INSERT … VALUES)
    SET = "set"  # UPDATE … SET, ON CONFLICT DO UPDATE SET, MERGE … UPDATE SET
    RETURNING = "returning"
    ON_CONFLICT = "on_conflict"  # ON CONFLICT … WHERE
    MERGE = "merge"  # MERGE join condition and WHEN conditions
    OTHER = "other"  # EXECUTE parameters, CALL arguments, DDL expressions


@dataclass(frozen=True, slots=True)
class Span:
    """Half-open character range ``[start, end)`` in the analysed string."""

    start: int
    end: int

    def text(self, sql: str) -> str:
        return sql[self.start : self.end]


#: A literal's value: ``str`` for string literals (escapes already decoded), ``int``, ``Decimal`` for
#: numeric literals (exact), ``bool``, ``None`` for NULL, and a tuple for ``ARRAY[...]`` of literals.
LiteralValue = str | int | Decimal | bool | None | tuple["LiteralValue", ...]


@dataclass(frozen=True, slots=True)
class Literal:
    """An argument written as a literal, so the session can evaluate it without a round trip."""

    value: LiteralValue
    #: Explicit cast written on the literal (``'{}'::jsonb`` → ``jsonb``), as pglast deparses the type.
    cast: str | None = None


@dataclass(frozen=True, slots=True)
class Argument:
    """One argument of a pgml call."""

    #: Name for named notation (``inputs => …``; quoted names keep their case, ``"limit"`` → ``limit``).
    name: str | None
    #: The value expression, without ``name =>``.
    span: Span
    #: The whole argument as written, including ``name =>`` or ``VARIADIC``.
    full_span: Span
    #: Same value for every row of the statement: literals, ``$n``, casts, operators and non-aggregate,
    #: non-volatile function calls (pgml calls included, which are evaluated first) — no column
    #: references, no subqueries, no aggregates or window functions.
    constant: bool
    #: ``$n`` parameters referenced anywhere in the argument, ascending.
    params: tuple[int, ...] = ()
    #: The argument is exactly ``$n`` (possibly cast): its number.
    param: int | None = None
    #: Contains an aggregate or window function of the enclosing query (``array_agg(body)``).
    aggregate: bool = False
    #: Calls a function known to be volatile (``random()``, ``nextval``, …); such arguments are not constant.
    volatile: bool = False
    #: The value is an ``ARRAY[...]`` constructor (possibly cast).
    array_constructor: bool = False
    #: The value is a ``ROW(...)`` or ``(a, b, …)`` constructor (possibly cast).
    row_constructor: bool = False
    #: Outermost explicit cast on the value (``$1::text[]`` → ``text[]``).
    cast: str | None = None
    #: Set when the value is a literal (or ``ARRAY[...]`` of literals), possibly cast.
    literal: Literal | None = None

    def is_array(self) -> bool | None:
        """Whether the value is visibly an array (``ARRAY[…]``, an array cast): True, False, or None = unknown.

        The analyzer cannot know column or untyped parameter types; this is the hint the caller uses to
        pick an overload such as ``pgml.embed(text, text)`` versus ``pgml.embed(text, text[])`` (SETOF).
        """
        if self.cast is not None:
            return self.cast.endswith("]") or self.cast.upper().startswith("ARRAY")
        if self.array_constructor:
            return True
        if self.literal is not None:
            return isinstance(self.literal.value, tuple)
        return None


@dataclass(frozen=True, slots=True)
class Source:
    """One leaf item of a FROM list (joins are split into their sides; ON/USING conditions are dropped)."""

    span: Span
    lateral: bool = False
    #: A pgml call (implemented) sits inside this item.
    has_call: bool = False


@dataclass(frozen=True, slots=True)
class CommonTable:
    """One query of a level's ``WITH`` list."""

    name: str
    #: ``name [(columns)] AS [[NOT] MATERIALIZED] (query)``, without the separating comma.
    span: Span
    #: Its query is an INSERT, UPDATE, DELETE or MERGE: it runs whenever its statement runs.
    modifying: bool = False


LevelKind = Lit["select", "values", "setop", "insert", "update", "delete", "merge"]


@dataclass(frozen=True, slots=True)
class QueryLevel:
    """The query (SELECT, UPDATE, …) a call is evaluated in: what a materialize step needs to fetch the
    distinct argument tuples with ``SELECT DISTINCT <args> FROM <sources> [WHERE <where>]``.

    A superset of the argument tuples is always safe to fetch (unused results are just work), so a
    cross join of ``sources`` without ``where`` is a valid fallback; ``from_clause`` and ``where`` give the
    exact rows when the call is not itself inside the FROM clause.
    """

    kind: LevelKind
    span: Span | None
    #: The whole FROM clause text (SELECT), or UPDATE … FROM / DELETE … USING list; None when absent.
    from_clause: Span | None = None
    #: A pgml call sits somewhere in ``from_clause`` (in an item or a JOIN condition).
    from_has_call: bool = False
    #: Leaf FROM items in order; for UPDATE/DELETE/MERGE the target relation comes first.
    sources: tuple[Source, ...] = ()
    #: WHERE condition text (without the keyword), None when absent or when it contains a pgml call.
    where: Span | None = None
    where_has_call: bool = False
    group_by: Span | None = None
    #: This level's own ``WITH …`` text (up to the main keyword), which its FROM may refer to.
    with_clause: Span | None = None
    #: The queries of that ``WITH``, in order, and whether it says RECURSIVE.
    ctes: tuple[CommonTable, ...] = ()
    recursive: bool = False
    #: MERGE's ON condition.
    join_condition: Span | None = None
    #: Where the select list (or INSERT/UPDATE/DELETE's RETURNING list) ends, for columns appended to it.
    targets_end: int | None = None
    #: The level is the query of one of its parent's WITH queries (it may read the parent's earlier WITH
    #: queries, never the parent's rows).
    in_with: bool = False
    #: The enclosing level (correlated subquery, LATERAL subquery, CTE body …); None at the top.
    parent: QueryLevel | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class CallSite:
    """One call of a function the proxy implements."""

    #: Function name, lower-case, without schema.
    name: str
    #: ``pgml.embed(...)`` exactly: from the schema name to the closing parenthesis.
    span: Span
    args: tuple[Argument, ...]
    strategy: Strategy
    #: Why: for UNREACHABLE the sentence the session raises 0A000 with; for MATERIALIZE why it cannot splice.
    reason: str | None
    clause: Clause
    #: Every argument is constant (after nested pgml calls are folded).
    constant: bool
    #: The caller's set-returning predicate said yes for this call.
    set_returning: bool = False
    #: Casts applied directly to the call, innermost first (``::vector(384)`` → ``("vector(384)",)``).
    casts: tuple[str, ...] = ()
    #: ``(pgml.chunk(...)).chunk`` → ``chunk``.
    field: str | None = None
    #: ``(pgml.chunk(...)).*``: every column of the result.
    star: bool = False
    #: The call together with the casts and field access applied directly to it.
    expr_span: Span | None = None
    #: Position in the select list (or RETURNING list) when the call is that column's whole value
    #: (modulo casts and field access).
    target_index: int | None = None
    #: The whole select-list entry, alias included (``pgml.embed(…)::vector AS e``).
    target_span: Span | None = None
    alias: str | None = None
    #: Output column name Postgres gives it: the alias, else the field name, else the function name.
    column_name: str | None = None
    #: Index in ``StatementAnalysis.calls`` of the implemented call this one is an argument of.
    parent: int | None = None
    #: Nested inside an aggregate or window function's arguments (``pgml.sum(pgml.embed(…))``).
    in_aggregate: bool = False
    #: In a subquery, CTE or set operation rather than the statement's own top level.
    in_subquery: bool = False
    #: FROM-position calls: table alias, column aliases, WITH ORDINALITY, LATERAL.
    from_alias: str | None = None
    column_aliases: tuple[str, ...] = ()
    ordinality: bool = False
    #: With ORDINALITY: where the ``WITH ORDINALITY`` after the call ends (the replacement covers it).
    ordinality_end: int | None = None
    lateral: bool = False
    #: Index into ``level.sources`` of the FROM item holding the call, when it is inside the FROM clause.
    source_index: int | None = None
    level: QueryLevel | None = None
    variadic: bool = False

    @property
    def cast(self) -> str | None:
        """The type the call's value ends up as in the statement (outermost cast), if any."""
        return self.casts[-1] if self.casts else None


@dataclass(frozen=True, slots=True)
class AnswerColumn:
    """One select-list entry of an ANSWER statement."""

    #: ``call``: the entry is the call itself (``SELECT pgml.version()``); ``column``: a column of the
    #: FROM function (``SELECT chunk FROM pgml.chunk(…)``); ``star``: ``*`` or ``alias.*``.
    kind: Lit["call", "column", "star"]
    #: Index in ``StatementAnalysis.calls``.
    call: int
    #: For ``column``: the referenced column name.
    column: str | None = None
    #: The output column name, when Postgres' rule gives one without knowing the function's columns.
    name: str | None = None
    casts: tuple[str, ...] = ()
    field: str | None = None


@dataclass(frozen=True, slots=True)
class SessionCommand:
    """SQL-level statements that change the session's prepared-statement state."""

    kind: Lit["prepare", "execute", "deallocate", "discard"]
    #: Statement name; None for ``DEALLOCATE ALL`` / ``DISCARD ALL``.
    name: str | None
    #: PREPARE's declared parameter types.
    arg_types: tuple[str, ...] = ()
    #: EXECUTE's parameter expressions.
    args: tuple[Span, ...] = ()


@dataclass(frozen=True, slots=True)
class StatementAnalysis:
    """One statement of a (possibly multi-statement) query string."""

    #: The statement text, without the terminating semicolon.
    span: Span
    #: False when pglast could not parse it: relay it untouched and let the upstream report the error.
    parsed: bool
    #: pglast's node name of the statement (``SelectStmt``, ``ExplainStmt``, …); None when unparsed.
    kind: str | None = None
    error: str | None = None
    #: Calls in evaluation order: nested calls before the call they are arguments of.
    calls: tuple[CallSite, ...] = ()
    #: Summary: None when there is no implemented call; UNREACHABLE when any call is; ANSWER when the
    #: statement is answered; otherwise the most demanding of MATERIALIZE > SPLICE > FOLD.
    strategy: Strategy | None = None
    reason: str | None = None
    #: For ANSWER statements: the select list.
    answer: tuple[AnswerColumn, ...] = ()
    #: EXPLAIN, COPY (query) TO, PREPARE, DECLARE CURSOR, CREATE TABLE AS: the analysed inner statement.
    inner: Span | None = None
    explain: bool = False
    copy: bool = False
    cursor: str | None = None
    session: SessionCommand | None = None
    #: Implemented functions named in a function or DO body (not located: the body is a string).
    body_calls: tuple[str, ...] = ()
