"""Finding and classifying the pgml calls of a statement (DESIGN §4).

One walk over pglast's raw parse tree records, for every call of a function the proxy implements, the
context it sits in (query level, clause, enclosing calls and aggregates, casts and alias, a DDL that
would store it). Spans come from the scanner's tokens (``tokens.py``), never from deparsing, so the
rewriter can splice text into the statement as the client wrote it. The strategy rules are listed on
``analyze``; they are pure functions of the tree, so the session can cache the result per statement text.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from itertools import pairwise

import pglast
from pglast import ast, enums, parser
from pglast.stream import RawStream

from pgml_proxy.sql.bodies import calls_in_body
from pgml_proxy.sql.model import (
    AnswerColumn,
    Argument,
    CallSite,
    Clause,
    CommonTable,
    LevelKind,
    Literal,
    LiteralValue,
    QueryLevel,
    SessionCommand,
    Source,
    Span,
    StatementAnalysis,
    Strategy,
)
from pgml_proxy.sql.tokens import Tokens

#: Decides whether a call of an implemented function is set-returning, from its name and arguments
#: (``pgml.embed`` is SETOF only with a ``text[]`` second argument; see ``Argument.is_array``).
SetReturning = Callable[[str, Sequence[Argument]], bool]

# Built-in aggregates (and window-only functions) the raw tree cannot tell from ordinary functions.
# A user-defined aggregate is not recognised; FILTER, WITHIN GROUP, ORDER BY in the call, DISTINCT,
# ``*`` and OVER are recognised whatever the name.
_AGGREGATES = frozenset(
    {
        "array_agg",
        "avg",
        "bit_and",
        "bit_or",
        "bit_xor",
        "bool_and",
        "bool_or",
        "count",
        "every",
        "json_agg",
        "json_agg_strict",
        "jsonb_agg",
        "jsonb_agg_strict",
        "json_object_agg",
        "json_object_agg_strict",
        "json_object_agg_unique",
        "json_object_agg_unique_strict",
        "jsonb_object_agg",
        "jsonb_object_agg_strict",
        "jsonb_object_agg_unique",
        "jsonb_object_agg_unique_strict",
        "max",
        "min",
        "range_agg",
        "range_intersect_agg",
        "string_agg",
        "sum",
        "xmlagg",
        "any_value",
        "corr",
        "covar_pop",
        "covar_samp",
        "regr_avgx",
        "regr_avgy",
        "regr_count",
        "regr_intercept",
        "regr_r2",
        "regr_slope",
        "regr_sxx",
        "regr_sxy",
        "regr_syy",
        "stddev",
        "stddev_pop",
        "stddev_samp",
        "variance",
        "var_pop",
        "var_samp",
        "mode",
        "percentile_cont",
        "percentile_disc",
        "rank",
        "dense_rank",
        "percent_rank",
        "cume_dist",
        "row_number",
        "ntile",
        "lag",
        "lead",
        "first_value",
        "last_value",
        "nth_value",
    }
)
# The vector aggregates of the pgml schema (contract §2.6).
_PGML_AGGREGATES = frozenset({"sum", "max", "min", "max_abs", "min_abs"})
# Volatile built-ins: an argument calling one differs per row, so it is never constant.
_VOLATILE = frozenset(
    {
        "random",
        "random_normal",
        "setseed",
        "nextval",
        "setval",
        "currval",
        "lastval",
        "clock_timestamp",
        "timeofday",
        "statement_timestamp",
        "gen_random_uuid",
        "uuidv4",
        "uuidv7",
        "uuid_generate_v1",
        "uuid_generate_v1mc",
        "uuid_generate_v4",
        "txid_current",
        "pg_sleep",
    }
)

_UNREACHABLE = {
    "view": ("in a view definition", "each time the view is read"),
    "matview": ("in a materialized view", "whenever the view is refreshed"),
    "function": ("in a function or procedure", "each time it is called"),
    "do": ("in a DO block", "as procedural code"),
    "trigger": ("in a trigger definition", "on every change that fires the trigger"),
    "generated": ("in a generated column", "on every write to the table"),
    "default": ("in a column default", "on every insert that leaves the column out"),
    "check": ("in a check constraint", "on every write to the table"),
    "index": ("in an index definition", "on every write to the table"),
    "rule": ("in a rule", "whenever the rule fires"),
    "policy": ("in a row security policy", "for every row the policy checks"),
    "alter": ("in ALTER TABLE", "while the table is rewritten"),
    "copy_where": ("in a COPY FROM filter", "as the rows arrive"),
    "domain": ("in a domain definition", "for every value of the domain"),
    "ddl": ("in this statement", "as part of it"),
}

_CONSTRAINT_REASON = {
    enums.ConstrType.CONSTR_DEFAULT: "default",
    enums.ConstrType.CONSTR_GENERATED: "generated",
    enums.ConstrType.CONSTR_CHECK: "check",
    enums.ConstrType.CONSTR_EXCLUSION: "index",
}

_ALTER_REASON = {
    enums.AlterTableType.AT_ColumnDefault: "default",
    enums.AlterTableType.AT_SetExpression: "generated",
}

_STATEMENT_REASON = {
    "ViewStmt": "view",
    "CreateTrigStmt": "trigger",
    "IndexStmt": "index",
    "RuleStmt": "rule",
    "CreatePolicyStmt": "policy",
    "AlterPolicyStmt": "policy",
    "CreateStmt": "ddl",
    "AlterTableStmt": "alter",
    "CreateDomainStmt": "domain",
    "AlterDomainStmt": "domain",
}

# Keywords that end a clause of a SELECT on its own bracket depth.
_SELECT_CLAUSES = {
    "INTO",
    "FROM",
    "WHERE",
    "GROUP_P",
    "HAVING",
    "WINDOW",
    "ORDER",
    "LIMIT",
    "OFFSET",
    "FETCH",
    "FOR",
    "UNION",
    "INTERSECT",
    "EXCEPT",
    "RETURNING",
}
_DML_KEYWORD = {"insert": "INSERT", "update": "UPDATE", "delete": "DELETE_P", "merge": "MERGE"}
_LEVEL_CLAUSES = {
    "select": _SELECT_CLAUSES,
    "insert": {"RETURNING"},
    "update": {"SET", "FROM", "WHERE", "RETURNING"},
    "delete": {"USING", "WHERE", "RETURNING"},
    "merge": {"USING", "ON", "WHEN", "RETURNING"},
}
_JOIN_PREFIX = {"NATURAL", "CROSS", "LEFT", "RIGHT", "FULL", "INNER_P", "OUTER_P"}
_TYPE_CONTINUATION = {
    "PRECISION",
    "VARYING",
    "WITH",
    "WITHOUT",
    "TIME",
    "ZONE",
    "CHARACTER",
    "CHAR_P",
    "YEAR_P",
    "MONTH_P",
    "DAY_P",
    "HOUR_P",
    "MINUTE_P",
    "SECOND_P",
    "TO",
}


def analyze(
    sql: str,
    implemented: Collection[str],
    set_returning: SetReturning | Collection[str] = (),
) -> list[StatementAnalysis]:
    """Analyse every statement of ``sql``; calls of ``pgml.<name>`` with ``name`` in ``implemented`` are found.

    ``set_returning`` names the implemented functions that return sets, or is a predicate over a call's
    name and arguments (for overloads that differ: ``pgml.embed(text, text[])`` is SETOF). Calls of other
    ``pgml`` functions (vector helpers, aggregates, catalog tables) are upstream objects and left alone,
    but implemented calls in their arguments are found.

    Strategy of each call, first rule that applies:

    1. UNREACHABLE: the statement stores the expression for PostgreSQL to evaluate later or runs it as
       procedural code: CREATE VIEW / MATERIALIZED VIEW, function and procedure bodies and parameter
       defaults, DO, CREATE TRIGGER, CREATE RULE, row security policies, CREATE INDEX, column defaults,
       generated columns, check constraints, domains, ALTER TABLE expressions, COPY FROM … WHERE, and any
       other utility statement (the reason names which).
    2. ANSWER: the statement (alone, under PREPARE, or under DECLARE CURSOR) is a SELECT with nothing but
       either (a) no FROM and a select list of implemented calls, each optionally cast or with a field
       selected, or (b) FROM exactly one implemented function (no ROWS FROM, WITH ORDINALITY or column
       definition list) and a select list of ``*`` and that function's columns, optionally cast; all
       arguments constant; and no WITH, INTO, DISTINCT, WHERE, GROUP BY, HAVING, WINDOW, ORDER BY,
       LIMIT, OFFSET or locking clause (those make it FOLD, and the upstream applies them).
    3. FOLD: every argument is constant (``Argument.constant``).
    4. SPLICE: the call is the whole value (modulo casts) of a select-list entry of the statement's own
       top-level SELECT (also under EXPLAIN or PREPARE), is not set-returning, not an argument of
       another implemented call, has no row-dependent implemented call in its arguments, and that
       SELECT has no set operation, INTO, DISTINCT, GROUP BY, HAVING, WINDOW, aggregate or window
       function, and no ORDER BY entry naming the column (by position or output name). A WITH clause,
       other ORDER BY entries, LIMIT and OFFSET are fine.
    5. MATERIALIZE: everything else (the reason says why it is not a splice). MATERIALIZE is always a
       correct fallback for SPLICE, and a set-returning FOLD can be materialized the same way.

    A statement pglast cannot parse is returned with ``parsed=False``; under the simple protocol the
    whole string is then relayed untouched, since PostgreSQL runs none of it either.
    """
    names = frozenset(n.lower() for n in implemented)
    srf = _srf_predicate(set_returning)
    try:
        raws = pglast.parse_sql(sql)
    except parser.ParseError:
        return _analyze_piecewise(sql, names, srf)
    toks = Tokens(sql)
    return [_Statement(sql, toks, raw, names, srf).run() for raw in raws]


def _srf_predicate(set_returning: SetReturning | Collection[str]) -> SetReturning:
    if callable(set_returning):
        return set_returning
    srf_names = frozenset(n.lower() for n in set_returning)
    return lambda name, _args: name in srf_names


def _analyze_piecewise(sql: str, names: frozenset[str], srf: SetReturning) -> list[StatementAnalysis]:
    """One statement does not parse: split with the scanner and analyse each piece on its own.

    Each piece is parsed inside a copy of the string with everything before it blanked to spaces, so
    offsets stay those of ``sql`` without any arithmetic.
    """
    try:
        toks = Tokens(sql)
    except parser.ParseError:
        stripped = sql.strip()
        if not stripped:
            return []
        start = sql.index(stripped[0])
        slices = [slice(start, start + len(stripped))]
    else:
        # pglast's own scanner-mode split drops pieces that do not start like a statement; ours keeps
        # every piece between semicolons.
        slices, first = [], None
        for i in range(len(toks) + 1):
            if i == len(toks) or toks[i].char == ";":
                if first is not None:
                    slices.append(slice(toks[first].start, toks[i - 1].end))
                first = None
            elif first is None:
                first = i
    out: list[StatementAnalysis] = []
    for sl in slices:
        piece = " " * sl.start + sql[sl.start : sl.stop]
        try:
            raws = pglast.parse_sql(piece)
            toks = Tokens(piece)
        except parser.ParseError as exc:
            out.append(StatementAnalysis(span=Span(sl.start, sl.stop), parsed=False, error=str(exc)))
            continue
        out.extend(_Statement(piece, toks, raw, names, srf).run() for raw in raws)
    return out


# --- walk state ---------------------------------------------------------------------------------


@dataclass(eq=False)
class _Level:
    node: ast.Node
    kind: LevelKind
    parent: _Level | None
    #: The statement's own SELECT, whose rows go to the client.
    top: bool
    has_aggregate: bool = False
    frozen: QueryLevel | None = None
    layout: _Layout | None = None


@dataclass(frozen=True, slots=True)
class _Target:
    index: int
    res: ast.ResTarget
    returning: bool


@dataclass(frozen=True, slots=True)
class _Ctx:
    level: _Level | None
    clause: Clause
    nested: bool = False
    call: _Call | None = None
    in_aggregate: bool = False
    unreachable: str | None = None
    #: TypeCast / field-selecting A_Indirection nodes directly above the current node, outermost first.
    wrap: tuple[ast.Node, ...] = ()
    target: _Target | None = None
    #: Set on a FuncCall that is itself a function of a FROM item.
    from_fn: ast.RangeFunction | None = None

    def plain(self, **changes: object) -> _Ctx:
        """Context for the children of an ordinary expression node: no longer directly wrapped."""
        return replace(self, **{"wrap": (), "target": None, "from_fn": None, **changes})


@dataclass(eq=False)
class _Call:
    node: ast.FuncCall
    name: str
    ctx: _Ctx
    parent: _Call | None
    children: list[_Call] = field(default_factory=list)
    span: Span = field(default_factory=lambda: Span(0, 0))
    args: tuple[Argument, ...] = ()
    constant: bool = False
    set_returning: bool = False
    casts: tuple[str, ...] = ()
    field: str | None = None
    expr_span: Span | None = None
    target_span: Span | None = None
    column_name: str | None = None
    ordinality_end: int | None = None
    star: bool = False
    strategy: Strategy = Strategy.MATERIALIZE
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class _Layout:
    """Token ranges (half-open) of one query level's clauses."""

    span: tuple[int, int]
    keyword: int  # index of SELECT / UPDATE / DELETE / MERGE
    clauses: dict[str, tuple[int, int]]
    targets: list[tuple[int, int]] | None
    returning: list[tuple[int, int]] | None


def _type_name(node: ast.TypeName) -> str:
    return RawStream()(node)


def _strip_casts(node: ast.Node | None) -> tuple[ast.Node | None, str | None]:
    """The value under any casts, and the outermost cast's type."""
    cast = None
    while isinstance(node, ast.TypeCast):
        if cast is None:
            cast = _type_name(node.typeName)
        node = node.arg
    return node, cast


def _literal_value(node: ast.Node | None) -> tuple[bool, LiteralValue]:
    node, _ = _strip_casts(node)
    if isinstance(node, ast.A_Const):
        if node.isnull:
            return True, None
        val = node.val
        if isinstance(val, ast.String):
            return True, val.sval
        if isinstance(val, ast.Integer):
            return True, val.ival
        if isinstance(val, ast.Float):
            return True, Decimal(val.fval)
        if isinstance(val, ast.Boolean):
            return True, bool(val.boolval)
        return False, None
    if isinstance(node, ast.A_ArrayExpr):
        values = []
        for el in node.elements or ():
            if isinstance(el, ast.TypeCast):  # ARRAY['{}'::jsonb] is a jsonb[]: the server types it
                return False, None
            ok, v = _literal_value(el)
            if not ok:
                return False, None
            values.append(v)
        return True, tuple(values)
    return False, None


def _func_name(node: ast.FuncCall) -> tuple[str, ...]:
    return tuple(getattr(p, "sval", "") for p in node.funcname or ())


def _aggregate_syntax(node: ast.FuncCall) -> bool:
    return bool(
        node.over is not None
        or node.agg_star
        or node.agg_distinct
        or node.agg_within_group
        or node.agg_order
        or node.agg_filter is not None
    )


def _is_aggregate(node: ast.FuncCall) -> bool:
    if _aggregate_syntax(node):
        return True
    parts = _func_name(node)
    if len(parts) == 2 and parts[0] == "pgml":
        return parts[1] in _PGML_AGGREGATES
    return parts[-1] in _AGGREGATES and (len(parts) == 1 or parts[0] == "pg_catalog")


@dataclass(slots=True)
class _Props:
    row_dependent: bool = False
    aggregate: bool = False
    volatile: bool = False
    params: set[int] = field(default_factory=set)


def _expr_props(node: object) -> _Props:
    """What an argument expression depends on; subqueries are not entered (they make it row-dependent)."""
    props = _Props()
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, tuple | list):
            stack.extend(n)
            continue
        if not isinstance(n, ast.Node):
            continue
        if isinstance(n, ast.ColumnRef | ast.SubLink | ast.SelectStmt | ast.SetToDefault | ast.CurrentOfExpr):
            props.row_dependent = True
            continue
        if isinstance(n, ast.ParamRef):
            props.params.add(n.number)
            continue
        if isinstance(n, ast.GroupingFunc | ast.JsonArrayAgg | ast.JsonObjectAgg):
            props.aggregate = props.row_dependent = True
        elif isinstance(n, ast.FuncCall):
            if _is_aggregate(n):
                props.aggregate = props.row_dependent = True
            parts = _func_name(n)
            if parts and parts[-1] in _VOLATILE and (len(parts) == 1 or parts[0] == "pg_catalog"):
                props.volatile = props.row_dependent = True
        for slot in type(n).__slots__:
            child = getattr(n, slot, None)
            if isinstance(child, ast.Node | tuple | list):
                stack.append(child)
    return props


# --- one statement ------------------------------------------------------------------------------


class _Statement:
    """Walks one parsed statement, then fills in each call's facts from the tokens and classifies it."""

    def __init__(
        self, sql: str, toks: Tokens, raw: ast.RawStmt, names: frozenset[str], srf: SetReturning
    ) -> None:
        self.sql = sql
        self.toks = toks
        self.raw = raw
        self.names = names
        self.srf = srf
        self.calls: list[_Call] = []
        self.explain = False
        self.copy = False
        self.cursor: str | None = None
        self.session: SessionCommand | None = None
        self.inner: Span | None = None
        self.body_calls: tuple[str, ...] = ()
        self.body_reason: str | None = None
        self.answer_query: ast.SelectStmt | None = None

    # -- entry --

    def run(self) -> StatementAnalysis:
        stmt = self.raw.stmt
        span = self._statement_span()
        self._dispatch(stmt, _Ctx(level=None, clause=Clause.OTHER), outermost=True)
        for call in self.calls:
            self._finish(call)
        answer = self._answer_shape(self.answer_query) if self.answer_query is not None else None
        for call in self.calls:
            self._classify(call, answer is not None)
        ordered = sorted(self.calls, key=lambda c: (c.span.end, c.span.start))
        index = {id(c): i for i, c in enumerate(ordered)}
        sites = tuple(self._site(c, index) for c in ordered)
        strategy, reason = self._summary(sites, answer is not None)
        answer_cols: tuple[AnswerColumn, ...] = ()
        if answer is not None:
            answer_cols = tuple(replace(col, call=index[id(self.calls[col.call])]) for col in answer)
        return StatementAnalysis(
            span=span,
            parsed=True,
            kind=type(stmt).__name__,
            calls=sites,
            strategy=strategy,
            reason=reason,
            answer=answer_cols,
            inner=self.inner,
            explain=self.explain,
            copy=self.copy,
            cursor=self.cursor,
            session=self.session,
            body_calls=self.body_calls,
        )

    def _statement_span(self) -> Span:
        loc = self.raw.stmt_location or 0
        end = loc + self.raw.stmt_len if self.raw.stmt_len else len(self.sql)
        lo = self.toks.at(loc)
        hi = self.toks.at(end)
        while hi > lo and self.toks.is_(hi - 1, ";"):
            hi -= 1
        if hi <= lo:
            return Span(loc, loc)
        return Span(self.toks[lo].start, self.toks[hi - 1].end)

    def _inner_span(self, after: str) -> Span | None:
        """Span of the statement nested in this one (EXPLAIN's, PREPARE's …), which starts after the
        first ``after`` keyword on depth 0 (for COPY: inside the first bracket) and runs to the end."""
        toks = self.toks
        stmt = self._statement_span()
        lo, hi = toks.at(stmt.start), toks.at(stmt.end)
        if after == "(":
            k = next((i for i in range(lo, hi) if toks[i].char == "("), None)
            if k is None or k not in toks.match:
                return None
            return Span(toks[k + 1].start, toks[toks.match[k] - 1].end)
        k = lo + 1
        if after == "EXPLAIN":
            if toks.is_(k, "("):
                k = toks.match[k] + 1
            while toks.is_(k, "ANALYZE", "ANALYSE", "VERBOSE"):
                k += 1
        else:
            while k < hi and not (toks[k].depth == 0 and toks[k].name == after):
                k += 1
            k += 1
        if after == "AS" and toks.is_(hi - 1, "DATA_P") and toks[hi - 1].depth == 0:
            # CREATE TABLE … AS query WITH [NO] DATA
            hi -= 2 if toks.is_(hi - 2, "WITH") else 3
        if k >= hi:
            return None
        return Span(toks[k].start, toks[hi - 1].end)

    def _execute_args(self) -> tuple[Span, ...]:
        toks = self.toks
        stmt = self._statement_span()
        lo, hi = toks.at(stmt.start), toks.at(stmt.end)
        k = next((i for i in range(lo, hi) if toks[i].char == "("), None)
        if k is None or k not in toks.match:
            return ()
        parts = toks.split(k + 1, toks.match[k])
        return tuple(Span(toks[a].start, toks[b - 1].end) for a, b in parts if b > a)

    # -- dispatch over statement kinds --

    def _dispatch(self, stmt: ast.Node, ctx: _Ctx, *, outermost: bool = False) -> None:
        kind = type(stmt).__name__
        if isinstance(stmt, ast.SelectStmt):
            if outermost:
                self.answer_query = stmt
            self._select(stmt, ctx, top=outermost, nested=False)
        elif isinstance(stmt, ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt | ast.MergeStmt):
            self._dml(stmt, ctx, top=outermost)
        elif isinstance(stmt, ast.ExplainStmt):
            self.explain = True
            self.inner = self._inner_span("EXPLAIN")
            if isinstance(stmt.query, ast.SelectStmt):
                self._select(stmt.query, ctx, top=True, nested=False)
            else:
                self._dispatch(stmt.query, ctx)
        elif isinstance(stmt, ast.CopyStmt):
            if stmt.query is not None:
                self.copy = True
                self.inner = self._inner_span("(")
                self._dispatch(stmt.query, ctx)
            if stmt.whereClause is not None:
                self._visit(stmt.whereClause, replace(ctx, unreachable="copy_where"))
        elif isinstance(stmt, ast.PrepareStmt):
            self.session = SessionCommand(
                "prepare", stmt.name, tuple(_type_name(t) for t in stmt.argtypes or ())
            )
            self.inner = self._inner_span("AS")
            self._dispatch(stmt.query, ctx, outermost=True)
        elif isinstance(stmt, ast.ExecuteStmt):
            self.session = SessionCommand("execute", stmt.name, args=self._execute_args())
            self._visit(stmt.params, ctx)
        elif isinstance(stmt, ast.DeallocateStmt):
            self.session = SessionCommand("deallocate", None if stmt.isall else stmt.name)
        elif isinstance(stmt, ast.DiscardStmt):
            if stmt.target == enums.DiscardMode.DISCARD_ALL:
                self.session = SessionCommand("discard", None)
        elif isinstance(stmt, ast.DeclareCursorStmt):
            self.cursor = stmt.portalname
            self.inner = self._inner_span("FOR")
            if isinstance(stmt.query, ast.SelectStmt):
                self.answer_query = stmt.query
                self._select(stmt.query, ctx, top=False, nested=False)
            else:
                self._dispatch(stmt.query, ctx)
        elif isinstance(stmt, ast.CreateTableAsStmt):
            if stmt.objtype == enums.ObjectType.OBJECT_MATVIEW:
                ctx = replace(ctx, unreachable="matview")
            self.inner = self._inner_span("AS")
            self._dispatch(stmt.query, ctx)
        elif isinstance(stmt, ast.CallStmt):
            self._visit(stmt.funccall, ctx)
        elif isinstance(stmt, ast.CreateFunctionStmt):
            self._function_body(stmt, ctx)
        elif isinstance(stmt, ast.DoStmt):
            body, language = None, "plpgsql"
            for opt in stmt.args or ():
                if opt.defname == "as":
                    body = opt.arg.sval
                elif opt.defname == "language":
                    language = opt.arg.sval
            self._body(body, language, "do")
        else:
            reason = _STATEMENT_REASON.get(kind, "ddl")
            self._visit(stmt, replace(ctx, unreachable=reason))

    def _function_body(self, stmt: ast.CreateFunctionStmt, ctx: _Ctx) -> None:
        body, language = None, None
        for opt in stmt.options or ():
            if opt.defname == "as":
                parts = opt.arg if isinstance(opt.arg, tuple | list) else (opt.arg,)
                body = getattr(parts[-1], "sval", None)
            elif opt.defname == "language":
                language = getattr(opt.arg, "sval", None)
        inner = replace(ctx, unreachable="function")
        self._visit(stmt.parameters, inner)
        self._visit(stmt.sql_body, inner)
        self._body(body, language, "function")

    def _body(self, body: str | None, language: str | None, reason: str) -> None:
        if body is None:
            return
        found = calls_in_body(body, language, self.names)
        if found:
            self.body_calls = found
            self.body_reason = _reason(found[0], reason)

    # -- query levels --

    def _select(self, node: ast.SelectStmt, ctx: _Ctx, *, top: bool, nested: bool) -> None:
        if node.op != enums.SetOperation.SETOP_NONE:
            level = _Level(node, "setop", ctx.level, top=False)
            inner = _Ctx(level, Clause.OTHER, nested, ctx.call, False, ctx.unreachable)
            self._with(node.withClause, inner)
            self._select(node.larg, inner, top=False, nested=True)
            self._select(node.rarg, inner, top=False, nested=True)
            self._visit(node.sortClause, replace(inner, clause=Clause.ORDER_BY))
            self._visit((node.limitOffset, node.limitCount), replace(inner, clause=Clause.LIMIT))
            return
        level = _Level(node, "values" if node.valuesLists else "select", ctx.level, top=top)
        c = _Ctx(level, Clause.OTHER, nested, ctx.call, False, ctx.unreachable)
        self._with(node.withClause, c)
        self._visit(node.fromClause, replace(c, clause=Clause.FROM))
        for i, res in enumerate(node.targetList or ()):
            self._visit(res.val, replace(c, clause=Clause.TARGET, target=_Target(i, res, False)))
        self._visit(node.whereClause, replace(c, clause=Clause.WHERE))
        self._visit(node.groupClause, replace(c, clause=Clause.GROUP_BY))
        self._visit(node.havingClause, replace(c, clause=Clause.HAVING))
        self._visit(node.windowClause, replace(c, clause=Clause.WINDOW))
        self._visit(node.sortClause, replace(c, clause=Clause.ORDER_BY))
        self._visit(node.distinctClause, replace(c, clause=Clause.DISTINCT_ON))
        self._visit((node.limitOffset, node.limitCount), replace(c, clause=Clause.LIMIT))
        self._visit(node.valuesLists, replace(c, clause=Clause.VALUES))

    def _with(self, with_clause: ast.WithClause | None, ctx: _Ctx) -> None:
        for cte in (with_clause.ctes if with_clause else None) or ():
            self._query(cte.ctequery, replace(ctx, clause=Clause.OTHER), nested=True)

    def _query(self, node: ast.Node | None, ctx: _Ctx, *, nested: bool) -> None:
        if isinstance(node, ast.SelectStmt):
            self._select(node, ctx, top=False, nested=nested)
        elif isinstance(node, ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt | ast.MergeStmt):
            self._dml(node, replace(ctx, nested=nested))
        else:
            self._visit(node, ctx)

    def _dml(self, node: ast.Node, ctx: _Ctx, *, top: bool = False) -> None:
        kinds: dict[type, LevelKind] = {
            ast.InsertStmt: "insert",
            ast.UpdateStmt: "update",
            ast.DeleteStmt: "delete",
            ast.MergeStmt: "merge",
        }
        # A top-level INSERT, UPDATE or DELETE sends its RETURNING rows to the client as a SELECT would.
        level = _Level(node, kinds[type(node)], ctx.level, top=top and not isinstance(node, ast.MergeStmt))
        c = _Ctx(level, Clause.OTHER, ctx.nested, ctx.call, False, ctx.unreachable)
        self._with(node.withClause, c)
        if isinstance(node, ast.InsertStmt):
            self._query(node.selectStmt, c, nested=False)
            conflict = node.onConflictClause
            if conflict is not None:
                self._visit(conflict.infer, replace(c, clause=Clause.ON_CONFLICT))
                self._visit(conflict.targetList, replace(c, clause=Clause.SET))
                self._visit(conflict.whereClause, replace(c, clause=Clause.ON_CONFLICT))
        elif isinstance(node, ast.UpdateStmt):
            self._visit(node.fromClause, replace(c, clause=Clause.FROM))
            self._visit(node.targetList, replace(c, clause=Clause.SET))
            self._visit(node.whereClause, replace(c, clause=Clause.WHERE))
        elif isinstance(node, ast.DeleteStmt):
            self._visit(node.usingClause, replace(c, clause=Clause.FROM))
            self._visit(node.whereClause, replace(c, clause=Clause.WHERE))
        else:
            self._visit(node.sourceRelation, replace(c, clause=Clause.FROM))
            self._visit(node.joinCondition, replace(c, clause=Clause.MERGE))
            for when in node.mergeWhenClauses or ():
                self._visit(when.condition, replace(c, clause=Clause.MERGE))
                self._visit(when.targetList, replace(c, clause=Clause.SET))
                self._visit(when.values, replace(c, clause=Clause.VALUES))
        returning = node.returningClause.exprs if node.returningClause is not None else ()
        for i, res in enumerate(returning or ()):
            self._visit(res.val, replace(c, clause=Clause.RETURNING, target=_Target(i, res, True)))

    # -- expressions --

    def _visit(self, node: object, ctx: _Ctx) -> None:
        if node is None:
            return
        if isinstance(node, tuple | list):
            for n in node:
                self._visit(n, ctx)
            return
        if not isinstance(node, ast.Node):
            return
        if isinstance(node, ast.FuncCall):
            self._func_call(node, ctx)
        elif isinstance(node, ast.TypeCast) or (
            isinstance(node, ast.A_Indirection)
            and (
                all(isinstance(i, ast.String) for i in node.indirection or ())
                or (
                    not ctx.wrap
                    and len(node.indirection or ()) == 1
                    and isinstance(node.indirection[0], ast.A_Star)
                )
            )
        ):
            self._visit(node.arg, replace(ctx, wrap=(*ctx.wrap, node), from_fn=None))
        elif isinstance(node, ast.SubLink):
            self._visit(node.testexpr, ctx.plain())
            self._select(node.subselect, ctx.plain(), top=False, nested=True)
        elif isinstance(node, ast.RangeSubselect):
            self._select(node.subquery, ctx.plain(), top=False, nested=True)
        elif isinstance(node, ast.SelectStmt):
            self._select(node, ctx.plain(), top=False, nested=True)
        elif isinstance(node, ast.RangeFunction):
            for item in node.functions or ():
                fn = item[0] if isinstance(item, tuple | list) else item
                self._visit(fn, ctx.plain(from_fn=node))
        elif isinstance(node, ast.JoinExpr):
            self._visit((node.larg, node.rarg), ctx.plain())
            self._visit(node.quals, ctx.plain(clause=Clause.JOIN_ON))
        elif isinstance(node, ast.Constraint):
            reason = _CONSTRAINT_REASON.get(node.contype, ctx.unreachable or "ddl")
            if ctx.unreachable == "domain":
                reason = "domain"
            self._children(node, ctx.plain(unreachable=reason))
        elif isinstance(node, ast.AlterTableCmd) and node.subtype in _ALTER_REASON:
            self._children(node, ctx.plain(unreachable=_ALTER_REASON[node.subtype]))
        elif isinstance(node, ast.GroupingFunc | ast.JsonArrayAgg | ast.JsonObjectAgg):
            if ctx.level is not None:
                ctx.level.has_aggregate = True
            self._children(node, ctx.plain(in_aggregate=True))
        elif isinstance(node, ast.CommonTableExpr):
            self._query(node.ctequery, ctx.plain(), nested=True)
        else:
            self._children(node, ctx.plain())

    def _children(self, node: ast.Node, ctx: _Ctx) -> None:
        for slot in type(node).__slots__:
            child = getattr(node, slot, None)
            if isinstance(child, ast.Node | tuple | list):
                self._visit(child, ctx)

    def _func_call(self, node: ast.FuncCall, ctx: _Ctx) -> None:
        parts = _func_name(node)
        # Aggregate syntax (``*``, DISTINCT, ORDER BY, FILTER, OVER, WITHIN GROUP) on a plain function is
        # PostgreSQL's error to report, so such a call is left to the upstream like an unknown one.
        if len(parts) == 2 and parts[0] == "pgml" and parts[1] in self.names and not _aggregate_syntax(node):
            call = _Call(node, parts[1], ctx, ctx.call)
            self.calls.append(call)
            if ctx.call is not None:
                ctx.call.children.append(call)
            inner = ctx.plain(call=call)
        else:
            aggregate = _is_aggregate(node)
            if aggregate and ctx.level is not None:
                ctx.level.has_aggregate = True
            inner = ctx.plain(in_aggregate=ctx.in_aggregate or aggregate)
        self._visit(node.args, inner)
        self._visit((node.agg_order, node.agg_filter, node.over), inner)

    # -- per-call facts from the tokens --

    def _finish(self, call: _Call) -> None:
        toks = self.toks
        node = call.node
        i0 = toks.at(node.location)
        depth = toks[i0].depth
        j = i0
        while j < len(toks) and not (toks[j].char == "(" and toks[j].depth == depth):
            j += 1
        close = toks.match.get(j, len(toks) - 1)
        call.span = Span(toks[i0].start, toks[close].end)
        call.args = self._arguments(node, j, close)
        call.constant = all(a.constant for a in call.args)
        call.set_returning = bool(self.srf(call.name, call.args))
        wrap = call.ctx.wrap
        call.casts = tuple(_type_name(w.typeName) for w in reversed(wrap) if isinstance(w, ast.TypeCast))
        fields = [w for w in wrap if isinstance(w, ast.A_Indirection)]
        if fields and isinstance(fields[0].indirection[-1], ast.A_Star):
            call.star = True
        elif fields:
            call.field = fields[0].indirection[-1].sval
        call.expr_span = self._wrapped_span(i0, close, wrap)
        from_fn = call.ctx.from_fn
        if from_fn is not None and from_fn.ordinality and toks.is_(close + 2, "ORDINALITY"):
            call.ordinality_end = toks[close + 2].end
        target = call.ctx.target
        if target is not None:
            call.column_name = target.res.name or call.field or call.name
            layout = self._layout(call.ctx.level)
            parts = None
            if layout is not None:
                parts = layout.returning if target.returning else layout.targets
            if parts is not None and target.index < len(parts):
                lo, hi = parts[target.index]
                call.target_span = Span(toks[lo].start, toks[hi - 1].end)
                vend = hi - 1
                if target.res.name:
                    vend -= 2 if toks.is_(hi - 2, "AS") else 1
                call.expr_span = Span(toks[lo].start, toks[vend].end)

    def _arguments(self, node: ast.FuncCall, open_: int, close: int) -> tuple[Argument, ...]:
        toks = self.toks
        nodes = list(node.args or ())
        if not nodes:
            return ()
        parts = toks.split(open_ + 1, close)
        if len(parts) != len(nodes):
            parts = [(open_ + 1, close)] * len(nodes)  # unexpected shape: each argument gets the whole list
        out = []
        for (a, b), arg in zip(parts, nodes, strict=True):
            name = None
            value_node = arg
            va = a
            if isinstance(arg, ast.NamedArgExpr):
                name = arg.name
                value_node = arg.arg
                for k in range(a, b):
                    if toks[k].name in ("EQUALS_GREATER", "COLON_EQUALS"):
                        va = k + 1
                        break
            elif toks.is_(a, "VARIADIC"):
                va = a + 1
            props = _expr_props(value_node)
            bare, cast = _strip_casts(value_node)
            is_literal, value = _literal_value(value_node)
            out.append(
                Argument(
                    name=name,
                    span=Span(toks[va].start, toks[b - 1].end),
                    full_span=Span(toks[a].start, toks[b - 1].end),
                    constant=not props.row_dependent,
                    params=tuple(sorted(props.params)),
                    param=bare.number if isinstance(bare, ast.ParamRef) else None,
                    aggregate=props.aggregate,
                    volatile=props.volatile,
                    array_constructor=isinstance(bare, ast.A_ArrayExpr)
                    or (
                        isinstance(bare, ast.SubLink) and bare.subLinkType == enums.SubLinkType.ARRAY_SUBLINK
                    ),
                    row_constructor=isinstance(bare, ast.RowExpr),
                    cast=cast,
                    literal=Literal(value, cast) if is_literal else None,
                )
            )
        return tuple(out)

    def _wrapped_span(self, first: int, close: int, wrap: tuple[ast.Node, ...]) -> Span | None:
        """The call with the casts and field selections directly applied to it (innermost first)."""
        toks = self.toks
        lo, hi = first, close
        for w in reversed(wrap):
            if isinstance(w, ast.TypeCast):
                k = toks.exact(w.location)
                if k is None:
                    return None
                if toks[k].name == "CAST":
                    lo, hi = k, toks.match.get(k + 1, hi)
                    continue
                lo, hi = self._grow_parens(lo, hi, k)
                end = self._type_end(k + 1)
                if end is None:
                    return None
                hi = end
            else:
                lo, hi = self._grow_parens(lo, hi, len(toks))
                if not (toks.is_(hi + 1, ".") and hi + 2 < len(toks)):
                    return None
                hi += 2
        return Span(toks[lo].start, toks[hi].end)

    def _grow_parens(self, lo: int, hi: int, limit: int) -> tuple[int, int]:
        """Widen ``[lo, hi]`` over brackets written around it, staying before token ``limit``."""
        toks = self.toks
        while lo > 0 and toks.is_(lo - 1, "(") and toks.match.get(lo - 1) == hi + 1 < limit:
            lo, hi = lo - 1, hi + 1
        return lo, hi

    def _type_end(self, i: int) -> int | None:
        """Index of the last token of the type name starting at token ``i``."""
        toks = self.toks
        if i >= len(toks):
            return None
        i += 1
        while toks.is_(i, ".") and i + 1 < len(toks):
            i += 2
        while i < len(toks) and toks[i].name in _TYPE_CONTINUATION:
            if toks[i].name in ("WITH", "WITHOUT") and not toks.is_(i + 1, "TIME"):
                break
            i += 1
        if toks.is_(i, "(") and i in toks.match:
            i = toks.match[i] + 1
        while True:
            if toks.is_(i, "[") and i in toks.match:
                i = toks.match[i] + 1
            elif toks.is_(i, "ARRAY"):
                i += 1
            else:
                break
        return i - 1

    # -- query level layout --

    def _layout(self, level: _Level | None) -> _Layout | None:
        if level is None:
            return None
        if level.layout is None:
            try:
                level.layout = self._compute_layout(level)
            except (IndexError, KeyError):
                level.layout = None
        return level.layout

    def _compute_layout(self, level: _Level) -> _Layout | None:
        toks = self.toks
        node = level.node
        if level.kind == "select":
            if not node.targetList:
                return None
            anchor = toks.at(node.targetList[0].location)
            keyword_names: tuple[str, ...] = ("SELECT",)
        elif level.kind in _DML_KEYWORD:
            anchor = toks.at(node.relation.location)
            keyword_names = (_DML_KEYWORD[level.kind],)
        else:
            return None
        depth = toks[anchor].depth
        kw = anchor - 1
        while kw >= 0 and not (toks[kw].depth == depth and toks[kw].name in keyword_names):
            if toks[kw].depth < depth:
                return None
            kw -= 1
        if kw < 0:
            return None
        # Clause keywords on this depth, up to the end of the level.
        wanted = _LEVEL_CLAUSES[level.kind]
        marks: list[tuple[int, str]] = []
        end = anchor
        while end < len(toks) and toks[end].depth >= depth and toks[end].char != ";":
            t = toks[end]
            name = t.name if t.depth == depth else ""
            if level.kind == "select" and (
                name in ("UNION", "INTERSECT", "EXCEPT", "RETURNING")
                or (name == "ON" and toks.is_(end + 1, "CONFLICT"))  # INSERT … SELECT … ON CONFLICT
                or (name == "WITH" and toks.is_(end + 1, "DATA_P", "NO"))  # CREATE TABLE AS … WITH DATA
            ):
                break
            if name == "FROM" and toks.is_(end - 1, "DISTINCT"):
                name = ""  # IS [NOT] DISTINCT FROM
            if name in wanted and (name in ("ON", "WHEN") or all(m[1] != name for m in marks)):
                marks.append((end, name))
            end += 1
        first = kw
        if node.withClause is not None:
            w = toks.exact(node.withClause.location)
            if w is not None:
                first = w
        clauses: dict[str, tuple[int, int]] = {}
        bounds = [*marks, (end, "")]
        for (pos, name), (nxt, _) in pairwise(bounds):
            if name in clauses:
                continue
            skip = 2 if name in ("GROUP_P", "ORDER") else 1
            clauses[name] = (pos + skip, nxt)
        if level.kind == "merge":
            ons = [pos for pos, name in marks if name == "ON"]
            whens = [pos for pos, name in marks if name == "WHEN"]
            if ons and whens:
                using = next((pos for pos, name in marks if name == "USING"), None)
                last_on = max(p for p in ons if p < whens[0])
                if using is not None:
                    clauses["USING"] = (using + 1, last_on)
                clauses["ON"] = (last_on + 1, whens[0])
        targets = None
        if level.kind == "select":
            stop = marks[0][0] if marks else end
            targets = toks.split(anchor, stop)
            if len(targets) != len(node.targetList):
                targets = None
        elif level.kind != "insert":
            rel_end = marks[0][0] if marks else end
            clauses["RELATION"] = (anchor, rel_end)
        returning = None
        if "RETURNING" in clauses:
            lo, hi = clauses["RETURNING"]
            if toks.is_(lo, "WITH") and toks.is_(lo + 1, "("):
                lo = toks.match[lo + 1] + 1
            exprs = node.returningClause.exprs if getattr(node, "returningClause", None) else ()
            returning = toks.split(lo, hi)
            if len(returning) != len(exprs or ()):
                returning = None
        return _Layout((first, end), kw, clauses, targets, returning)

    def _freeze_level(self, level: _Level | None) -> QueryLevel | None:
        if level is None:
            return None
        if level.frozen is not None:
            return level.frozen
        parent = self._freeze_level(level.parent)
        layout = self._layout(level)
        toks = self.toks
        kind = level.kind
        owner_with = getattr(level.parent.node, "withClause", None) if level.parent is not None else None
        in_with = owner_with is not None and any(cte.ctequery is level.node for cte in owner_with.ctes or ())
        if layout is None:
            level.frozen = QueryLevel(kind=kind, span=None, in_with=in_with, parent=parent)
            return level.frozen

        def span(rng: tuple[int, int] | None) -> Span | None:
            if rng is None or rng[0] >= rng[1]:
                return None
            return Span(toks[rng[0]].start, toks[rng[1] - 1].end)

        c = layout.clauses
        sources: list[Source] = []
        if "RELATION" in c:
            rel = c["RELATION"]
            sources.append(self._source(rel[0], rel[1]))
        from_key = {"select": "FROM", "update": "FROM", "delete": "USING", "merge": "USING"}.get(kind)
        from_rng = c.get(from_key) if from_key else None
        if from_rng is not None:
            sources.extend(self._sources(*from_rng))
        from_span = span(from_rng)
        from_has_call = from_span is not None and any(_inside(call.span, from_span) for call in self.calls)
        where = span(c.get("WHERE"))
        where_has_call = where is not None and any(_inside(call.span, where) for call in self.calls)
        with_span = None
        if layout.span[0] != layout.keyword:
            with_span = Span(toks[layout.span[0]].start, toks[layout.keyword - 1].end)
        with_node = getattr(level.node, "withClause", None)
        columns = layout.targets if kind == "select" else layout.returning
        level.frozen = QueryLevel(
            kind=kind,
            span=span(layout.span),
            from_clause=from_span,
            from_has_call=from_has_call,
            sources=tuple(sources),
            where=None if where_has_call else where,
            where_has_call=where_has_call,
            group_by=span(c.get("GROUP_P")),
            with_clause=with_span,
            ctes=self._ctes(with_node, layout.keyword) if with_span is not None else (),
            recursive=bool(with_node is not None and with_node.recursive),
            join_condition=span(c.get("ON")) if kind == "merge" else None,
            targets_end=toks[columns[-1][1] - 1].end if columns else None,
            in_with=in_with,
            parent=parent,
        )
        return level.frozen

    def _ctes(self, with_clause: ast.WithClause | None, keyword: int) -> tuple[CommonTable, ...]:
        """The WITH list's queries, each from its name to the token before the next one's comma (or the
        level's main keyword): commas inside a SEARCH or CYCLE clause do not split it."""
        toks = self.toks
        ctes = (with_clause.ctes if with_clause is not None else None) or ()
        starts = [toks.exact(cte.location) for cte in ctes]
        if not ctes or any(start is None for start in starts):
            return ()
        bounds = [*(start for start in starts if start is not None), keyword + 1]
        return tuple(
            CommonTable(
                cte.ctename,
                Span(toks[start].start, toks[following - 2].end),
                modifying=not isinstance(cte.ctequery, ast.SelectStmt),
            )
            for cte, (start, following) in zip(ctes, pairwise(bounds), strict=True)
        )

    def _sources(self, lo: int, hi: int) -> list[Source]:
        toks = self.toks
        out: list[Source] = []
        for a, b in toks.split(lo, hi):
            if a >= b:
                continue
            depth = toks[a].depth
            joins = [k for k in range(a, b) if toks[k].depth == depth and toks[k].name == "JOIN"]
            starts = [a, *(j + 1 for j in joins)]
            for n, s in enumerate(starts):
                limit = b
                if n < len(joins):
                    limit = joins[n]
                    while limit - 1 > s and toks[limit - 1].name in _JOIN_PREFIX:
                        limit -= 1
                e = s
                while e < limit and not (toks[e].depth == depth and toks[e].name in ("ON", "USING")):
                    e += 1
                if e > s:
                    out.append(self._source(s, e))
        return out

    def _source(self, lo: int, hi: int) -> Source:
        span = Span(self.toks[lo].start, self.toks[hi - 1].end)
        return Source(
            span=span,
            lateral=self.toks[lo].name == "LATERAL_P",
            has_call=any(_inside(call.span, span) for call in self.calls),
        )

    # -- classification --

    def _answer_shape(self, node: ast.SelectStmt) -> list[AnswerColumn] | None:
        if node.op != enums.SetOperation.SETOP_NONE:
            return None
        for attr in (
            "withClause",
            "intoClause",
            "distinctClause",
            "whereClause",
            "groupClause",
            "havingClause",
            "windowClause",
            "sortClause",
            "limitCount",
            "limitOffset",
            "lockingClause",
            "valuesLists",
        ):
            if getattr(node, attr, None):
                return None
        targets = node.targetList or ()
        if not targets:
            return None
        by_node = {id(c.node): i for i, c in enumerate(self.calls)}
        cols: list[AnswerColumn] = []
        if not node.fromClause:
            for res in targets:
                value = res.val
                casts: list[str] = []
                field_name = None
                while True:
                    if isinstance(value, ast.TypeCast):
                        casts.append(_type_name(value.typeName))
                        value = value.arg
                    elif (
                        isinstance(value, ast.A_Indirection)
                        and field_name is None
                        and len(value.indirection or ()) == 1
                        and isinstance(value.indirection[0], ast.String)
                    ):
                        field_name = value.indirection[0].sval
                        value = value.arg
                    else:
                        break
                index = by_node.get(id(value))
                if index is None or not self.calls[index].constant:
                    return None
                name = res.name or field_name or self.calls[index].name
                cols.append(AnswerColumn("call", index, None, name, tuple(reversed(casts)), field_name))
            return cols
        if len(node.fromClause) != 1 or not isinstance(node.fromClause[0], ast.RangeFunction):
            return None
        rf = node.fromClause[0]
        if rf.is_rowsfrom or rf.ordinality or rf.coldeflist or len(rf.functions or ()) != 1:
            return None
        item = rf.functions[0]
        fn = item[0] if isinstance(item, tuple | list) else item
        if not isinstance(fn, ast.FuncCall) or (isinstance(item, tuple | list) and item[1]):
            return None
        index = by_node.get(id(fn))
        if index is None or not self.calls[index].constant:
            return None
        call = self.calls[index]
        qualifier = rf.alias.aliasname if rf.alias is not None else call.name
        for res in targets:
            value, _ = _strip_casts(res.val)
            casts = []
            v = res.val
            while isinstance(v, ast.TypeCast):
                casts.append(_type_name(v.typeName))
                v = v.arg
            if not isinstance(value, ast.ColumnRef):
                return None
            fields = list(value.fields or ())
            if len(fields) == 2:
                if not isinstance(fields[0], ast.String) or fields[0].sval != qualifier:
                    return None
                fields = fields[1:]
            if len(fields) != 1:
                return None
            if isinstance(fields[0], ast.A_Star):
                if casts or res.name:
                    return None
                cols.append(AnswerColumn("star", index))
            elif isinstance(fields[0], ast.String):
                column = fields[0].sval
                cols.append(AnswerColumn("column", index, column, res.name or column, tuple(reversed(casts))))
            else:
                return None
        return cols

    def _classify(self, call: _Call, answered: bool) -> None:
        unreachable = call.ctx.unreachable
        if unreachable is not None:
            call.strategy, call.reason = Strategy.UNREACHABLE, _reason(call.name, unreachable)
        elif answered:
            call.strategy = Strategy.ANSWER
        elif call.constant:
            call.strategy = Strategy.FOLD
        else:
            why = self._why_not_splice(call)
            call.strategy = Strategy.MATERIALIZE if why else Strategy.SPLICE
            call.reason = why

    def _why_not_splice(self, call: _Call) -> str | None:
        ctx = call.ctx
        level = ctx.level
        if ctx.clause is not Clause.TARGET and not (ctx.clause is Clause.RETURNING and level and level.top):
            return f"in {ctx.clause.value.replace('_', ' ').upper()}"
        if level is None or not level.top or ctx.nested:
            return "not in the select list of the statement's own SELECT"
        if call.parent is not None:
            return "argument of another pgml call"
        if ctx.target is None:
            return "part of a larger expression"
        if call.field is not None:
            return "composite field access"
        if call.star:
            return "composite expansion"
        if call.set_returning:
            return "set-returning"
        if ctx.in_aggregate:
            return "inside an aggregate"
        if any(not child.constant for child in _descendants(call)):
            return "has a row-dependent pgml call in its arguments"
        node = level.node
        for attr, what in (
            ("intoClause", "SELECT INTO"),
            ("distinctClause", "DISTINCT"),
            ("groupClause", "GROUP BY"),
            ("havingClause", "HAVING"),
            ("windowClause", "WINDOW"),
        ):
            if getattr(node, attr, None):
                return f"the SELECT has {what}"
        if level.has_aggregate:
            return "the SELECT has aggregate or window functions"
        position = ctx.target.index + 1
        for sort in getattr(node, "sortClause", None) or ():
            key = sort.node
            if isinstance(key, ast.A_Const) and isinstance(key.val, ast.Integer) and key.val.ival == position:
                return "ORDER BY refers to the pgml column"
            if (
                isinstance(key, ast.ColumnRef)
                and len(key.fields) == 1
                and isinstance(key.fields[0], ast.String)
                and key.fields[0].sval == call.column_name
            ):
                return "ORDER BY refers to the pgml column"
        return None

    def _summary(self, sites: tuple[CallSite, ...], answered: bool) -> tuple[Strategy | None, str | None]:
        if self.body_reason is not None:
            return Strategy.UNREACHABLE, self.body_reason
        for site in sites:
            if site.strategy is Strategy.UNREACHABLE:
                return Strategy.UNREACHABLE, site.reason
        if not sites:
            return None, None
        if answered:
            return Strategy.ANSWER, None
        present = {s.strategy for s in sites}
        for strategy in (Strategy.MATERIALIZE, Strategy.SPLICE, Strategy.FOLD):
            if strategy in present:
                return strategy, None
        return None, None

    def _site(self, call: _Call, index: dict[int, int]) -> CallSite:
        ctx = call.ctx
        level = self._freeze_level(ctx.level)
        source_index = None
        if level is not None and ctx.clause in (Clause.FROM, Clause.JOIN_ON):
            for i, src in enumerate(level.sources):
                if _inside(call.span, src.span):
                    source_index = i
                    break
        rf = ctx.from_fn
        alias = rf.alias if rf is not None else None
        return CallSite(
            name=call.name,
            span=call.span,
            args=call.args,
            strategy=call.strategy,
            reason=call.reason,
            clause=ctx.clause,
            constant=call.constant,
            set_returning=call.set_returning,
            casts=call.casts,
            field=call.field,
            expr_span=call.expr_span,
            target_index=ctx.target.index if ctx.target is not None else None,
            target_span=call.target_span,
            alias=ctx.target.res.name if ctx.target is not None else None,
            column_name=call.column_name,
            parent=index[id(call.parent)] if call.parent is not None else None,
            in_aggregate=ctx.in_aggregate,
            in_subquery=ctx.nested,
            from_alias=alias.aliasname if alias is not None else None,
            column_aliases=tuple(c.sval for c in (alias.colnames or ())) if alias is not None else (),
            ordinality=bool(rf.ordinality) if rf is not None else False,
            ordinality_end=call.ordinality_end,
            star=call.star,
            lateral=bool(rf.lateral) if rf is not None else False,
            source_index=source_index,
            level=level,
            variadic=bool(call.node.func_variadic),
        )


def _descendants(call: _Call) -> list[_Call]:
    out: list[_Call] = []
    stack = list(call.children)
    while stack:
        c = stack.pop()
        out.append(c)
        stack.extend(c.children)
    return out


def _inside(inner: Span, outer: Span) -> bool:
    return outer.start <= inner.start and inner.end <= outer.end


def _reason(name: str, key: str) -> str:
    where, when = _UNREACHABLE[key]
    return (
        f"pgml.{name} cannot be used {where}: it would run inside PostgreSQL {when}, out of the proxy's reach"
    )
