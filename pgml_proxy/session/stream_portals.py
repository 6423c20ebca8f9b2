"""Streaming statements of a session: ``SELECT pgml.transform_stream(…)``, portals bound from it, and SQL
cursors declared over it (``DECLARE … CURSOR FOR``, ``FETCH``, ``MOVE``, ``CLOSE``).

Their rows come from the proxy as the engine produces them (:mod:`streams`), so these statements never
reach the upstream: the proxy answers Parse, Bind, Describe, Execute and Close of them itself, in their
place in the client's pipeline, and answers FETCH and MOVE of its own cursors, whose text never
mentions pgml. A portal, and a cursor without HOLD, lives until the transaction it was opened in ends,
as in Postgres; closing one (or the client going away) stops its generation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pgml_proxy import metrics
from pgml_proxy.errors import (
    DuplicateCursor,
    InternalError,
    NoActiveSqlTransaction,
    ObjectNotInPrerequisiteState,
    ProxyError,
    RelayedError,
)
from pgml_proxy.session.interception import NO_PARAMETERS, Interception, bounded, failing_with, ready
from pgml_proxy.session.interceptor import PreparedPgml, StreamPlan
from pgml_proxy.session.side_query import SideQueryFailed
from pgml_proxy.session.streams import StreamPortal
from pgml_proxy.sql.cursors import CursorCommand, cursor_command
from pgml_proxy.sql.literals import quote
from pgml_proxy.sql.text import mentions_pgml
from pgml_proxy.wire import extended
from pgml_proxy.wire.codes import BIND, CLOSE, DESCRIBE, EXECUTE, PARSE
from pgml_proxy.wire.error_response import DETAIL, HINT, MESSAGE, SQLSTATE, decode_fields
from pgml_proxy.wire.extended import BIND_COMPLETE, CLOSE_COMPLETE, PARSE_COMPLETE, Bind, Parse
from pgml_proxy.wire.framing import cstring, message
from pgml_proxy.wire.rows import COMMAND_COMPLETE, NO_DATA, PORTAL_SUSPENDED, row_description
from pgml_proxy.wire.status import IN_TRANSACTION
from pgml_proxy.wire.types import BINARY_FORMAT

log = logging.getLogger("pgml_proxy.session")

_NO_DATA = message(NO_DATA, b"")


@dataclass(frozen=True, slots=True)
class _StreamStatement:
    """A client's prepared statement the proxy answers: a streaming SELECT or DECLARE (``prepared``),
    or a FETCH, MOVE or CLOSE of one of its cursors (``command``)."""

    param_types: tuple[int, ...]
    prepared: PreparedPgml | None = None
    command: CursorCommand | None = None

    @property
    def plan(self) -> StreamPlan | None:
        return self.prepared.stream if self.prepared is not None else None


@dataclass
class _Open:
    """A stream a portal or cursor reads; ``born``: the upstream's count of ended transactions then."""

    rows: StreamPortal
    born: int
    hold: bool = False


@dataclass
class _BoundPortal:
    statement: _StreamStatement
    result_formats: tuple[int, ...]
    born: int
    stream: _Open | None = None  # a streaming SELECT's rows, or the cursor a DECLARE opens


class StreamPortals(Interception):
    """Streaming statements, for :class:`~pgml_proxy.session.connection.Session` (which inherits it)."""

    def __init__(self) -> None:
        super().__init__()
        self._cursors: dict[str, _Open] = {}  # SQL cursors over streams, by name
        self._stream_statements: dict[str, _StreamStatement] = {}
        self._stream_portals: dict[str, _BoundPortal] = {}

    # -- dispatch ----------------------------------------------------------------------------------

    def _dispatch(self, kind: int, body: bytes) -> bool:
        self._drop_ended()
        if kind == PARSE:
            return self._on_stream_parse(body)
        if kind == BIND:
            bind = Bind.decode(body)
            statement = self._stream_statements.get(bind.statement)
            if statement is not None:
                self._forget_portal(bind.portal)
                self._hold(self._bind_stream(statement, bind))
                return False
        elif kind == EXECUTE:
            portal = self._stream_portals.get(extended.execute_portal(body))
            if portal is not None:
                self._hold(self._execute_stream(portal, extended.execute_limit(body), body))
                return False
        elif kind in (DESCRIBE, CLOSE):
            which, name = extended.target(body)
            answer = (
                self._describe_stream(which, name) if kind == DESCRIBE else self._close_stream(which, name)
            )
            if answer is not None:
                self._hold(self._answer_in_pipeline(answer, message(kind, body)))
                return False
        return super()._dispatch(kind, body)

    def _on_stream_parse(self, body: bytes) -> bool:
        parse = Parse.decode(body)
        try:
            statement = self._stream_statement(parse)
        except ProxyError as error:
            self._forget_statement(parse.statement)
            self._fail_in_pipeline(error)
            return True
        if statement is None:
            return super()._dispatch(PARSE, body)
        self._forget_statement(parse.statement)
        metrics.statement("answer")
        self._stream_statements[parse.statement] = statement
        self._track_streams()
        self._hold(self._answer_in_pipeline(PARSE_COMPLETE, message(PARSE, body)))
        return False

    def _stream_statement(self, parse: Parse) -> _StreamStatement | None:
        if self._cursors:
            command = self._cursor_command(parse.query)
            if command is not None:
                return _StreamStatement(parse.param_types, command=command)
        if not mentions_pgml(parse.query.encode()):
            return None
        interceptor = self.server.interceptor  # type: ignore[attr-defined]
        if interceptor.stream_plan(parse.query) is None:
            return None
        prepared = interceptor.prepare(parse)
        return _StreamStatement(prepared.parse.param_types[: prepared.client_params], prepared)

    def _cursor_command(self, sql: str) -> CursorCommand | None:
        """A FETCH, MOVE or CLOSE of one of this session's cursors (CLOSE ALL closes them here and goes
        upstream for the server's own)."""
        command = cursor_command(sql)
        if command is None:
            return None
        if command.kind == "close" and command.name is None:
            for name in list(self._cursors):
                self._close_cursor(name)
            return None
        return command if command.name in self._cursors else None

    def _forget_statement(self, name: str) -> None:
        self._stream_statements.pop(name, None)
        super()._forget_statement(name)
        self._track_streams()

    def _forget_portal(self, name: str) -> None:
        portal = self._stream_portals.pop(name, None)
        if portal is not None and portal.stream is not None and portal.statement.command is None:
            self._close_later(portal.stream)
        super()._forget_portal(name)
        self._track_streams()

    def _track_streams(self) -> None:
        self.client_side.track_streams(  # type: ignore[attr-defined]
            bool(self._cursors or self._stream_statements or self._stream_portals)
        )

    # -- lifetimes ---------------------------------------------------------------------------------

    def _ended(self) -> int:
        return self.upstream_side.transactions_ended  # type: ignore[attr-defined]

    def _drop_ended(self) -> None:
        """Forget portals, and cursors without HOLD, whose transaction has ended since they opened."""
        if not (self._cursors or self._stream_portals):
            return
        ended = self._ended()
        for name, cursor in list(self._cursors.items()):
            if not cursor.hold and cursor.born != ended:
                self._close_cursor(name)
        for name, portal in list(self._stream_portals.items()):
            if portal.born != ended:
                self._forget_portal(name)

    def _close_cursor(self, name: str) -> None:
        self._close_later(self._cursors.pop(name))
        self._track_streams()

    def _close_later(self, stream: _Open) -> None:
        self.server.spawn(stream.rows.close(), "closing a stream")  # type: ignore[attr-defined]

    def close_streams(self) -> None:
        """Stop every generation this session started (it ends, or DISCARD ALL)."""
        for stream in [
            *self._cursors.values(),
            *(p.stream for p in self._stream_portals.values() if p.stream),
        ]:
            self._close_later(stream)
        self._cursors.clear()
        self._stream_portals.clear()

    # -- simple protocol ---------------------------------------------------------------------------

    async def _run_query(self, query: bytes) -> None:
        sql = query[:-1].decode()
        if self._stream_statements or self._cursors:
            session = self.server.interceptor.session_command(sql)  # type: ignore[attr-defined]
            if session is not None and self._session_command(session.kind, session.name):
                metrics.statement("answer")
                await self._answer_alone("DEALLOCATE")
                return
        command = self._cursor_command(sql) if self._cursors else None
        plan = (
            self.server.interceptor.stream_plan(sql)  # type: ignore[attr-defined]
            if command is None and mentions_pgml(query)
            else None
        )
        if command is None and plan is None:
            await super()._run_query(query)
            return
        metrics.statement("answer")

        async def run() -> None:
            await self._await_idle()
            status = self.upstream_side.transaction_status  # type: ignore[attr-defined]
            if command is not None:
                self.client.write(await self._run_cursor_command(command))  # type: ignore[attr-defined]
            else:
                assert plan is not None
                settings = await self._settings()
                if plan.cursor is not None:
                    await self._declare(sql, plan, status, in_pipeline=False)
                    self.client.write(_complete("DECLARE CURSOR"))  # type: ignore[attr-defined]
                else:
                    interceptor = self.server.interceptor  # type: ignore[attr-defined]
                    source = await bounded(interceptor.open_stream(sql, plan, self), settings.timeout)
                    rows = StreamPortal(source, (), settings.extra_float_digits)
                    self.client.write(rows.description())  # type: ignore[attr-defined]
                    count = await bounded(rows.fetch(None, self.client.write), settings.timeout)  # type: ignore[attr-defined]
                    self.client.write(_complete(f"SELECT {count}"))  # type: ignore[attr-defined]
            self.client.write(ready(status))  # type: ignore[attr-defined]
            self.upstream_side.answered_by_proxy(status)  # type: ignore[attr-defined]

        try:
            await failing_with(run(), self._fail_statement)
        except SideQueryFailed as failure:
            self._answer_from_side(failure.result)

    def _session_command(self, kind: str, name: str | None) -> bool:
        """DISCARD ALL closes this session's cursors and forgets its streaming statements, as it does the
        server's; DEALLOCATE forgets them too. True when the proxy answers (a DEALLOCATE of its own)."""
        if kind == "discard":
            self.close_streams()
            for statement in list(self._stream_statements):
                self._forget_statement(statement)
        elif kind == "deallocate" and name is None:
            for statement in list(self._stream_statements):
                self._forget_statement(statement)
        elif kind == "deallocate" and name in self._stream_statements:
            self._forget_statement(name)
            return True
        self._track_streams()
        return False

    async def _answer_alone(self, tag: str) -> None:
        """Complete a Query the proxy answers whole, once the requests before it are answered."""
        await self._await_idle()
        self._answer_command(tag, self.upstream_side.transaction_status)  # type: ignore[attr-defined]

    async def _declare(self, sql: str, plan: StreamPlan, status: int, *, in_pipeline: bool) -> None:
        """Open a cursor over a stream (simple protocol: its arguments evaluated from ``sql``)."""
        interceptor = self.server.interceptor  # type: ignore[attr-defined]
        await self._check_cursor(plan, status, in_pipeline=in_pipeline)
        settings = await self._settings(in_pipeline=in_pipeline)
        source = await bounded(interceptor.open_stream(sql, plan, self), settings.timeout)
        self._open_cursor(plan, StreamPortal(source, _cursor_formats(plan), settings.extra_float_digits))

    async def _check_cursor(self, plan: StreamPlan, status: int, *, in_pipeline: bool) -> None:
        """Postgres's rules for a new cursor: in a transaction block unless WITH HOLD, a name not taken."""
        assert plan.cursor is not None
        if not plan.options.hold and status != IN_TRANSACTION:
            raise NoActiveSqlTransaction("DECLARE CURSOR can only be used in transaction blocks")
        sql = f"SELECT count(*) FROM pg_cursors WHERE name = {quote(plan.cursor)}"
        taken = await (self.side_query(sql, NO_PARAMETERS) if in_pipeline else self.side_query(sql))
        if plan.cursor in self._cursors or taken.rows[0][0] != "0":
            raise DuplicateCursor(f'cursor "{plan.cursor}" already exists')

    def _open_cursor(self, plan: StreamPlan, rows: StreamPortal) -> None:
        assert plan.cursor is not None
        self._cursors[plan.cursor] = _Open(rows, self._ended(), plan.options.hold)
        self._track_streams()

    async def _run_cursor_command(
        self, command: CursorCommand, result_formats: tuple[int, ...] | None = None
    ) -> bytes:
        """FETCH, MOVE or CLOSE of a cursor of this session: rows go out as they come, the rest is returned.

        ``result_formats``: an extended-protocol portal's (its Describe told the columns); None: a Query,
        whose answer describes them first.
        """
        assert command.name is not None
        if command.kind == "close":
            self._close_cursor(command.name)
            return _complete("CLOSE CURSOR")
        if command.refused is not None:
            raise ObjectNotInPrerequisiteState(
                command.refused,
                hint="A cursor over pgml.transform_stream reads rows as they are generated: FETCH forward only.",
            )
        cursor = self._cursors[command.name].rows
        settings = await self._settings(in_pipeline=result_formats is not None)
        if command.kind == "move":
            count = await bounded(cursor.fetch(command.count, None), settings.timeout)
            return _complete(f"MOVE {count}")
        if result_formats is None:
            self.client.write(cursor.description())  # type: ignore[attr-defined]
        count = await bounded(
            cursor.fetch(command.count, self.client.write, result_formats), settings.timeout
        )  # type: ignore[attr-defined]
        return _complete(f"FETCH {count}")

    # -- extended protocol -------------------------------------------------------------------------

    async def _bind_stream(self, statement: _StreamStatement, bind: Bind) -> None:
        async def run() -> None:
            if not await self._barrier():
                self._forward(bind.encode())
                return
            portal = _BoundPortal(statement, bind.result_formats, self._ended())
            if statement.prepared is not None:
                if len(bind.values) != statement.prepared.client_params:
                    raise _BindMismatch(
                        f"bind message supplies {len(bind.values)} parameters, but prepared statement "
                        f'"{bind.statement}" requires {statement.prepared.client_params}'
                    )
                plan = statement.plan
                assert plan is not None
                status = self.upstream_side.transaction_status  # type: ignore[attr-defined]
                if plan.cursor is not None:
                    await self._check_cursor(plan, status, in_pipeline=True)
                settings = await self._settings(in_pipeline=True)
                interceptor = self.server.interceptor  # type: ignore[attr-defined]
                bound = await bounded(interceptor.bind(statement.prepared, bind, self), settings.timeout)
                assert bound.stream is not None
                formats = _cursor_formats(plan) if plan.cursor is not None else bind.result_formats
                rows = StreamPortal(bound.stream, formats, settings.extra_float_digits)
                portal.stream = _Open(rows, portal.born, plan.options.hold)
            self._stream_portals[bind.portal] = portal
            self._track_streams()
            self.client.write(BIND_COMPLETE)  # type: ignore[attr-defined]

        await failing_with(run(), self._fail_in_pipeline)

    async def _execute_stream(self, portal: _BoundPortal, limit: int | None, body: bytes) -> None:
        async def run() -> None:
            if not await self._barrier():
                self._forward(message(EXECUTE, body))
                return
            statement = portal.statement
            if statement.command is not None:
                if statement.command.name not in self._cursors:
                    raise InternalError(f'cursor "{statement.command.name}" is gone')
                self.client.write(await self._run_cursor_command(statement.command, portal.result_formats))  # type: ignore[attr-defined]
                return
            plan = statement.plan
            assert plan is not None and portal.stream is not None
            if plan.cursor is not None:
                if portal.stream.rows.exhausted or plan.cursor in self._cursors:
                    raise DuplicateCursor(f'cursor "{plan.cursor}" already exists')
                self._open_cursor(plan, portal.stream.rows)
                portal.stream = None  # the cursor owns it now
                self.client.write(_complete("DECLARE CURSOR"))  # type: ignore[attr-defined]
                return
            settings = await self._settings(in_pipeline=True)
            rows = portal.stream.rows
            count = await bounded(rows.fetch(limit, self.client.write), settings.timeout)  # type: ignore[attr-defined]
            suspended = limit is not None and count == limit and not rows.exhausted
            self.client.write(message(PORTAL_SUSPENDED, b"") if suspended else _complete(f"SELECT {count}"))  # type: ignore[attr-defined]

        try:
            await failing_with(run(), self._fail_in_pipeline)
        except SideQueryFailed as failure:  # the call's own statement on the session, run at this point
            self._fail_in_pipeline(_relayed(failure))

    def _describe_stream(self, which: str, name: str) -> bytes | None:
        """A Describe the proxy answers: of a streaming statement or portal, or of one of its cursors."""
        if which == "S":
            statement = self._stream_statements.get(name)
            if statement is None:
                return None
            description = extended.parameter_description(statement.param_types)
            plan = statement.plan
            if plan is None or plan.cursor is not None:
                return description + (self._fetch_description(statement, ()) or _NO_DATA)
            return description + row_description(plan.fields)
        portal = self._stream_portals.get(name)
        if portal is not None:
            statement = portal.statement
            if statement.command is not None:
                return self._fetch_description(statement, portal.result_formats) or _NO_DATA
            if statement.plan is not None and statement.plan.cursor is None and portal.stream is not None:
                return portal.stream.rows.description()
            return _NO_DATA
        cursor = self._cursors.get(name)
        return cursor.rows.description() if cursor is not None else None

    def _fetch_description(
        self, statement: _StreamStatement, result_formats: tuple[int, ...]
    ) -> bytes | None:
        command = statement.command
        if command is None or command.kind != "fetch" or command.name not in self._cursors:
            return None
        return self._cursors[command.name].rows.description(result_formats)

    def _close_stream(self, which: str, name: str) -> bytes | None:
        """Close of a streaming statement or portal: forgotten here, answered by the proxy."""
        owned = name in (self._stream_statements if which == "S" else self._stream_portals)
        if not owned:
            return None
        if which == "S":
            self._forget_statement(name)
        else:
            self._forget_portal(name)
        return CLOSE_COMPLETE


class _BindMismatch(ProxyError):
    sqlstate = "08P01"


def _relayed(failure: SideQueryFailed) -> ProxyError:
    fields = decode_fields(failure.result.error[5:]) if failure.result.error else {}
    return RelayedError(
        fields.get(SQLSTATE, InternalError.sqlstate),
        fields.get(MESSAGE, "a statement on the session failed"),
        detail=fields.get(DETAIL),
        hint=fields.get(HINT),
    )


def _complete(tag: str) -> bytes:
    return message(COMMAND_COMPLETE, cstring(tag))


def _cursor_formats(plan: StreamPlan) -> tuple[int, ...]:
    return (BINARY_FORMAT,) if plan.options.binary else ()
