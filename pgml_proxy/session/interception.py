"""The half of a session that runs statements calling pgml: dispatching intercepted messages, folding,
answering, splicing and materializing them through the interceptor, held SQL-level PREPAREs, the
proxy's own transactions, and failing a statement so that client and upstream agree.

:class:`Interception` is a part of :class:`~pgml_proxy.session.connection.Session`, kept apart so the
connection module stays the transport glue; it uses the session's transports, sides and side queries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from pgml_proxy import metrics
from pgml_proxy.errors import (
    DuplicatePreparedStatement,
    InternalError,
    ProxyError,
    QueryCanceled,
)
from pgml_proxy.session.interceptor import PreparedPgml
from pgml_proxy.session.side_query import (
    SideQueryFailed,
    SideQueryResult,
    SideQuerySkipped,
)
from pgml_proxy.session.splice import (
    EXECUTE_ENDS,
    RowSplicer,
    SpliceOutcome,
    SpliceStream,
    StatementDescription,
    portal_fields,
)
from pgml_proxy.session.sql_prepared import HeldStatement
from pgml_proxy.session.upstream_side import MARKER_PREFIX
from pgml_proxy.sql.literals import quote
from pgml_proxy.sql.text import KEEP_OWN_TRANSACTION, mentions_pgml
from pgml_proxy.wire import extended
from pgml_proxy.wire.codes import BIND, DESCRIBE, EXECUTE, FLUSH, PARSE, QUERY, READY_FOR_QUERY
from pgml_proxy.wire.error_response import error_response
from pgml_proxy.wire.extended import Bind, Parse
from pgml_proxy.wire.framing import cstring, message
from pgml_proxy.wire.rows import COMMAND_COMPLETE, Field, row_description
from pgml_proxy.wire.status import FAILED_TRANSACTION, IDLE, IN_TRANSACTION

log = logging.getLogger("pgml_proxy.session")

_FLUSH = message(FLUSH, b"")
NO_PARAMETERS = Bind("", "", (), (), ())
T = TypeVar("T")


class Interception:
    """Statements that call pgml, for :class:`Session` (which inherits it)."""

    def __init__(self) -> None:
        self._prepared: dict[str, PreparedPgml] = {}  # the client's statements that call pgml, by name
        # The settings as last read, with the transaction status then.
        self._settings_read: tuple[_Settings, int] | None = None
        self._owned = False  # the statement runs in a transaction the proxy opened (and will end)
        self._held_statements: dict[str, HeldStatement] = {}  # SQL-level PREPAREs the session keeps itself
        # What reads the upstream's answer for the client while a spliced statement's answer flows.
        self._filter: SpliceStream | StatementDescription | None = None
        # Spliced prepared statements' upstream descriptions (parameter types, columns), by name, and
        # the splicers of portals bound from them, with the RowDescription a Describe of the portal gets.
        self._described: dict[str, tuple[tuple[int, ...], list[Field]]] = {}
        self._portals: dict[str, tuple[RowSplicer, bytes]] = {}

    def _dispatch(self, kind: int, body: bytes) -> bool:
        """Handle an intercepted message; False when it holds the stream until async work is done."""
        if kind == QUERY:
            self._hold(self._run_query(body))
            return False
        if kind == PARSE:
            return self._on_parse(body)
        if kind == BIND:
            bind = Bind.decode(body)
            self._forget_portal(bind.portal)
            prepared = self._prepared.get(bind.statement)
            if prepared is not None:
                self._hold(self._run_bind(prepared, bind))
                return False
            self._forward(message(kind, body))
            return True
        if kind == EXECUTE:
            portal = self._portals.get(extended.execute_portal(body))
            if portal is None:
                self._forward(message(kind, body))
                return True
            self._hold(self._run_execute(portal[0], body))
            return False
        # Describe or Close
        which, name = extended.target(body)
        if kind == DESCRIBE:
            answer = self._describe_answer(which, name)
            if answer is not None:
                self._hold(self._answer_in_pipeline(answer, message(kind, body)))
                return False
            if which == "S":
                prepared = self._prepared.get(name)
                keep = prepared.client_params if prepared is not None else None
                self.upstream_side.expect_parameter_description(self.client_side.requests, keep)  # type: ignore[union-attr]
        elif which == "S":
            self._forget_statement(name)
        else:
            self._forget_portal(name)
        self._forward(message(kind, body))
        return True

    def _describe_answer(self, which: str, name: str) -> bytes | None:
        """What a Describe of a spliced statement or portal gets, from the proxy (None: not spliced)."""
        if which == "P":
            portal = self._portals.get(name)
            return portal[1] if portal is not None else None
        prepared = self._prepared.get(name)
        described = self._described.get(name)
        if prepared is None or described is None:
            return None
        parameters, fields = described
        visible = fields[: len(fields) - sum(len(p.splice.dependent) for p in prepared.calls if p.splice)]
        names = {p.splice.placeholder: p.site.column_name or p.site.name for p in prepared.calls if p.splice}
        shown = [f.renamed(names[f.name]) if f.name in names else f for f in visible]
        return extended.parameter_description(parameters[: prepared.client_params]) + row_description(shown)

    def _forward(self, data: bytes) -> None:
        upstream = self.upstream
        if upstream is None or upstream.is_closing():
            # The session closed under proxy-side work (its upstream lost, its client gone) and cancelled
            # it: the statement's failure has nowhere to go, as a closed socket would drop it.
            return
        upstream.write(data)

    def _on_parse(self, body: bytes) -> bool:
        """A Parse that calls pgml goes upstream with the calls replaced by extra parameters."""
        parse = Parse.decode(body)
        self._forget_statement(parse.statement)
        try:
            prepared = self.server.interceptor.prepare(parse) if mentions_pgml(body) else None
        except ProxyError as error:
            self._fail_in_pipeline(error)
            return True
        except Exception as exc:  # a bug of ours fails the statement, never the session or the proxy
            log.exception("planning a prepared statement failed")
            self._fail_in_pipeline(InternalError(f"pgml-proxy failed to prepare the statement: {exc}"))
            return True
        if prepared is None:
            metrics.statement("fast")
            self._forward(message(PARSE, body))
            return True
        metrics.statement(prepared.path)
        self._prepared[parse.statement] = prepared
        self.client_side.track_statements(True)
        if prepared.spliced:
            self._hold(self._parse_spliced(prepared))
            return False
        self._forward(prepared.parse.encode())
        return True

    async def _parse_spliced(self, prepared: PreparedPgml) -> None:
        """Parse a spliced statement and describe it for the proxy: its portals are described from that."""
        parse = prepared.parse
        if not await self._barrier():
            self._forward(parse.encode())
            return
        capture = StatementDescription(self.client.write)
        self._filter = capture
        try:
            self._forward(parse.encode() + extended.describe_statement(parse.statement) + _FLUSH)
            described = await capture.done
        finally:
            self._filter = None
        if described is not None:
            self._described[parse.statement] = described

    async def _barrier(self) -> bool:
        """Wait until the upstream has answered everything sent before, so what comes next is ours.

        False when the client's pipeline has failed (the upstream skips to Sync); the client then got
        the error that its next message would have met.
        """
        try:
            await self.side_query("SELECT 1", NO_PARAMETERS)
        except SideQuerySkipped:
            return False
        except SideQueryFailed as failure:
            self._side_query_failed(failure)
            return False
        return True

    async def _answer_in_pipeline(self, answer: bytes, request: bytes) -> None:
        """Answer a client's message in its place in the pipeline (nothing, if the pipeline failed)."""
        if await self._barrier():
            self.client.write(answer)
        else:
            self._forward(request)  # skipped by the upstream as well

    async def _run_execute(self, splicer: RowSplicer, body: bytes) -> None:
        """Execute a spliced portal: its rows pass through the splicer on their way to the client."""

        async def execute() -> None:
            if not await self._barrier():
                self._forward(message(EXECUTE, body))
                return
            settings = await self._settings(in_pipeline=True)
            request = message(EXECUTE, body) + _FLUSH
            outcome = await self._stream_answer(request, splicer, settings.timeout, ends=EXECUTE_ENDS)
            if outcome.error is None:
                self.client.write(outcome.end + outcome.after)
                return
            # The client has the error: the upstream must fail here as well, and that error is dropped.
            self.client.write(outcome.after)
            self._fail_in_pipeline(outcome.error, silently=True)

        await failing_with(execute(), self._fail_in_pipeline)

    def _forget_portal(self, name: str) -> None:
        if self._portals.pop(name, None) is not None and not self._portals:
            self.client_side.track_executes(False)

    def _forget_statement(self, name: str) -> None:
        self._described.pop(name, None)
        if self._prepared.pop(name, None) is not None and not self._prepared:
            self.client_side.track_statements(False)

    def _fail_in_pipeline(self, error: ProxyError, *, silently: bool = False) -> None:
        """Fail at this point of the client's pipeline: the upstream fails here too (so it skips to Sync
        and aborts a transaction block), and its error is swapped for ours on the way back (or dropped,
        ``silently``, when the client has ours already)."""
        self._markers += 1
        name = f"{MARKER_PREFIX}{self._markers}"
        if not silently:
            metrics.error(error.sqlstate)
        self.upstream_side.markers[name] = b"" if silently else error_response(error)  # type: ignore[union-attr]
        self._forward(extended.describe_statement(name))

    async def _run_bind(self, prepared: PreparedPgml, bind: Bind) -> None:
        async def compute() -> None:
            interceptor = self.server.interceptor
            try:
                settings = await self._settings(in_pipeline=True)
                bound = await bounded(interceptor.bind(prepared, bind, self), settings.timeout)
            except SideQuerySkipped:
                self._forward(bind.encode())  # skipped too, like everything after the client's error
                return
            except SideQueryFailed as failure:
                self._side_query_failed(failure)
                self._forward(bind.encode())
                return
            described = self._described.get(bind.statement)
            if bound.splice is not None and described is not None:
                splicer = RowSplicer(
                    bound.splice,
                    interceptor.registry,
                    await interceptor.engine(),
                    settings.extra_float_digits,
                )
                row_description = splicer.describe_fields(portal_fields(described[1], bound.result_formats))
                self._portals[bind.portal] = (splicer, row_description)
                self.client_side.track_executes(True)
            self._forward(bound.bind)

        await failing_with(compute(), self._fail_in_pipeline)

    def _side_query_failed(self, failure: SideQueryFailed) -> None:
        """The client hears a failed side query's error as its own statement's (in a pipeline, in place of
        the message the side query served: the upstream now skips to the client's Sync)."""
        self.client.write(b"".join(failure.result.passthrough) + (failure.result.error or b""))

    async def _await_idle(self) -> None:
        """Before a Query's proxy-side work: earlier requests first, as side queries need an idle upstream."""
        if self.in_flight > 1:
            self._idle_waiter = asyncio.get_running_loop().create_future()
            await self._idle_waiter

    async def _run_query(self, query: bytes) -> None:
        async def rewrite() -> None:
            await self._await_idle()
            sql = query[:-1].decode()
            status = self.upstream_side.transaction_status  # type: ignore[union-attr]
            if status not in (IDLE, IN_TRANSACTION):
                metrics.statement("fast")
                self._forward(message(QUERY, query))
                return
            loop = asyncio.get_running_loop()
            settings = await self._settings()
            timeout = settings.timeout
            started = loop.time()
            interceptor = self.server.interceptor
            digits = settings.extra_float_digits
            command = interceptor.session_command(sql) if self._held_statements else None
            if command is not None:
                held = self._held_statements.get(command.name or "")
                if command.kind == "execute" and held is not None:
                    sql = held.executed(sql, command)
                elif command.kind == "deallocate" and held is not None:
                    metrics.statement("answer")
                    self._forget_held(command.name)
                    self._answer_command("DEALLOCATE", status)
                    return
                elif command.name is None:  # DEALLOCATE ALL, DISCARD ALL: the upstream's own go as well
                    self._forget_held(None)
            try:
                rewritten = await bounded(interceptor.rewrite(sql, self, digits), timeout)
            except BaseException as failure:
                if self._owned:
                    await self._end_owned("ROLLBACK")
                    if isinstance(failure, SideQueryFailed):
                        failure.result.status = IDLE  # the client never was in a transaction block
                raise
            metrics.statement(interceptor.path(sql, rewritten))
            if rewritten.answer is not None:
                self.client.write(rewritten.answer + ready(status))
                self.upstream_side.answered_by_proxy(status)  # type: ignore[union-attr]
                return
            if rewritten.held is not None:
                await self._hold_statement(rewritten.held, status)
                return
            if rewritten.splice is None and not self._owned:
                self._forward(message(QUERY, rewritten.sql.encode() + b"\x00"))
                return
            splicer = None
            if rewritten.splice is not None:
                engine = await interceptor.engine()
                splicer = RowSplicer(rewritten.splice, interceptor.registry, engine, digits)
            remaining = None if timeout is None else timeout - (loop.time() - started)
            await self._run_held(rewritten.sql, splicer, remaining, rewritten.results_before)

        self._owned = False
        try:
            await failing_with(rewrite(), self._fail_statement)
        except SideQueryFailed as failure:
            self._answer_from_side(failure.result)

    async def _hold_statement(self, held: HeldStatement, status: int) -> None:
        """PREPARE of a statement the session keeps itself; its name must be free here and upstream."""
        taken = await self.side_query(
            f"SELECT count(*) FROM pg_prepared_statements WHERE name = {quote(held.name)}"
        )
        if held.name in self._held_statements or taken.rows[0][0] != "0":
            raise DuplicatePreparedStatement(f'prepared statement "{held.name}" already exists')
        self._held_statements[held.name] = held
        self.client_side.track_held_statements(True)
        self._answer_command("PREPARE", status)

    def _forget_held(self, name: str | None) -> None:
        """DEALLOCATE of one held statement, or (None) of all of them."""
        if name is None:
            self._held_statements.clear()
        else:
            self._held_statements.pop(name, None)
        if not self._held_statements:
            self.client_side.track_held_statements(False)

    def _answer_command(self, tag: str, status: int) -> None:
        """Complete the client's Query with ``tag``, the proxy having done all there was to do."""
        self.client.write(message(COMMAND_COMPLETE, cstring(tag)) + ready(status))
        self.upstream_side.answered_by_proxy(status)  # type: ignore[union-attr]

    @property
    def in_transaction_block(self) -> bool:
        """The client is inside a transaction block (functions writing the catalog join it)."""
        return self.upstream_side.transaction_status == IN_TRANSACTION  # type: ignore[union-attr]

    async def own_snapshot(self) -> None:
        """Before a materialized call reads its arguments: outside a transaction block, open one of the
        proxy's own (REPEATABLE READ), so the argument read and the statement see the same rows."""
        if not self._owned and self.upstream_side.transaction_status == IDLE:  # type: ignore[union-attr]
            await self.side_query("BEGIN ISOLATION LEVEL REPEATABLE READ")
            self._owned = True
            await self.side_query(KEEP_OWN_TRANSACTION)

    async def _end_owned(self, command: str) -> None:
        """End the proxy's own transaction, if one is open; a COMMIT's error is the statement's."""
        if not self._owned:
            return
        self._owned = False
        try:
            await self.side_query(command)
        except SideQueryFailed as failure:  # a deferred constraint, say: the statement fails after all
            self._side_query_failed(failure)

    async def _run_held(
        self, sql: str, splicer: RowSplicer | None, timeout: float | None, results_before: int = 0
    ) -> None:
        """Run a statement whose answer the proxy must see to the end before the client does: a spliced
        one (its rows pass through ``splicer``), or one inside the proxy's own transaction.

        Outside a transaction block a spliced statement too runs in a transaction of the proxy's,
        committed only once every row has been computed: a failure then leaves nothing done that the
        client was told failed.
        """
        side = self.upstream_side
        assert side is not None
        if not self._owned and side.transaction_status == IDLE:
            await self.side_query("BEGIN")
            self._owned = True
            await self.side_query(KEEP_OWN_TRANSACTION)
        request = message(QUERY, sql.encode() + b"\x00")
        outcome = await self._stream_answer(request, splicer, timeout, results_before=results_before)
        status = outcome.status
        assert status is not None
        if self._owned:
            await self._end_owned(
                "COMMIT" if outcome.error is None and status == IN_TRANSACTION else "ROLLBACK"
            )
            status = IDLE
        elif outcome.error is not None and status == IN_TRANSACTION:
            # The client saw the statement fail: the upstream's transaction block must fail as well.
            with contextlib.suppress(SideQueryFailed):
                await self.side_query(raise_statement(outcome.error))
            status = FAILED_TRANSACTION
        side.transaction_changed(status)
        self.client.write(ready(status) + outcome.after)
        if self._draining and self.in_flight == 0:
            self.close_for_shutdown()

    async def _stream_answer(
        self, request: bytes, splicer: RowSplicer | None, timeout: float | None, **options: Any
    ) -> SpliceOutcome:
        """Send ``request`` upstream and pass its answer to the client through a :class:`SpliceStream`
        (``options``: where the answer ends, which statement's rows are spliced)."""
        gate = self.upstream_gate
        assert gate is not None
        stream = SpliceStream(
            splicer,
            self.client.write,
            lambda: gate.pause("splicing"),
            lambda: gate.resume("splicing"),
            **options,
        )
        self._filter = stream
        try:
            self._forward(request)
            return await stream.run(timeout)
        finally:
            self._filter = None

    async def _settings(self, *, in_pipeline: bool = False) -> _Settings:
        """The session settings proxy-side work follows: statement_timeout bounds it as it bounds the
        server's, extra_float_digits shapes the floats the proxy prints itself.

        Read once and kept until a statement mentions one or the transaction status changes (SET LOCAL
        ends with its transaction).
        """
        status = self.upstream_side.transaction_status  # type: ignore[union-attr]
        if self.client_side.settings_touched or (self._settings_read and self._settings_read[1] != status):
            self.client_side.settings_touched = False
            self._settings_read = None
        if self._settings_read is None:
            # One column: a side query inside a pipeline answers with one.
            sql = (
                "SELECT current_setting('statement_timeout') || ' ' || current_setting('extra_float_digits')"
            )
            result = await (self.side_query(sql, NO_PARAMETERS) if in_pipeline else self.side_query(sql))
            timeout, digits = (result.rows[0][0] or "0 1").split()
            self._settings_read = (_Settings(_duration(timeout), int(digits)), status)
        return self._settings_read[0]

    def _answer_from_side(self, result: SideQueryResult) -> None:
        """The side query's error is the statement's error; its ReadyForQuery answers the client."""
        self.client.write(b"".join(result.passthrough) + (result.error or b"") + ready(result.status))
        self.upstream_side.answered_by_proxy(result.status)  # type: ignore[union-attr]

    def _fail_statement(self, error: ProxyError) -> None:
        """Report a proxy-side failure so that client and upstream agree on the transaction's fate."""
        metrics.error(error.sqlstate)  # in a block, the upstream raises it for the proxy
        side = self.upstream_side
        if side is not None and side.transaction_status == IN_TRANSACTION:
            # The upstream raises the same error itself, aborting its transaction block as the client expects.
            side.expect_raised(error.sqlstate)
            self._forward(message(QUERY, raise_statement(error).encode() + b"\x00"))
            return
        self.client.write(error_response(error) + ready(IDLE))
        if side is not None:
            side.answered_by_proxy(IDLE)


@dataclass(frozen=True, slots=True)
class _Settings:
    timeout: float | None  # statement_timeout in seconds; None: no limit
    extra_float_digits: int


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(setting: str) -> float | None:
    """A duration setting as current_setting shows it (``0``, ``250ms``, ``30s``, ``5min``) in seconds."""
    number = setting.rstrip("abcdefghijklmnopqrstuvwxyz")
    seconds = float(number) * _UNITS.get(setting[len(number) :], 1e-3)
    return seconds or None


async def bounded(work: Awaitable[T], timeout: float | None) -> T:
    try:
        return await asyncio.wait_for(work, timeout)
    except TimeoutError:
        raise QueryCanceled("canceling statement due to statement timeout") from None


async def failing_with(work: Coroutine[Any, Any, None], fail: Callable[[ProxyError], None]) -> None:
    """Run a statement's proxy-side work; any failure, a bug of ours included, fails that statement only."""
    try:
        await work
    except ProxyError as error:
        fail(error)
    except asyncio.CancelledError:
        fail(QueryCanceled("canceling statement due to user request"))
    except SideQueryFailed:
        raise
    except Exception as exc:
        log.exception("pgml-proxy failed to run a statement")
        fail(InternalError(f"pgml-proxy failed to run the statement: {exc}"))


def ready(status: int) -> bytes:
    return message(READY_FOR_QUERY, bytes((status,)))


def raise_statement(error: ProxyError) -> str:
    """A statement that makes the upstream raise ``error`` with its SQLSTATE, message, detail and hint."""
    options = [f"ERRCODE = {quote(error.sqlstate)}", f"MESSAGE = {quote(error.message)}"]
    if error.detail:
        options.append(f"DETAIL = {quote(error.detail)}")
    if error.hint:
        options.append(f"HINT = {quote(error.hint)}")
    return f"DO $pgml_proxy$ BEGIN RAISE EXCEPTION USING {', '.join(options)}; END $pgml_proxy$"
