"""The asyncio glue of a session: moves bytes between two transports and wakes the state machines.

Everything a session decides lives in :mod:`client_side`, :mod:`upstream_side` and :mod:`startup`; this
module only reacts to transport events, so the protocol logic stays testable with byte fixtures.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import ssl
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pgml_engines import notices

from pgml_proxy import metrics
from pgml_proxy.errors import (
    AdminShutdown,
    ConnectionFailure,
    ProtocolViolation,
    ProxyError,
    QueryCanceled,
    TooManyConnections,
)
from pgml_proxy.functions.admin import MAY_ADMINISTER
from pgml_proxy.metrics import RELAY
from pgml_proxy.session.client_side import ClientSide
from pgml_proxy.session.extension_commands import ExtensionCommands
from pgml_proxy.session.flow import ReadGate
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
    SpliceStream,
)
from pgml_proxy.session.upstream_side import UpstreamSide
from pgml_proxy.upstream import open_upstream, send_cancel
from pgml_proxy.wire.cancel import CancelKey
from pgml_proxy.wire.codes import FLUSH, NOTICE_RESPONSE, TERMINATE
from pgml_proxy.wire.error_response import (
    MESSAGE,
    SEVERITY,
    SEVERITY_NONLOCALIZED,
    SQLSTATE,
    encode_fields,
    error_response,
)
from pgml_proxy.wire.extended import Bind
from pgml_proxy.wire.framing import message
from pgml_proxy.wire.startup import (
    CancelRequest,
    GSSENCRequest,
    SSLRequest,
    StartupMessage,
    parse_startup_packet,
)

if TYPE_CHECKING:
    from pgml_proxy.server import ProxyServer

log = logging.getLogger("pgml_proxy.session")

_TERMINATE = message(TERMINATE, b"")
_FLUSH = message(FLUSH, b"")
T = TypeVar("T")


class Phase(enum.Enum):
    STARTUP = "startup"  # reading SSLRequest / GSSENCRequest / CancelRequest / StartupMessage
    CONNECTING = "connecting"  # StartupMessage read, upstream connection being opened
    RELAY = "relay"  # authentication and everything after it, relayed in both directions
    CLOSED = "closed"


class Session(ExtensionCommands):
    """One client connection and its own upstream connection."""

    def __init__(self, server: ProxyServer, client: asyncio.Transport) -> None:
        super().__init__()
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
        self._markers = 0
        self._may_administer = False

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
                forwarded = self.server.cancel(packet.key)
                if forwarded is None:
                    self.close()
                else:  # as the postmaster does, close once the backend is signalled: the client waits
                    # for that before its next query, which a late cancel would otherwise hit
                    forwarded.add_done_callback(lambda _: self.close())
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
        # The login role, which the upstream authenticates: SET ROLE later changes nothing here.
        admins = self.server.admin_users
        self._may_administer = not admins or startup.user in admins
        log.debug("session %s user=%s database=%s relaying", self.peer, startup.user, startup.database)
        transport.write(startup.raw)
        if self._startup_buffer:
            early = bytes(self._startup_buffer)
            self._startup_buffer.clear()
            self.client_data(early)

    # -- holding the client's stream while proxy-side work runs ------------------------------------

    def _hold(self, work: Coroutine[Any, Any, None]) -> None:
        """Hold the client's stream while ``work`` runs; what follows keeps its place behind it."""
        self._intercepting = True
        self.client_gate.pause("intercepting")
        self._run_step(self._then_resume(work))

    async def _then_resume(self, work: Coroutine[Any, Any, None]) -> None:
        notices.SINK.set(self.notice)  # engine notices raised by this work go to this client
        MAY_ADMINISTER.set(self._may_administer)
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

    def notice(self, severity: str, text: str) -> None:
        """A NoticeResponse to the client now (engine progress, ignored arguments); psql prints it."""
        code = "01000" if severity == "WARNING" else "00000"
        fields = {SEVERITY: severity, SEVERITY_NONLOCALIZED: severity, SQLSTATE: code, MESSAGE: text}
        if not self.client.is_closing():
            self.client.write(encode_fields(NOTICE_RESPONSE, fields))

    # -- side queries ------------------------------------------------------------------------------

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

    # -- shutdown ----------------------------------------------------------------------------------

    def drain(self) -> None:
        """Finish at the next idle moment: running statements complete, then the session closes."""
        if self.phase is not Phase.RELAY or self.in_flight == 0:
            self.close_for_shutdown()
        else:
            self._draining = True

    def close_for_shutdown(self) -> None:
        self.close(AdminShutdown("terminating connection due to administrator command"))

    def cancel(self) -> asyncio.Task[None] | None:
        """Cancel what the session is running: proxy-side work, and whatever runs upstream (the cancel
        sent there, which is done once the upstream has it)."""
        if isinstance(self._filter, SpliceStream):
            self._filter.cancel(QueryCanceled("canceling statement due to user request"))
            if self._filter.upstream_done:
                return None
        elif self._intercepting and self._step is not None and not self._step.done():
            self._step.cancel()
            if self._side_reader is None and self.in_flight <= 1:
                # Nothing runs upstream for this client: a cancel sent there could only hit what the
                # client sends next.
                return None
        side = self.upstream_side
        if side is None or side.upstream_key is None:
            return None
        forwarded = self.server.spawn(
            send_cancel(self.server.upstream, side.upstream_key.cancel_request()), "cancel"
        )
        # The proxy may answer the canceled statement before the upstream has the cancel (a splice's error
        # is its own): the client's next statement waits for it, so that the cancel cannot land on that one.
        self.client_gate.pause("cancel on its way")
        forwarded.add_done_callback(lambda _: self.client_gate.resume("cancel on its way"))
        return forwarded

    def close(self, error: ProxyError | None = None, *, client_gone: bool = False) -> None:
        """End the session: tell the client why (if it can still hear), release the upstream."""
        if self.phase is Phase.CLOSED:
            return
        busy = self.phase is Phase.RELAY and self.in_flight > 0
        self.phase = Phase.CLOSED
        log.debug("session %s closed: %s", self.peer, error.message if error else "normally")
        if error is not None and not client_gone and not self.client.is_closing():
            self.client.write(error_response(error))
            metrics.error(error.sqlstate)
        self.client.close()
        if self._step is not None and not self._step.done():
            self._step.cancel()  # nobody is left to hear how proxy-side work ends
        self.close_streams()
        if self.upstream is not None:
            if busy:
                # Closing the socket alone would leave the statement running until it next writes.
                self.cancel()
            elif not self.upstream.is_closing():
                self.upstream.write(_TERMINATE)
            self.upstream.close()
        self.server.forget(self)


class ClientProtocol(asyncio.Protocol):
    """Transport callbacks of a client connection, handed to its session."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.session: Session

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.session = Session(self.server, transport)  # type: ignore[arg-type]
        self.server.track(self.session)

    def data_received(self, data: bytes) -> None:
        RELAY.client_bytes += len(data)
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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        metrics.UPSTREAM_CONNECTIONS.inc()

    def data_received(self, data: bytes) -> None:
        RELAY.upstream_bytes += len(data)
        self.session.upstream_data(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        metrics.UPSTREAM_CONNECTIONS.dec()
        self.session.upstream_lost(exc)

    def pause_writing(self) -> None:
        self.session.upstream_write_paused()

    def resume_writing(self) -> None:
        self.session.upstream_write_resumed()
