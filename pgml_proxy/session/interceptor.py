"""Rewriting a statement that calls pgml functions into one the upstream can run (DESIGN §4).

A statement made only of pgml calls with constant arguments is answered by the proxy (:mod:`answer`).
Elsewhere constant arguments are folded: each call is evaluated once (innermost first) and its result
enters the statement as a typed literal or an extra parameter, so the upstream does the rest (casts such
as ``::vector(384)``, operators, ORDER BY, output formats). A row-dependent call that is a whole column of
the statement's own select (or RETURNING) list is spliced: it becomes a placeholder column plus hidden
argument columns, and :mod:`splice` computes it as the rows stream by. Every other row-dependent call is
materialized: its distinct argument tuples are fetched and computed first, and the statement looks its
row's result up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import struct
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Protocol

from pgml_engines import Engine, EngineConfig

from pgml_proxy import metrics
from pgml_proxy.errors import (
    AmbiguousFunction,
    FeatureNotSupported,
    InvalidParameterValue,
    ProxyError,
    SqlSyntaxError,
)
from pgml_proxy.functions.registry import CallContext, Registry, ResolvedCall
from pgml_proxy.functions.signatures import UNKNOWN, Argument, Signature
from pgml_proxy.session.answer import answer, shape
from pgml_proxy.session.edits import (
    argument_key,
    call_edits,
    fetch_query,
    key_of,
    row_dependent,
    splice_edits,
    visible_with,
    with_replacements,
)
from pgml_proxy.session.replacements import (
    LiteralSlots,
    ParameterSlots,
    call_sql,
    from_item_edit,
    lookup_sql,
    lookup_value,
    rows_alias,
    rows_call_item,
    rows_from_item,
    rows_lookup_item,
    slot_texts,
)
from pgml_proxy.session.side_query import SideQueryResult
from pgml_proxy.session.splice import PLACEHOLDER_PREFIX, SplicedCall, SplicePlan
from pgml_proxy.session.sql_prepared import HeldStatement
from pgml_proxy.session.streams import RowSource
from pgml_proxy.sql import literals
from pgml_proxy.sql.analyze import analyze
from pgml_proxy.sql.cursors import CursorOptions, cursor_options
from pgml_proxy.sql.model import Argument as ArgumentSite
from pgml_proxy.sql.model import CallSite, Clause, Literal, SessionCommand, StatementAnalysis, Strategy
from pgml_proxy.sql.text import mentions_pgml, parameter_numbers, splice
from pgml_proxy.wire.extended import Bind, Parse
from pgml_proxy.wire.rows import Field
from pgml_proxy.wire.types import (
    BINARY_FORMAT,
    BOOL,
    FLOAT4,
    FLOAT4_ARRAY,
    FLOAT8,
    INT8,
    JSONB,
    TEXT,
    TEXT_FORMAT,
    TYPE_NAMES,
    TYPE_OIDS,
    PgType,
    decode_parameter,
    keeps_type,
)

ANALYSIS_CACHE_SIZE: Final = 512
_SETS: Final = frozenset(
    (
        "chunk",
        "rank",
        "transform_stream",
        "load_dataset",
        "train",
        "train_joint",
        "tune",
        "snapshot",
        "deploy",
    )
)
"""The pgml functions that return rows whatever their arguments."""


class SideChannel(Protocol):
    async def side_query(
        self, sql: str, bind: Bind | None = None, param_types: Sequence[int] = ()
    ) -> SideQueryResult: ...

    async def own_snapshot(self) -> None:
        """Outside a transaction block, run what follows in one snapshot the proxy opens (and ends)."""
        ...

    @property
    def in_transaction_block(self) -> bool:
        """The client is inside a transaction block (BEGIN …)."""
        ...


@dataclass(frozen=True, slots=True)
class _Value:
    type: str  # as pg_typeof prints it, or UNKNOWN for an untyped literal
    value: Any


class Interceptor:
    """One per process: the registry and the (lazily started) engine that all sessions share."""

    def __init__(self, registry: Registry, engine_config: EngineConfig | None = None) -> None:
        self.registry = registry
        self._engine_config = engine_config
        self._engine: Engine | None = None
        self._starting: asyncio.Future[Engine] | None = None
        self._analyses: dict[str, list[StatementAnalysis]] = {}

    async def engine(self) -> Engine:
        """Started on first use, off the event loop: importing torch takes seconds.

        Started once: a statement cancelled while it waits leaves the start running for the next one
        (two threads importing transformers at once can break its lazy imports).
        """
        if self._engine is not None:
            return self._engine
        starting = self._starting
        if starting is None or (
            starting.done() and (starting.cancelled() or starting.exception() is not None)
        ):
            self._starting = asyncio.ensure_future(asyncio.to_thread(Engine, self._engine_config))
        self._engine = await asyncio.shield(self._starting)
        gc.freeze()  # the libraries the engine just imported live as long as the process (see cli.serve)
        metrics.watch_engine(self._engine)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()

    def _analyze(self, sql: str) -> list[StatementAnalysis]:
        """Analysis depends only on the text, so a statement sent again is not parsed again."""
        cached = self._analyses.pop(sql, None)
        if cached is None:
            cached = analyze(sql, self.registry.names, self._set_returning)
            if len(self._analyses) >= ANALYSIS_CACHE_SIZE:
                del self._analyses[next(iter(self._analyses))]  # the least recently used goes
        self._analyses[sql] = cached
        return cached

    def _set_returning(self, name: str, arguments: Sequence[Any]) -> bool:
        """Whether a call returns rows: the functions of :data:`_SETS` always; embed when its input is visibly
        an array; predict_batch unless its first argument is visibly a model id."""
        if name in _SETS:
            return True
        if name == "predict_batch":  # SETOF real by project, real[] by model id (§2.2, kept)
            return not any(
                (a.name == "model_id" or (a.name is None and i == 0)) and _numeric(a)
                for i, a in enumerate(arguments)
            )
        if name == "embed":
            return any(
                a.name == "inputs" or (a.name is None and i == 1 and a.is_array())
                for i, a in enumerate(arguments)
            )
        return False

    async def rewrite(self, sql: str, channel: SideChannel, extra_float_digits: int = 1) -> Rewritten:
        """The statement with every pgml call replaced by its value, or by a placeholder to splice
        (``extra_float_digits``: the session's, for an answer the proxy writes itself)."""
        statements = self._analyze(sql)
        only = statements[0] if len(statements) == 1 else None
        if only is not None and only.strategy is Strategy.ANSWER and only.kind == "SelectStmt":
            return await self._answer(sql, only, channel, extra_float_digits)
        if only is not None and _held(only):
            assert only.session is not None and only.session.name is not None and only.inner is not None
            return Rewritten(
                sql, held=HeldStatement(only.session.name, only.session.arg_types, only.inner.text(sql))
            )
        splice_at = self._splice_at(statements)
        for n, statement in enumerate(statements):
            earlier_writes = any(s.kind != "SelectStmt" for s in statements[:n])
            read_early = [
                call
                for call in statement.calls
                if row_dependent(call) and not (n == splice_at and self._spliceable(call))
            ]
            if earlier_writes and read_early:
                # Its arguments would be read before the statements ahead of it have changed the rows.
                raise FeatureNotSupported(
                    "a pgml call with row-dependent arguments cannot follow a statement that may change rows "
                    "in the same query string, except as a column of a SELECT or RETURNING list",
                    hint="Send it as a query of its own.",
                )
        replacements: list[tuple[int, int, str]] = []
        spliced: list[SplicedCall] = []
        for n, statement in enumerate(statements):
            # One snapshot serves one statement: only a query string of one gets its own.
            replacements += await self._fold_statement(
                sql, statement, channel, spliced if n == splice_at else None, snapshot=only is not None
            )
        text = splice(sql, replacements) if replacements else sql
        if not spliced:
            return Rewritten(text)
        return Rewritten(text, SplicePlan(tuple(spliced)), results_before=splice_at or 0)

    def path(self, sql: str, rewritten: Rewritten) -> str:
        """How a rewritten statement runs, for metrics (:data:`~pgml_proxy.metrics.PATHS`); a statement that
        both splices and materializes counts as spliced."""
        if rewritten.answer is not None or rewritten.held is not None:
            return "answer"
        if rewritten.splice is not None:
            return "splice"
        calls = [call for statement in self._analyze(sql) for call in statement.calls]
        if not calls:
            return "fast"
        return "materialize" if any(row_dependent(call) for call in calls) else "fold"

    def stream_plan(self, sql: str) -> StreamPlan | None:
        """The plan of a statement whose rows are one streaming call's, written as they are produced:
        ``SELECT pgml.transform_stream(…)`` (or ``* FROM`` it), or a DECLARE CURSOR for one."""
        statements = self._analyze(sql)
        if len(statements) != 1:
            return None
        [statement] = statements
        select, cursor = statement, None
        if statement.kind == "DeclareCursorStmt" and statement.inner is not None:
            inner = self._analyze(statement.inner.text(sql))
            if len(inner) != 1:
                return None
            select, cursor = inner[0], statement.cursor
        if select.strategy is not Strategy.ANSWER or select.kind != "SelectStmt" or len(select.calls) != 1:
            return None
        [call] = select.calls
        owned = self.registry.owned_signature(call.name)
        shaped = None if owned is None else shape(select.answer, select.calls, {0: (owned, [])})
        if shaped is None:
            return None
        options = cursor_options(sql) if cursor is not None else CursorOptions()
        return StreamPlan(select, tuple(shaped[0]), cursor, options)

    async def open_stream(self, sql: str, plan: StreamPlan, channel: SideChannel) -> RowSource:
        """Start a planned stream (simple protocol): its arguments evaluated, its rows to come."""
        [call] = plan.select.calls
        if plan.cursor is not None:
            sql = self._inner_text(sql)
        texts = [a.span.text(sql) for a in call.args]
        values = await self._evaluate(call, texts, range(len(call.args)), channel)
        resolved = self._resolve(call, [v.type for v in values])
        arguments = [v.value for v in values]
        return await self._row_source(plan, resolved, arguments, channel, _SessionQueries(channel))

    def _inner_text(self, sql: str) -> str:
        [statement] = self._analyze(sql)
        assert statement.inner is not None
        return statement.inner.text(sql)

    async def _row_source(
        self,
        plan: StreamPlan,
        resolved: ResolvedCall,
        values: Sequence[Any],
        channel: SideChannel,
        reads: _SessionQueries,
    ) -> RowSource:
        """The statement's rows: a streaming call's as they are generated (what it reads of the session,
        through ``reads``, read first); a call that works on the client's session (load_dataset, train) runs
        when they are first asked for."""
        engine = await self.engine()
        select, signature = plan.select, resolved.signature

        def row(item: Any) -> tuple[list[PgType], list[Any]]:
            shaped = shape(select.answer, select.calls, {0: (signature, [item])})
            assert shaped is not None
            [(types, values)] = shaped[1]
            return types, values

        shaped = shape(select.answer, select.calls, {0: (signature, [])})
        assert shaped is not None
        if self.registry.streams(resolved):
            preloaded = await self.registry.preload_call(CallContext(engine, reads), resolved, values)
            items = self.registry.stream(CallContext(engine, preloaded=preloaded), resolved, values)
        else:
            items = _when_read(
                self.registry, CallContext(engine, _SessionQueries(channel, writes=True)), resolved, values
            )
        return RowSource(shaped[0], items, row)

    def session_command(self, sql: str) -> SessionCommand | None:
        """PREPARE, EXECUTE, DEALLOCATE or DISCARD, when ``sql`` is one such statement."""
        statements = self._analyze(sql)
        return statements[0].session if len(statements) == 1 else None

    def _splice_at(self, statements: Sequence[StatementAnalysis]) -> int | None:
        """The statement of a query string whose rows get spliced calls: the first that has any.

        The rows of one statement are told apart by counting the answers before it; a string that
        controls transactions itself is never spliced, since splicing may wrap it in a transaction.
        """
        if len(statements) > 1 and any(s.kind == "TransactionStmt" for s in statements):
            return None
        for n, statement in enumerate(statements):
            if statement.kind in _SPLICED_KINDS and any(
                row_dependent(c) and self._spliceable(c) for c in statement.calls
            ):
                return n
        return None

    async def _fold_statement(
        self,
        sql: str,
        statement: StatementAnalysis,
        channel: SideChannel,
        spliced: list[SplicedCall] | None,
        *,
        snapshot: bool,
    ) -> list[tuple[int, int, str]]:
        """The edits for one statement; spliced calls are added to ``spliced`` (None: the statement is
        not the one to splice). ``snapshot``: materialized calls may ask for a snapshot of their own."""
        if statement.strategy is Strategy.UNREACHABLE:
            raise FeatureNotSupported(statement.reason or "pgml functions cannot be used in this statement")
        calls = statement.calls
        for call in calls:
            if call.strategy is Strategy.UNREACHABLE:
                raise FeatureNotSupported(call.reason or f"pgml.{call.name} cannot be used here")
            if any(a.params for a in call.args) or (statement.kind == "PrepareStmt" and not call.constant):
                # Computed now, its results would be wrong or stale at EXECUTE (a PREPARE of its own is
                # held by the session instead).
                raise FeatureNotSupported(
                    f"pgml.{call.name} with $n parameters or row-dependent arguments is not supported in a "
                    "PREPARE that shares its query string",
                    hint="Send the PREPARE as a query of its own.",
                )
        done: dict[int, str] = {}  # call index -> SQL text that replaces the call
        computed: dict[int, tuple[Signature, Any]] = {}  # folded calls' results
        from_items: dict[int, str] = {}  # call index -> the FROM item its whole rows come from
        edits: list[tuple[int, int, str]] = []
        appended: list[tuple[int, int, str]] = []  # hidden columns: after anything else at the list's end
        # Calls in FROM first: a row-dependent call elsewhere reads its rows through that FROM clause.
        order = sorted(range(len(calls)), key=lambda i: (calls[i].clause is not Clause.FROM, i))
        for index in order:
            call = calls[index]
            texts = [with_replacements(sql, a.span, calls, done) for a in call.args]
            if not row_dependent(call):
                scope = visible_with(sql, call, calls, done, " ".join(texts))
                signature, result, done[index] = await self._fold(
                    call, texts, channel, _sets_of(index, calls, computed), scope
                )
                computed[index] = (signature, result)
                if rows_from_item(call, signature, calls):
                    done[index] = rows_alias(index)
                    slots = LiteralSlots(slot_texts(call, signature, result))
                    from_items[index] = rows_call_item(signature, slots, done[index])
            elif spliced is not None and self._spliceable(call):
                planned, placeholder, hidden = await self._splice(sql, call, texts, len(spliced), channel)
                spliced.append(planned)
                edits.append(placeholder)
                appended.append(hidden)
            else:
                if snapshot:
                    await channel.own_snapshot()  # the argument read and the statement see the same rows
                signature, mapping, key = await self._materialize(sql, call, calls, done, texts, channel)
                if rows_from_item(call, signature, calls):
                    done[index] = rows_alias(index)
                    from_items[index] = rows_lookup_item(call, signature, mapping, key, done[index])
                else:
                    done[index] = lookup_sql(call, signature, mapping, key)
        for index, call in enumerate(calls):
            if call.parent is None and index in done:  # nested calls are inside a call that is replaced whole
                edits += call_edits(call, done[index])
        # After the calls' own edits: where both insert at one place, a column's alias precedes a FROM.
        edits += [from_item_edit(calls[index], item) for index, item in from_items.items()]
        return edits + appended

    def _spliceable(self, call: CallSite) -> bool:
        """A select-list call whose value the proxy can write itself, casts included (DESIGN §4)."""
        first = self.registry.first_argument(call.name, [a.name for a in call.args])
        if self.registry.reads_session(call.name) and not (
            self.registry.preloads(call.name) and first is not None and call.args[first].constant
        ):
            return False  # it needs side queries, impossible while the portal's rows stream
        if call.strategy is not Strategy.SPLICE or call.level is None or call.level.targets_end is None:
            return False
        returns = self.registry.scalar_return(call.name)
        if returns is None or call.target_span is None or call.expr_span is None:
            return False
        *inner, last = call.casts or (returns.name,)
        vector = returns is FLOAT4_ARRAY and (last == "vector" or last.startswith("vector("))
        return keeps_type(returns, inner) and (vector or keeps_type(returns, [last]))

    def _splice_call(self, call: CallSite, number: int) -> SplicedCall:
        """A spliced call's plan, its constant arguments still to be filled in."""
        returns = self.registry.scalar_return(call.name)
        assert returns is not None
        return SplicedCall(
            site=call,
            placeholder=f"{PLACEHOLDER_PREFIX}{number}",
            returns=returns,
            fixed=(),
            dependent=tuple(i for i, a in enumerate(call.args) if not a.constant),
            vector=bool(call.casts) and call.casts[-1].startswith("vector"),
        )

    async def _splice(
        self, sql: str, call: CallSite, texts: list[str], number: int, channel: SideChannel
    ) -> tuple[SplicedCall, tuple[int, int, str], tuple[int, int, str]]:
        """Plan a spliced call: constant arguments now, the rest as hidden columns the rows carry."""
        planned = self._splice_call(call, number)
        constant = [i for i in range(len(call.args)) if i not in planned.dependent]
        fixed = await self._evaluate(call, texts, constant, channel)
        planned = await self._preloaded(
            dataclasses.replace(
                planned, fixed=tuple((i, v.type, v.value) for i, v in zip(constant, fixed, strict=True))
            ),
            _SessionQueries(channel),
        )
        return planned, *splice_edits(sql, planned, texts)

    async def _preloaded(self, planned: SplicedCall, session: _SessionQueries) -> SplicedCall:
        """A spliced call that reads the session, with what it reads looked up now, while the session is
        free (its first argument is one of the constants)."""
        name = planned.site.name
        if not self.registry.reads_session(name):
            return planned
        first = self.registry.first_argument(name, [a.name for a in planned.site.args])
        [(type_name, value)] = [(t, v) for position, t, v in planned.fixed if position == first]
        context = CallContext(await self.engine(), session)
        return dataclasses.replace(
            planned, preloaded=await self.registry.preload(context, name, type_name, value)
        )

    async def _answer(
        self, sql: str, statement: StatementAnalysis, channel: SideChannel, extra_float_digits: int
    ) -> Rewritten:
        """A statement of pgml calls only: answered by the proxy, or folded when its types need the upstream."""
        calls = statement.calls
        done: dict[int, str] = {}
        computed: dict[int, tuple[Signature, Any]] = {}
        for index, call in enumerate(calls):  # nested calls come before the call they are arguments of
            texts = [with_replacements(sql, a.span, calls, done) for a in call.args]
            signature, result = await self._compute(call, texts, channel, _sets_of(index, calls, computed))
            computed[index] = (signature, result)
            done[index] = call_sql(call, signature, LiteralSlots(slot_texts(call, signature, result)))
        results = {index: computed[index] for index, call in enumerate(calls) if call.parent is None}
        answered = answer(statement.answer, calls, results, extra_float_digits)
        if answered is not None:
            return Rewritten(sql, answer=answered)
        edits = [edit for index in results for edit in call_edits(calls[index], done[index])]
        return Rewritten(splice(sql, edits))

    async def _compute(
        self,
        call: CallSite,
        texts: list[str],
        channel: SideChannel,
        sets: Mapping[int, _Set] | None = None,
        scope: str = "",
    ) -> tuple[Signature, Any]:
        """A call with constant arguments, evaluated once.

        An argument that is a set-returning pgml call (``sets``: by position) makes the call a set too,
        one result per value of that argument, as Postgres evaluates a function of a set.
        """
        sets = sets or {}
        fixed = [i for i in range(len(call.args)) if i not in sets]
        evaluated = dict(zip(fixed, await self._evaluate(call, texts, fixed, channel, scope), strict=True))
        types = [sets[i].type if i in sets else evaluated[i].type for i in range(len(call.args))]
        resolved = self._resolve(call, types)
        engine = await self.engine()
        if not sets:
            [result] = await self.registry.call(
                CallContext(engine, _SessionQueries(channel)), resolved, [[evaluated[i].value for i in fixed]]
            )
            return resolved.signature, result
        if len(sets) > 1 or resolved.signature.set_returning:
            raise FeatureNotSupported(
                f"pgml.{call.name} over more than one set, or returning a set itself, is not supported yet"
            )
        [(position, values)] = sets.items()
        rows = [
            [value if i == position else evaluated[i].value for i in range(len(call.args))]
            for value in values.values
        ]
        results = await self.registry.call(CallContext(engine, _SessionQueries(channel)), resolved, rows)
        return dataclasses.replace(resolved.signature, set_returning=True), results

    async def _fold(
        self,
        call: CallSite,
        texts: list[str],
        channel: SideChannel,
        sets: Mapping[int, _Set] | None = None,
        scope: str = "",
    ) -> tuple[Signature, Any, str]:
        """Constant arguments: one evaluation, its value in place of the call (``scope``: the WITH queries
        the arguments read)."""
        signature, result = await self._compute(call, texts, channel, sets, scope)
        return signature, result, call_sql(call, signature, LiteralSlots(slot_texts(call, signature, result)))

    async def _materialize(
        self,
        sql: str,
        call: CallSite,
        calls: Sequence[CallSite],
        done: dict[int, str],
        texts: list[str],
        channel: SideChannel,
    ) -> tuple[Signature, str, str]:
        """Row-dependent arguments: compute every distinct argument tuple, then look results up per row.

        The distinct tuples come from the call's own query level (its FROM and, where it holds no pgml
        call, its WHERE); results travel back inside the statement as one jsonb object keyed by the
        argument tuple's jsonb text, which Postgres looks up per row with a binary search. Returns the
        overload, the SQL of that object and the SQL of a row's key (for :func:`lookup_sql`).
        """
        level = call.level
        if level is None or call.clause is Clause.RETURNING:
            raise _not_materialized(call)
        dependent = [i for i, a in enumerate(call.args) if not a.constant]
        constant = [i for i, a in enumerate(call.args) if a.constant]
        if any(call.args[i].volatile for i in dependent):
            raise FeatureNotSupported(
                f"pgml.{call.name} with volatile arguments cannot be evaluated once per row"
            )
        key = key_of(texts[i] for i in dependent)
        types = ", ".join(f"pg_typeof(({texts[i]}))::text" for i in dependent)
        fetched = await channel.side_query(fetch_query(sql, call, calls, done, key, types))
        fixed = await self._evaluate(call, texts, constant, channel)
        row_types = fetched.rows[0][1:] if fetched.rows else [UNKNOWN] * len(dependent)
        arg_types: list[str] = [UNKNOWN] * len(call.args)
        for i, value in zip(constant, fixed, strict=True):
            arg_types[i] = value.type
        for i, type_name in zip(dependent, row_types, strict=True):
            arg_types[i] = type_name or UNKNOWN
        resolved = self._resolve(call, arg_types)
        keys = [row[0] for row in fetched.rows]
        argument_rows = []
        for key_text in keys:
            row: list[Any] = [None] * len(call.args)
            for i, value in zip(constant, fixed, strict=True):
                row[i] = value.value
            for i, value in zip(dependent, json.loads(key_text or "[]"), strict=True):
                row[i] = value
            argument_rows.append(row)
        context = CallContext(await self.engine(), _SessionQueries(channel))
        results = await self.registry.call(context, resolved, argument_rows) if keys else []
        signature = resolved.signature
        mapping = {k: lookup_value(signature, r) for k, r in zip(keys, results, strict=True)}
        return signature, literals.typed(json.dumps(mapping), "jsonb"), key

    def prepare(self, parse: Parse) -> PreparedPgml | None:
        """Plan a Parse that mentions pgml; None when it calls nothing the proxy implements."""
        statements = self._analyze(parse.query)
        if not any(s.calls or s.strategy is Strategy.UNREACHABLE for s in statements):
            return None
        if len(statements) != 1:
            raise SqlSyntaxError("cannot insert multiple commands into a prepared statement")
        [statement] = statements
        if statement.strategy is Strategy.UNREACHABLE:
            raise FeatureNotSupported(statement.reason or "pgml functions cannot be used in this statement")
        calls = statement.calls
        declared = parse.param_types
        client_params = max([len(declared), *parameter_numbers(parse.query)])
        planned: list[_PlannedCall] = []
        forced: dict[int, str] = {}  # client parameter -> the pgml parameter type it feeds
        may_splice = statement.kind in _SPLICED_KINDS
        for index, call in enumerate(calls):
            if call.strategy is Strategy.UNREACHABLE:
                raise FeatureNotSupported(call.reason or f"pgml.{call.name} cannot be used here")
            dependent = (
                tuple(i for i, a in enumerate(call.args) if not a.constant) if row_dependent(call) else ()
            )
            spliced = may_splice and bool(dependent) and self._spliceable(call)
            sources = [
                _Source(literal=_Value(_type_hint(call.args[position]), None))
                if position in dependent
                else self._source(call, position, calls, planned, declared, parse.query)
                for position in range(len(call.args))
            ]
            types = [self._source_type(src, planned) for src in sources]
            resolved = self._resolve_prepared(call, types, dependent if spliced else ())
            if dependent and not spliced and call.clause is Clause.RETURNING:
                raise _not_materialized(call)
            fetch = (
                self._fetch_for_bind(parse.query, call, calls, dependent)
                if dependent and not spliced
                else None
            )
            for position, parameter in enumerate(resolved.signature.parameters):
                argument_index = resolved.binding.sources[position]
                param = sources[argument_index].param if argument_index is not None else None
                if param is not None:
                    forced.setdefault(param, parameter.type)
            splice_call = self._splice_call(call, len([p for p in planned if p.splice])) if spliced else None
            over_set = _over_set(call, sources, planned)
            if over_set is not None and (dependent or resolved.signature.set_returning):
                raise FeatureNotSupported(
                    f"pgml.{call.name} over a set-returning pgml call is supported under the extended protocol "
                    "only with constant arguments and a scalar result",
                    hint="Send the statement with the simple query protocol.",
                )
            scope = self._scope(parse.query, call, calls, [s.expression for s in sources if s.expression])
            planned.append(
                _PlannedCall(
                    index, call, resolved, tuple(sources), fetch, dependent, splice_call, over_set, scope
                )
            )
        slots = ParameterSlots(client_params + 1)
        edits: list[tuple[int, int, str]] = []
        from_items: list[tuple[int, int, str]] = []  # FROM items of whole rows (after the calls' own edits)
        appended: list[tuple[int, int, str]] = []
        slotted: list[int] = []
        nested: dict[int, str] = {}  # constant calls inside a spliced call's hidden columns: their SQL
        for plan in planned:
            call = plan.site
            if call.parent is not None:
                if planned[call.parent].splice is not None:  # it goes upstream in a hidden column
                    slotted.append(plan.index)
                    nested[plan.index] = call_sql(call, plan.signature, slots)
                continue
            if plan.splice is not None:
                texts = [with_replacements(parse.query, a.span, calls, nested) for a in call.args]
                placeholder, hidden = splice_edits(parse.query, plan.splice, texts)
                edits.append(placeholder)
                appended.append(hidden)
                continue
            slotted.append(plan.index)
            if rows_from_item(call, plan.signature, calls):
                replacement = rows_alias(plan.index)
                if plan.fetch is None:
                    item = rows_call_item(plan.signature, slots, replacement)
                else:
                    key = argument_key(call, plan.dependent, parse.query)
                    item = rows_lookup_item(call, plan.signature, slots.value("jsonb"), key, replacement)
                from_items.append(from_item_edit(call, item))
            elif plan.fetch is None:
                replacement = call_sql(call, plan.signature, slots)
            else:
                replacement = lookup_sql(
                    call,
                    plan.resolved.signature,
                    slots.value("jsonb"),
                    argument_key(call, plan.dependent, parse.query),
                )
            edits += call_edits(call, replacement)
        query = splice(parse.query, edits + from_items + appended)
        remaining = parameter_numbers(query)
        types = [declared[i] if i < len(declared) else 0 for i in range(client_params)]
        for param, type_name in forced.items():
            if types[param] == 0 and (param + 1) not in remaining:
                types[param] = TYPE_OIDS.get(type_name, 0)  # otherwise nothing would tell its type
        for param in range(client_params):
            if types[param] == 0 and (param + 1) not in remaining:
                types[param] = TYPE_OIDS["text"]  # only in an argument expression, which casts it itself
        final_sources = tuple(
            _PlannedCall(
                p.index,
                p.site,
                p.resolved,
                tuple(
                    dataclasses.replace(src, param_type=TYPE_NAMES.get(types[src.param], "text"))
                    if src.param is not None
                    else src
                    for src in p.sources
                ),
                p.fetch,
                p.dependent,
                p.splice,
                p.over_set,
                p.scope,
            )
            for p in planned
        )
        types += [0] * len(slots.types)  # the extra parameters are typed by their casts
        return PreparedPgml(
            Parse(parse.statement, query, tuple(types)),
            client_params,
            final_sources,
            tuple(slotted),
            self.stream_plan(parse.query),
        )

    async def bind(self, prepared: PreparedPgml, bind: Bind, channel: SideChannel | None = None) -> Bound:
        """The client's Bind with the pgml results appended as the extra parameters.

        Row-dependent calls read their distinct argument tuples through ``channel`` with the client's
        own parameter values bound, so a ``WHERE id = $1`` narrows them exactly as it narrows the rows.
        Spliced calls get their constant arguments here; the portal's rows bring the rest.
        """
        if len(bind.values) != prepared.client_params:
            return Bound(bind.encode())  # the upstream reports the count mismatch as Postgres does
        results: dict[int, Any] = {}
        spliced: list[SplicedCall] = []
        reads = (
            None
            if channel is None
            else _SessionQueries(channel, bind=bind, param_types=prepared.parse.param_types)
        )
        context = CallContext(await self.engine(), reads)
        if prepared.stream is not None:
            [plan] = prepared.calls
            values = await self._bound_values(prepared, plan, bind, results, channel)
            assert channel is not None and reads is not None
            source = await self._row_source(prepared.stream, plan.resolved, values, channel, reads)
            return Bound(b"", stream=source)
        for plan in prepared.calls:
            values = await self._bound_values(prepared, plan, bind, results, channel)
            if plan.splice is not None:
                fixed = tuple(
                    (i, self._source_type(src, list(prepared.calls)), values[i])
                    for i, src in enumerate(plan.sources)
                    if i not in plan.dependent
                )
                assert reads is not None
                spliced.append(await self._preloaded(dataclasses.replace(plan.splice, fixed=fixed), reads))
                continue
            if plan.over_set is not None:  # one evaluation per value of the set-returning argument
                position = plan.over_set
                child = next(p for p in prepared.calls if p.index == plan.sources[position].call)
                items = _column_values(child.signature, plan.sources[position].field, values[position])
                rows = [[item if i == position else v for i, v in enumerate(values)] for item in items]
                results[plan.index] = await self.registry.call(context, plan.resolved, rows) if rows else []
                continue
            if plan.fetch is None:
                [results[plan.index]] = await self.registry.call(context, plan.resolved, [values])
                continue
            assert channel is not None
            fetched = await channel.side_query(plan.fetch, bind, prepared.parse.param_types)
            rows = []
            for row in fetched.rows:
                arguments = list(values)
                for position, value in zip(plan.dependent, json.loads(row[0] or "[]"), strict=True):
                    arguments[position] = value
                rows.append(arguments)
            computed = await self.registry.call(context, plan.resolved, rows) if rows else []
            signature = plan.resolved.signature
            mapping = {
                row[0]: lookup_value(signature, r) for row, r in zip(fetched.rows, computed, strict=True)
            }
            results[plan.index] = json.dumps(mapping)
        extra: list[tuple[int, bytes | None]] = []
        for index in prepared.slotted:
            plan = next(p for p in prepared.calls if p.index == index)
            if plan.fetch is not None:
                extra.append((TEXT_FORMAT, results[index].encode()))
            else:
                extra += _slot_values(plan.site, plan.signature, results[index])
        if not spliced:
            return Bound(bind.with_extra_values(extra))
        plan = SplicePlan(tuple(spliced))
        formats = bind.result_formats
        if len(formats) > 1:  # one code per column: the hidden columns come as text
            bind = dataclasses.replace(bind, result_formats=(*formats, *[0] * plan.hidden))
        return Bound(bind.with_extra_values(extra), plan, bind.result_formats)

    async def _bound_values(
        self,
        prepared: PreparedPgml,
        plan: _PlannedCall,
        bind: Bind,
        results: dict[int, Any],
        channel: SideChannel | None,
    ) -> list[Any]:
        """A planned call's argument values at Bind; expressions are evaluated by the upstream."""
        values = [self._bound_value(src, bind, results) for src in plan.sources]
        expressions = [i for i, src in enumerate(plan.sources) if src.expression is not None]
        if expressions:
            assert channel is not None
            evaluated = (
                "jsonb_build_array("
                + ", ".join(f"to_jsonb(({plan.sources[i].expression}))" for i in expressions)
                + ")::text"
            )
            fetched = await channel.side_query(
                f"{plan.scope}SELECT {evaluated}", bind, prepared.parse.param_types
            )
            for i, value in zip(expressions, json.loads(fetched.rows[0][0]), strict=True):
                values[i] = value
        return values

    def _scope(self, sql: str, call: CallSite, calls: Sequence[CallSite], expressions: list[str]) -> str:
        """The WITH queries a prepared call's expression arguments read, evaluated with them at Bind."""
        scope = visible_with(sql, call, calls, {}, " ".join(expressions)) if expressions else ""
        if mentions_pgml(scope.encode()) and any(s.calls for s in self._analyze(f"{scope}SELECT 1")):
            raise FeatureNotSupported(
                f"pgml.{call.name}: an argument reads a WITH query that calls pgml functions, which is not "
                "supported under the extended query protocol yet",
                hint="Send the statement with the simple query protocol.",
            )
        return scope

    def _fetch_for_bind(
        self, sql: str, call: CallSite, calls: Sequence[CallSite], dependent: tuple[int, ...]
    ) -> str:
        if any(c.parent is not None and calls[c.parent] is call for c in calls) or call.parent is not None:
            raise FeatureNotSupported(
                f"pgml.{call.name}: nested pgml calls with row-dependent arguments are not supported "
                "under the extended query protocol yet",
                hint="Send the statement with the simple query protocol.",
            )
        fetch = fetch_query(sql, call, calls, {}, argument_key(call, dependent, sql), "")
        # Calls, not mentions: the rows may well come from a table in schema pgml (pgml.splitters).
        if mentions_pgml(fetch.encode()) and any(s.calls for s in self._analyze(fetch)):
            raise FeatureNotSupported(
                f"pgml.{call.name}: its rows come from another pgml call, which is not supported under the "
                "extended query protocol yet",
                hint="Send the statement with the simple query protocol.",
            )
        return fetch

    @staticmethod
    def _bound_value(src: _Source, bind: Bind, results: dict[int, Any]) -> Any:
        if src.literal is not None:
            return src.literal.value
        if src.call is not None:
            return results[src.call]
        if src.expression is not None:
            return None  # filled in by the upstream's evaluation
        assert src.param is not None
        raw = bind.values[src.param]
        if raw is None:
            return None
        try:
            value = decode_parameter(src.param_type, bind.format_of(src.param), raw)
            if src.cast is not None and src.cast != src.param_type and isinstance(value, str):
                value = decode_parameter(src.cast, TEXT_FORMAT, value.encode())  # ``$1::jsonb`` of a text
            return value
        except (ValueError, UnicodeDecodeError, struct.error) as exc:
            raise InvalidParameterValue(
                f"cannot read parameter ${src.param + 1} as {src.param_type}: {exc}"
            ) from exc

    @staticmethod
    def _source(
        call: CallSite,
        position: int,
        calls: Sequence[CallSite],
        planned: list[_PlannedCall],
        declared: Sequence[int],
        query: str,
    ) -> _Source:
        argument = call.args[position]
        children = [
            p.index
            for p in planned
            if calls[p.index].parent is not None
            and calls[p.index].span.start >= argument.span.start
            and calls[p.index].span.end <= argument.span.end
        ]
        if children and calls[children[0]].span == argument.span:
            return _Source(call=children[0])
        child = calls[children[0]] if children else None
        if child is not None and child.set_returning and child.field and child.expr_span == argument.span:
            return _Source(call=children[0], field=child.field)
        local = _local_value(argument.literal)
        if local is not None:
            return _Source(literal=local)
        if argument.param is not None and not argument.params[1:]:
            number = argument.param
            declared_type = (
                TYPE_NAMES.get(declared[number - 1], "text") if number <= len(declared) else UNKNOWN
            )
            return _Source(param=number - 1, param_type=argument.cast or declared_type, cast=argument.cast)
        text = argument.span.text(query)
        if children or mentions_pgml(text.encode()):
            raise FeatureNotSupported(
                f"pgml.{call.name}: under the extended query protocol a pgml call inside an argument must be "
                "the whole argument",
                hint="Send the statement with the simple query protocol.",
            )
        return _Source(param_type=_type_hint(argument), expression=text)

    @staticmethod
    def _source_type(src: _Source, planned: list[_PlannedCall]) -> str:
        if src.literal is not None:
            return src.literal.type
        if src.call is not None:
            returns = next(p for p in planned if p.index == src.call).signature.returns
            if isinstance(returns, PgType):
                return returns.name
            column = next((c for c in returns if c.name == src.field), None)
            return column.type.name if column is not None else UNKNOWN
        return src.param_type if src.param_type != "unknown" else UNKNOWN

    def _resolve_prepared(self, call: CallSite, types: Sequence[str], spliced: Sequence[int]) -> ResolvedCall:
        """A call resolved at Parse. A spliced call is resolved again when its rows are described, with its
        columns' real types; here an untyped column (``image``, not ``ARRAY[…]`` or a cast) that leaves
        several overloads fitting takes the first fitting overload's type, which only decides how the
        statement's own parameters are typed."""
        try:
            return self._resolve(call, types)
        except AmbiguousFunction:
            untyped = [i for i in spliced if types[i] == UNKNOWN]
            if not untyped:
                raise
            for signature in self.registry.signatures_of(call.name):
                parameters = {p.name: p.type for p in signature.parameters}
                guessed = list(types)
                for i in untyped:
                    name = call.args[i].name
                    if name is not None:
                        guessed[i] = parameters.get(name, UNKNOWN)
                    elif i < len(signature.parameters):
                        guessed[i] = signature.parameters[i].type
                with contextlib.suppress(ProxyError):
                    return self._resolve(call, guessed)
            raise

    def _resolve(self, call: CallSite, types: Sequence[str]) -> ResolvedCall:
        return self.registry.resolve(
            call.name, [Argument(t, a.name) for t, a in zip(types, call.args, strict=True)]
        )

    async def _evaluate(
        self,
        call: CallSite,
        texts: list[str],
        positions: Iterable[int],
        channel: SideChannel,
        scope: str = "",
    ) -> list[_Value]:
        """Constant argument values: plain literals locally, everything else by one SELECT on the session
        (after ``scope``, the WITH queries they read)."""
        positions = list(positions)
        values: dict[int, _Value | None] = {i: _local_value(call.args[i].literal) for i in positions}
        remote = [i for i in positions if values[i] is None]
        if remote:
            columns = ", ".join(
                f"pg_typeof(({texts[i]}))::text, to_jsonb(({texts[i]}))::text" for i in remote
            )
            row = (await channel.side_query(f"{scope}SELECT {columns}")).rows[0]
            for n, position in enumerate(remote):
                type_name, value = row[2 * n], row[2 * n + 1]
                values[position] = _Value(type_name or UNKNOWN, None if value is None else json.loads(value))
        return [values[i] for i in positions]  # type: ignore[misc]


async def _when_read(
    registry: Registry, context: CallContext, resolved: ResolvedCall, values: Sequence[Any]
) -> AsyncIterator[Any]:
    """One call's rows, computed when the first is asked for (after the statements before it are done)."""
    [result] = await registry.call(context, resolved, [values])
    for item in result if resolved.signature.set_returning else [result]:
        yield item


@dataclass(frozen=True, slots=True)
class _SessionQueries:
    """Side queries on the client's session for a function's implementation.

    ``writes``: the proxy answers the statement itself and the upstream is idle, so any statement may run.
    Otherwise they read from inside another statement; with ``bind`` inside the client's pipeline
    (:func:`~pgml_proxy.session.side_query.pipeline_query_messages`), which carries only a SELECT of exactly
    one column, so readers ask nothing else, anywhere, and one rule serves both protocols.
    """

    channel: SideChannel
    writes: bool = False
    bind: Bind | None = None
    param_types: Sequence[int] = ()

    async def rows(self, sql: str) -> list[list[str | None]]:
        return (await self.channel.side_query(sql, self.bind, self.param_types)).rows

    async def copy_out(self, sql: str) -> list[bytes]:
        assert self.writes  # a read-only session's queries may travel in the client's pipeline
        return (await self.channel.side_query(sql)).copied

    @property
    def in_transaction_block(self) -> bool:
        return self.channel.in_transaction_block


def _numeric(argument: ArgumentSite) -> bool:
    """The argument is visibly a number: a numeric literal, or cast to an integer type."""
    if argument.cast is not None:
        return argument.cast.lower() in ("bigint", "int8", "integer", "int", "int4", "smallint", "int2")
    literal = argument.literal
    return (
        literal is not None
        and isinstance(literal.value, int | float | Decimal)
        and not isinstance(literal.value, bool)
    )


@dataclass(frozen=True, slots=True)
class Rewritten:
    """A simple-protocol statement as it goes upstream, and the calls to splice into its rows."""

    sql: str
    splice: SplicePlan | None = None
    #: The whole answer up to CommandComplete, when the proxy answers the statement itself.
    answer: bytes | None = None
    #: Statements of the query string before the spliced one: their answers pass first.
    results_before: int = 0
    #: A PREPARE the session holds itself (its pgml calls depend on EXECUTE's arguments or on rows).
    held: HeldStatement | None = None


_SPLICED_KINDS: Final = frozenset(("SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt"))
"""Statements whose rows go to the client: a SELECT's, or the RETURNING rows of a data-changing one."""


@dataclass(frozen=True, slots=True)
class _Source:
    """Where a call argument's value comes from at Bind: a literal, a client parameter, or a nested call."""

    literal: _Value | None = None
    param: int | None = None  # 0-based
    param_type: str = UNKNOWN  # also the type an expression is known to have, if any
    call: int | None = None
    field: str | None = None  # of a nested set-returning call's rows: the column this argument takes
    expression: str | None = None  # evaluated by the upstream at each Bind, with the client's parameters
    cast: str | None = None  # written on a parameter (``$1::jsonb``): applied to the value as sent


@dataclass(frozen=True, slots=True)
class _PlannedCall:
    index: int
    site: CallSite
    resolved: ResolvedCall
    sources: tuple[_Source, ...]  # for row-dependent positions, a placeholder filled per argument tuple
    fetch: str | None = None  # row-dependent: the query for the distinct argument tuples
    dependent: tuple[int, ...] = ()  # row-dependent: the argument positions that vary per row
    splice: SplicedCall | None = None  # spliced: computed from the portal's rows
    over_set: int | None = None  # the argument that is a set-returning call's values: one result each
    scope: str = ""  # the WITH its expression arguments read (``WITH … ``), or ""

    @property
    def signature(self) -> Signature:
        """The overload's, a set when the call runs over a set-returning argument."""
        signature = self.resolved.signature
        return signature if self.over_set is None else dataclasses.replace(signature, set_returning=True)


@dataclass(frozen=True, slots=True)
class PreparedPgml:
    """A client's prepared statement that calls pgml functions, as the proxy planned it at Parse.

    The upstream holds ``parse``: the statement with each call replaced by extra parameters numbered
    after the client's. Every Bind computes the calls and supplies those parameters.
    """

    parse: Parse
    client_params: int
    calls: tuple[_PlannedCall, ...]
    slotted: tuple[int, ...]  # outermost calls, in the order their parameters follow the client's
    #: A streaming statement: never parsed upstream, its portals' rows come from the proxy.
    stream: StreamPlan | None = None

    @property
    def spliced(self) -> bool:
        """Its rows carry calls the proxy computes: Describe and Execute answers pass through a splicer."""
        return any(plan.splice is not None for plan in self.calls)

    @property
    def path(self) -> str:
        """How it runs, for metrics (a statement that both splices and materializes counts as spliced)."""
        if self.stream is not None:
            return "answer"
        if self.spliced:
            return "splice"
        return "materialize" if any(plan.fetch is not None for plan in self.calls) else "fold"


@dataclass(frozen=True, slots=True)
class Bound:
    """A Bind as it goes upstream, and for a spliced statement what its portal's rows need."""

    bind: bytes
    splice: SplicePlan | None = None
    result_formats: tuple[int, ...] = ()  # as sent upstream, hidden columns included
    stream: RowSource | None = None  # a streaming statement's rows (nothing goes upstream)


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """A statement whose rows are one streaming call's (``select``: the SELECT analysed on its own);
    with ``cursor``, a DECLARE of a cursor over it with ``options``."""

    select: StatementAnalysis
    fields: tuple[Field, ...]  # the rows' columns, in text format
    cursor: str | None = None
    options: CursorOptions = dataclasses.field(default_factory=CursorOptions)


_READ_BINARY: Final = frozenset(t.oid for t in (FLOAT4_ARRAY, TEXT, JSONB, FLOAT4, FLOAT8, INT8, BOOL))
"""Result types whose binary form the server reads back as a parameter (records and void are not)."""


def _over_set(call: CallSite, sources: Sequence[_Source], planned: Sequence[_PlannedCall]) -> int | None:
    """The argument of ``call`` that is a nested set-returning call's values, if any (one at most)."""
    sets = [
        position
        for position, src in enumerate(sources)
        if src.call is not None and next(p for p in planned if p.index == src.call).signature.set_returning
    ]
    if len(sets) > 1:
        raise FeatureNotSupported(f"pgml.{call.name} over more than one set is not supported yet")
    return sets[0] if sets else None


def _column_values(signature: Signature, field: str | None, rows: Sequence[Any]) -> list[Any]:
    """A set-returning call's values as an argument: the rows themselves, or the one column selected."""
    returns = signature.returns
    if isinstance(returns, PgType) or field is None:
        return list(rows)
    position = next(i for i, c in enumerate(returns) if c.name == field)
    return [None if row is None else row[position] for row in rows]


def _held(statement: StatementAnalysis) -> bool:
    """A PREPARE whose pgml calls can only be computed at EXECUTE."""
    return (
        statement.kind == "PrepareStmt"
        and statement.strategy is not Strategy.UNREACHABLE
        and any(row_dependent(c) or any(a.params for a in c.args) for c in statement.calls)
    )


def _slot_values(call: CallSite, signature: Signature, result: Any) -> list[tuple[int, bytes | None]]:
    """A folded call's parameter values: a scalar in its binary form (an embedding is far cheaper to
    pack than to print, and for the server to read), set-returning results as array text."""
    returns = signature.returns
    if not signature.set_returning and isinstance(returns, PgType) and returns.oid in _READ_BINARY:
        return [(BINARY_FORMAT, returns.encode(result, BINARY_FORMAT))]
    return [
        (TEXT_FORMAT, None if text is None else text.encode()) for text in slot_texts(call, signature, result)
    ]


def _type_hint(argument: ArgumentSite) -> str:
    """What an argument's text says of its type before any value is known: its cast, a record, or an array
    (of elements that overload resolution treats as untyped, so that it picks the preferred type's array)."""
    if argument.cast is not None:
        return argument.cast
    if argument.row_constructor:
        return "record"
    return f"{UNKNOWN}[]" if argument.array_constructor else UNKNOWN


def _not_materialized(call: CallSite) -> FeatureNotSupported:
    """Row-dependent positions the lookup cannot serve: RETURNING (rows not written yet) and others."""
    if call.clause is Clause.RETURNING:
        return FeatureNotSupported(
            f"pgml.{call.name} with row-dependent arguments is supported in RETURNING only as a whole "
            "column of the statement's own RETURNING list",
            hint="Return the arguments and compute it in a separate SELECT.",
        )
    return FeatureNotSupported(
        f"pgml.{call.name} with row-dependent arguments is not supported in this position yet",
        hint="Compute it in a separate SELECT.",
    )


@dataclass(frozen=True, slots=True)
class _Set:
    """The values a set-returning pgml call gives an argument of another call."""

    type: str
    values: list[Any]


def _sets_of(
    index: int, calls: Sequence[CallSite], computed: Mapping[int, tuple[Signature, Any]]
) -> dict[int, _Set]:
    """The arguments of call ``index`` that are exactly a computed set-returning call (or one field of
    its rows), by position."""
    call = calls[index]
    sets: dict[int, _Set] = {}
    for child_index, child in enumerate(calls):
        if child.parent != index or not child.set_returning or child_index not in computed:
            continue
        signature, rows = computed[child_index]
        returns = signature.returns
        for position, argument in enumerate(call.args):
            if argument.span not in (child.span, child.expr_span):
                continue
            if isinstance(returns, PgType):
                sets[position] = _Set(returns.name, list(rows))
            elif child.field is not None:
                column = next((i, c) for i, c in enumerate(returns) if c.name == child.field)
                sets[position] = _Set(column[1].type.name, [row[column[0]] for row in rows])
    return sets


def _local_value(literal: Literal | None) -> _Value | None:
    """A literal's value and type as Postgres sees it: quoted strings and NULL are untyped."""
    if literal is None or literal.cast is not None:
        return None
    value = literal.value
    if value is None or isinstance(value, str):
        return _Value(UNKNOWN, value)
    if isinstance(value, bool):
        return _Value("boolean", value)
    if isinstance(value, int):
        return _Value("integer" if -(2**31) <= value < 2**31 else "bigint", value)
    if isinstance(value, Decimal):
        return _Value("numeric", float(value))
    if all(v is None or isinstance(v, str) for v in value):
        return _Value("text[]", list(value))
    return None  # ARRAY[...] of other literals: let the server build it
