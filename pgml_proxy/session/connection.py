"""The asyncio glue of a session: moves bytes between two transports and wakes the state machines.

Everything a session decides lives in :mod:`client_side`, :mod:`upstream_side` and :mod:`startup`; this
module only reacts to transport events, so the protocol logic stays testable with byte fixtures.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pgml_proxy.errors import (
    AdminShutdown,
    ConnectionFailure,
    DuplicatePreparedStatement,
    InternalError,
    ProtocolViolation,
    ProxyError,
    QueryCanceled,
    TooManyConnections,
)
from pgml_proxy.session.client_side import ClientSide
from pgml_proxy.session.flow import ReadGate
from pgml_proxy.session.interceptor import PreparedPgml
from pgml_proxy.session.side_query import (
    SIDE_PREFIX,
    PipelineQueryReader,
    SideQueryFailed,
    SideQueryReader,
    SideQueryResult,
    SideQuerySkipped,
    pipeline_query_messages,
    side_query_messages,
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
from pgml_proxy.session.upstream_side import MARKER_PREFIX, UpstreamSide
from pgml_proxy.sql.literals import quote
from pgml_proxy.sql.text import mentions_pgml
from pgml_proxy.upstream import open_upstream, send_cancel
from pgml_proxy.wire import extended
from pgml_proxy.wire.cancel import CancelKey
from pgml_proxy.wire.codes import BIND, DESCRIBE, EXECUTE, FLUSH, PARSE, QUERY, READY_FOR_QUERY, TERMINATE
from pgml_proxy.wire.error_response import error_response
from pgml_proxy.wire.extended import Bind, Parse
from pgml_proxy.wire.framing import cstring, message
from pgml_proxy.wire.rows import COMMAND_COMPLETE, Field, row_description
from pgml_proxy.wire.startup import (
    CancelRequest,
    GSSENCRequest,
    SSLRequest,
    StartupMessage,
    parse_startup_packet,
)
from pgml_proxy.wire.status import FAILED_TRANSACTION, IDLE, IN_TRANSACTION

if TYPE_CHECKING:
    from pgml_proxy.server import ProxyServer

log = logging.getLogger("pgml_proxy.session")

_TERMINATE = message(TERMINATE, b"")
_FLUSH = message(FLUSH, b"")
_NO_PARAMETERS = Bind("", "", (), (), ())
T = TypeVar("T")


class Phase(enum.Enum):
    STARTUP = "startup"  # reading SSLRequest / GSSENCRequest / CancelRequest / StartupMessage
    CONNECTING = "connecting"  # StartupMessage read, upstream connection being opened
    RELAY = "relay"  # authentication and everything after it, relayed in both directions
    CLOSED = "closed"


class Session:
    """One client connection and its own upstream connection."""

    def __init__(self, server: ProxyServer, client: asyncio.Transport) -> None:
        self.server = server
        self.client = client
        self.client_gate = ReadGate(client)
        self.phase = Phase.STARTUP
        self.peer = client.get_extra_info("peername")
        self._startup_buffer = bytearray()
        self._tls_active = False
        self.client_side = ClientSide()
        self.upstream_side: UpstreamSide | None = None
        self.upstream: asyncio.Transport | None = None
        self.upstream_gate: ReadGate | None = None
        self.ready = False
        self._draining = False
        self._step: asyncio.Task[None] | None = None  # TLS handshake, upstream connect or interception
        self._held: list[bytes] = []  # client bytes that arrived while a statement was being intercepted
        self._intercepting = False
        self._side_reader: SideQueryReader | None = None
        self._side_done: asyncio.Future[SideQueryResult] | None = None
        self._idle_waiter: asyncio.Future[None] | None = None
        self._prepared: dict[str, PreparedPgml] = {}  # the client's statements that call pgml, by name
        # The settings as last read, with the transaction status then.
        self._settings_read: tuple[_Settings, int] | None = None
        self._owned = False  # the statement runs in a transaction the proxy opened (and will end)
        self._held: dict[str, HeldStatement] = {}  # SQL-level PREPAREs the session keeps itself
        self._markers = 0
        # What reads the upstream's answer for the client while a spliced statement's answer flows.
        self._filter: SpliceStream | StatementDescription | None = None
        # Spliced prepared statements' upstream descriptions (parameter types, columns), by name, and
        # the splicers of portals bound from them, with the RowDescription a Describe of the portal gets.
        self._described: dict[str, tuple[tuple[int, ...], list[Field]]] = {}
        self._portals: dict[str, tuple[RowSplicer, bytes]] = {}

    # -- state -------------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Requests the client sent that the upstream has not yet answered with ReadyForQuery."""
        answered = self.upstream_side.ready_count if self.upstream_side else 0
        return self.client_side.requests - answered

    @property
    def proxy_key(self) -> CancelKey | None:
        return self.upstream_side.proxy_key if self.upstream_side else None

    # -- client events -----------------------------------------------------------------------------

    def client_data(self, data: bytes) -> None:
        if self.phase is Phase.RELAY:
            if self._intercepting:
                self._held.append(data)
                return
            while True:
                try:
                    out, intercepted = self.client_side.feed(data)
                except ProtocolViolation as error:
                    self.close(error)
                    return
                if out:
                    self.upstream.write(out)  # type: ignore[union-attr]
                if intercepted is None or not self._dispatch(*intercepted):
                    break
                data = b""
            if self.client_side.terminated:
                self.close()
        elif self.phase is Phase.STARTUP:
            self._startup_buffer += data
            self._read_startup_packets()
        elif self.phase is Phase.CONNECTING:
            # A client that pipelines before authenticating; replayed once the upstream is there.
            self._startup_buffer += data

    def client_lost(self, exc: Exception | None) -> None:
        if self.phase is Phase.CLOSED:
            return
        if self.client_side.mid_message:
            log.info("client %s closed the connection in the middle of a message", self.peer)
        self.close(client_gone=True)

    def client_write_paused(self) -> None:
        if self.upstream_gate is not None:
            self.upstream_gate.pause("client is slow")

    def client_write_resumed(self) -> None:
        if self.upstream_gate is not None:
            self.upstream_gate.resume("client is slow")

    # -- upstream events ---------------------------------------------------------------------------

    def upstream_data(self, data: bytes) -> None:
        if self._side_reader is not None:
            self._side_data(data)
            return
        side = self.upstream_side
        try:
            out = side.feed(data)  # type: ignore[union-attr]
        except ProtocolViolation as error:
            log.error("upstream sent an invalid message: %s", error.message)
            self.close(ConnectionFailure("upstream server sent an invalid message"))
            return
        if out:
            if self._filter is not None:
                self._filter.feed(out)
            else:
                self.client.write(out)
        if side.authenticated and not self.ready:  # type: ignore[union-attr]
            self.ready = True
            self.client_side.authenticated()
        if self._idle_waiter is not None and self.in_flight == 1 and not self._idle_waiter.done():
            self._idle_waiter.set_result(None)
        if self._draining and self.in_flight == 0 and self._filter is None:
            self.close_for_shutdown()

    def upstream_lost(self, exc: Exception | None) -> None:
        if self.phase is Phase.CLOSED:
            return
        self.upstream = None
        if self.upstream_side is not None and self.upstream_side.closed_by_fatal:
            self.close()  # the client already has the server's own FATAL error
        else:
            self.close(ConnectionFailure("server closed the connection unexpectedly"))

    def upstream_write_paused(self) -> None:
        self.client_gate.pause("upstream is slow")

    def upstream_write_resumed(self) -> None:
        self.client_gate.resume("upstream is slow")

    # -- startup -----------------------------------------------------------------------------------

    def _read_startup_packets(self) -> None:
        while self.phase is Phase.STARTUP:
            try:
                packet, size = parse_startup_packet(self._startup_buffer)
            except ProxyError as error:
                self.close(error)
                return
            if packet is None:
                return
            del self._startup_buffer[:size]
            if isinstance(packet, SSLRequest):
                self._answer_ssl_request()
            elif isinstance(packet, GSSENCRequest):
                self.client.write(b"N")
            elif isinstance(packet, CancelRequest):
                self.server.cancel(packet.key)
                self.close()
            else:
                self._begin(packet)

    def _answer_ssl_request(self) -> None:
        context = self.server.tls_context
        if self._tls_active or self._startup_buffer:
            # Bytes after an SSLRequest would be read as if encrypted: Postgres rejects it too.
            self.close(ProtocolViolation("received unencrypted data after SSL request"))
            return
        if context is None:
            self.client.write(b"N")
            return
        self.client.write(b"S")
        self.client_gate.pause("tls handshake")
        self._run_step(self._start_tls(context))

    def _run_step(self, step: Coroutine[Any, Any, None]) -> None:
        """Startup steps that wait on I/O; the session holds the task so it is not collected midway."""
        self._step = asyncio.get_running_loop().create_task(step)

    async def _start_tls(self, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(
                self.client, self.client.get_protocol(), context, server_side=True
            )
        except (OSError, ConnectionError, asyncio.CancelledError) as exc:
            log.info("TLS handshake with %s failed: %s", self.peer, exc)
            self.close(client_gone=True)
            return
        if transport is None:
            self.close(client_gone=True)
            return
        self._tls_active = True
        self.client = transport
        self.client_gate = ReadGate(transport)

    def _begin(self, startup: StartupMessage) -> None:
        if not self.server.admit(self):
            self.close(TooManyConnections("sorry, too many clients already"))
            return
        self.phase = Phase.CONNECTING
        self._run_step(self._connect_upstream(startup))

    async def _connect_upstream(self, startup: StartupMessage) -> None:
        try:
            transport, _ = await open_upstream(self.server.upstream, lambda: UpstreamProtocol(self))
        except ProxyError as error:
            log.warning("%s", error.message)
            self.close(error)
            return
        if self.phase is Phase.CLOSED:
            transport.close()
            return
        self.upstream = transport
        self.upstream_gate = ReadGate(transport)
        self.upstream_side = UpstreamSide(startup.minor, lambda minor: self.server.issue_key(self, minor))
        self.phase = Phase.RELAY
        log.debug("session %s user=%s database=%s relaying", self.peer, startup.user, startup.database)
        transport.write(startup.raw)
        if self._startup_buffer:
            early = bytes(self._startup_buffer)
            self._startup_buffer.clear()
            self.client_data(early)

    # -- interception ------------------------------------------------------------------------------

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
        self.upstream.write(data)  # type: ignore[union-attr]

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
            self._forward(message(PARSE, body))
            return True
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
            await self.side_query("SELECT 1", _NO_PARAMETERS)
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

        await _failing_with(execute(), self._fail_in_pipeline)

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
        self.upstream_side.markers[name] = b"" if silently else error_response(error)  # type: ignore[union-attr]
        self._forward(extended.describe_statement(name))

    def _hold(self, work: Coroutine[Any, Any, None]) -> None:
        """Hold the client's stream while ``work`` runs; what follows keeps its place behind it."""
        self._intercepting = True
        self.client_gate.pause("intercepting")
        self._run_step(self._then_resume(work))

    async def _then_resume(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        finally:
            self._idle_waiter = None
            self._intercepting = False
        if self.phase is Phase.RELAY:
            self.client_gate.resume("intercepting")
            held = b"".join(self._held)
            self._held.clear()
            self.client_data(held)  # also scans what followed the intercepted message

    async def _run_bind(self, prepared: PreparedPgml, bind: Bind) -> None:
        async def compute() -> None:
            interceptor = self.server.interceptor
            try:
                settings = await self._settings(in_pipeline=True)
                bound = await _bounded(interceptor.bind(prepared, bind, self), settings.timeout)
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

        await _failing_with(compute(), self._fail_in_pipeline)

    def _side_query_failed(self, failure: SideQueryFailed) -> None:
        """The client hears a failed side query's error as its own statement's (in a pipeline, in place of
        the message the side query served: the upstream now skips to the client's Sync)."""
        self.client.write(b"".join(failure.result.passthrough) + (failure.result.error or b""))

    async def _run_query(self, query: bytes) -> None:
        async def rewrite() -> None:
            if self.in_flight > 1:  # earlier requests first: side queries need an idle upstream
                self._idle_waiter = asyncio.get_running_loop().create_future()
                await self._idle_waiter
            sql = query[:-1].decode()
            status = self.upstream_side.transaction_status  # type: ignore[union-attr]
            if status not in (IDLE, IN_TRANSACTION):
                self._forward(message(QUERY, query))
                return
            loop = asyncio.get_running_loop()
            settings = await self._settings()
            timeout = settings.timeout
            started = loop.time()
            interceptor = self.server.interceptor
            digits = settings.extra_float_digits
            command = interceptor.session_command(sql) if self._held else None
            if command is not None:
                held = self._held.get(command.name or "")
                if command.kind == "execute" and held is not None:
                    sql = held.executed(sql, command)
                elif command.kind == "deallocate" and held is not None:
                    self._forget_held(command.name)
                    self._answer_command("DEALLOCATE", status)
                    return
                elif command.name is None:  # DEALLOCATE ALL, DISCARD ALL: the upstream's own go as well
                    self._forget_held(None)
            try:
                rewritten = await _bounded(interceptor.rewrite(sql, self, digits), timeout)
            except BaseException as failure:
                if self._owned:
                    await self._end_owned("ROLLBACK")
                    if isinstance(failure, SideQueryFailed):
                        failure.result.status = IDLE  # the client never was in a transaction block
                raise
            if rewritten.answer is not None:
                self.client.write(rewritten.answer + _ready(status))
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
            await _failing_with(rewrite(), self._fail_statement)
        except SideQueryFailed as failure:
            self._answer_from_side(failure.result)

    async def _hold_statement(self, held: HeldStatement, status: int) -> None:
        """PREPARE of a statement the session keeps itself; its name must be free here and upstream."""
        taken = await self.side_query(
            f"SELECT count(*) FROM pg_prepared_statements WHERE name = {quote(held.name)}"
        )
        if held.name in self._held or taken.rows[0][0] != "0":
            raise DuplicatePreparedStatement(f'prepared statement "{held.name}" already exists')
        self._held[held.name] = held
        self.client_side.track_held_statements(True)
        self._answer_command("PREPARE", status)

    def _forget_held(self, name: str | None) -> None:
        """DEALLOCATE of one held statement, or (None) of all of them."""
        if name is None:
            self._held.clear()
        else:
            self._held.pop(name, None)
        if not self._held:
            self.client_side.track_held_statements(False)

    def _answer_command(self, tag: str, status: int) -> None:
        """Complete the client's Query with ``tag``, the proxy having done all there was to do."""
        self.client.write(message(COMMAND_COMPLETE, cstring(tag)) + _ready(status))
        self.upstream_side.answered_by_proxy(status)  # type: ignore[union-attr]

    async def own_snapshot(self) -> None:
        """Before a materialized call reads its arguments: outside a transaction block, open one of the
        proxy's own (REPEATABLE READ), so the argument read and the statement see the same rows."""
        if not self._owned and self.upstream_side.transaction_status == IDLE:  # type: ignore[union-attr]
            await self.side_query("BEGIN ISOLATION LEVEL REPEATABLE READ")
            self._owned = True

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
        self.client.write(_ready(status) + outcome.after)
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
            result = await (self.side_query(sql, _NO_PARAMETERS) if in_pipeline else self.side_query(sql))
            timeout, digits = (result.rows[0][0] or "0 1").split()
            self._settings_read = (_Settings(_duration(timeout), int(digits)), status)
        return self._settings_read[0]

    async def side_query(
        self, sql: str, bind: Bind | None = None, param_types: Sequence[int] = ()
    ) -> SideQueryResult:
        """Run one statement on this session's upstream connection; raise SideQueryFailed on its error.

        With ``bind`` it runs inside the client's pipeline, with the client's parameter values.
        """
        reader: SideQueryReader | PipelineQueryReader
        side = self.upstream_side
        assert side is not None
        if bind is not None and side.skipping_to_sync:
            raise SideQuerySkipped  # it would never be answered
        self._markers += 1
        name = f"{SIDE_PREFIX}{self._markers}"
        if bind is None:
            request, reader = side_query_messages(sql, name), SideQueryReader()
        else:
            request, reader = pipeline_query_messages(sql, bind, param_types, name), PipelineQueryReader(name)
        self._side_reader = reader
        self._side_done = asyncio.get_running_loop().create_future()
        self.upstream.write(request)  # type: ignore[union-attr]
        result = await self._side_done
        if isinstance(reader, PipelineQueryReader) and reader.skipped:
            raise SideQuerySkipped
        if result.error is not None:
            if bind is not None:
                side.skipping_to_sync = True  # the client hears of it as its own error
            raise SideQueryFailed(result)
        return result

    def _side_data(self, data: bytes) -> None:
        reader = self._side_reader
        assert reader is not None
        theirs = reader.feed(data)  # a pipeline side query shares the stream with the client's answers
        if reader.done:
            self._side_reader = None
            if self._side_done is not None and not self._side_done.done():
                self._side_done.set_result(reader.result)
            elif reader.result.error is not None and isinstance(reader, PipelineQueryReader):
                # Nobody waits any more (the statement was cancelled): the error is still the client's.
                theirs = reader.result.error + theirs
        if theirs:
            self.upstream_data(theirs)

    def _answer_from_side(self, result: SideQueryResult) -> None:
        """The side query's error is the statement's error; its ReadyForQuery answers the client."""
        self.client.write(b"".join(result.passthrough) + (result.error or b"") + _ready(result.status))
        self.upstream_side.answered_by_proxy(result.status)  # type: ignore[union-attr]

    def _fail_statement(self, error: ProxyError) -> None:
        """Report a proxy-side failure so that client and upstream agree on the transaction's fate."""
        side = self.upstream_side
        if side is not None and side.transaction_status == IN_TRANSACTION:
            # The upstream raises the same error itself, aborting its transaction block as the client expects.
            self._forward(message(QUERY, raise_statement(error).encode() + b"\x00"))
            return
        self.client.write(error_response(error) + _ready(IDLE))
        if side is not None:
            side.answered_by_proxy(IDLE)

    # -- shutdown ----------------------------------------------------------------------------------

    def drain(self) -> None:
        """Finish at the next idle moment: running statements complete, then the session closes."""
        if self.phase is not Phase.RELAY or self.in_flight == 0:
            self.close_for_shutdown()
        else:
            self._draining = True

    def close_for_shutdown(self) -> None:
        self.close(AdminShutdown("terminating connection due to administrator command"))

    def cancel(self) -> None:
        """Cancel what the session is running: proxy-side work, and whatever runs upstream."""
        if isinstance(self._filter, SpliceStream):
            self._filter.cancel(QueryCanceled("canceling statement due to user request"))
            if self._filter.upstream_done:
                return
        elif self._intercepting and self._step is not None and not self._step.done():
            self._step.cancel()
            if self._side_reader is None and self.in_flight <= 1:
                # Nothing runs upstream for this client: a cancel sent there could only hit what the
                # client sends next.
                return
        side = self.upstream_side
        if side is None or side.upstream_key is None:
            return
        self.server.spawn(send_cancel(self.server.upstream, side.upstream_key.cancel_request()), "cancel")

    def close(self, error: ProxyError | None = None, *, client_gone: bool = False) -> None:
        """End the session: tell the client why (if it can still hear), release the upstream."""
        if self.phase is Phase.CLOSED:
            return
        busy = self.phase is Phase.RELAY and self.in_flight > 0
        self.phase = Phase.CLOSED
        log.debug("session %s closed: %s", self.peer, error.message if error else "normally")
        if error is not None and not client_gone and not self.client.is_closing():
            self.client.write(error_response(error))
        self.client.close()
        if self._step is not None and not self._step.done():
            self._step.cancel()  # nobody is left to hear how proxy-side work ends
        if self.upstream is not None:
            if busy:
                # Closing the socket alone would leave the statement running until it next writes.
                self.cancel()
            elif not self.upstream.is_closing():
                self.upstream.write(_TERMINATE)
            self.upstream.close()
        self.server.forget(self)


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


async def _bounded(work: Awaitable[T], timeout: float | None) -> T:
    try:
        return await asyncio.wait_for(work, timeout)
    except TimeoutError:
        raise QueryCanceled("canceling statement due to statement timeout") from None


async def _failing_with(work: Coroutine[Any, Any, None], fail: Callable[[ProxyError], None]) -> None:
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


def _ready(status: int) -> bytes:
    return message(READY_FOR_QUERY, bytes((status,)))


def raise_statement(error: ProxyError) -> str:
    """A statement that makes the upstream raise ``error`` with its SQLSTATE, message, detail and hint."""
    options = [f"ERRCODE = {quote(error.sqlstate)}", f"MESSAGE = {quote(error.message)}"]
    if error.detail:
        options.append(f"DETAIL = {quote(error.detail)}")
    if error.hint:
        options.append(f"HINT = {quote(error.hint)}")
    return f"DO $pgml_proxy$ BEGIN RAISE EXCEPTION USING {', '.join(options)}; END $pgml_proxy$"


class ClientProtocol(asyncio.Protocol):
    """Transport callbacks of a client connection, handed to its session."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.session: Session

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.session = Session(self.server, transport)  # type: ignore[arg-type]
        self.server.track(self.session)

    def data_received(self, data: bytes) -> None:
        self.session.client_data(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.client_lost(exc)

    def pause_writing(self) -> None:
        self.session.client_write_paused()

    def resume_writing(self) -> None:
        self.session.client_write_resumed()


class UpstreamProtocol(asyncio.Protocol):
    """Transport callbacks of a session's upstream connection."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def data_received(self, data: bytes) -> None:
        self.session.upstream_data(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.upstream_lost(exc)

    def pause_writing(self) -> None:
        self.session.upstream_write_paused()

    def resume_writing(self) -> None:
        self.session.upstream_write_resumed()
