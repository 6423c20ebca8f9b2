"""Splice (DESIGN §4): a select-list pgml call computed from the rows themselves on their way to the client.

The upstream runs the statement with the call replaced by a typed NULL placeholder column and the call's
row-dependent arguments added as hidden columns at the end of the select list. Here the RowDescription
loses the hidden columns and gives the placeholder its name; DataRows are gathered into windows, each
window's arguments go to the engine as one request (which it batches with other sessions'), and the rows
leave in order with the results in place of the placeholders. Nothing is looked up afterwards, so the
rows are exactly those the statement produced, and the first ones reach the client while later ones are
still being computed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import struct
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pgml_engines import Engine

from pgml_proxy import metrics
from pgml_proxy.errors import (
    DataException,
    FeatureNotSupported,
    InternalError,
    InvalidParameterValue,
    ProxyError,
    QueryCanceled,
)
from pgml_proxy.functions.registry import CallContext, Preloaded, Registry, ResolvedCall
from pgml_proxy.functions.signatures import Argument
from pgml_proxy.sql.model import CallSite
from pgml_proxy.wire import codes
from pgml_proxy.wire.error_response import error_response
from pgml_proxy.wire.extended import PARAMETER_DESCRIPTION, parameter_types
from pgml_proxy.wire.framing import MessageScanner
from pgml_proxy.wire.rows import (
    COMMAND_COMPLETE,
    DATA_ROW,
    EMPTY_QUERY,
    NO_DATA,
    PORTAL_SUSPENDED,
    ROW_DESCRIPTION,
    Field,
    data_row,
    decode_row_description,
    row_description,
    row_values,
)
from pgml_proxy.wire.types import TYPE_NAMES, PgType, decode_column, vector_binary, vector_text

log = logging.getLogger("pgml_proxy.splice")

PLACEHOLDER_PREFIX: Final = "pgml_proxy_splice_"
HIDDEN_PREFIX: Final = "pgml_proxy_arg_"
WINDOW_ROWS: Final = 1024
"""Rows per engine request at most: enough that the engine's length-sorted batches carry little padding."""
QUEUED_WINDOWS: Final = 4
"""Windows waiting to be written before the upstream is paused."""


@dataclass(frozen=True, slots=True)
class SplicedCall:
    """One spliced call as planned at rewrite time."""

    site: CallSite
    placeholder: str  # the placeholder column's name in the rewritten statement
    returns: PgType  # the placeholder's type: the call's scalar result before any cast
    fixed: tuple[tuple[int, str, Any], ...]  # constant arguments: (position, type, value)
    dependent: tuple[int, ...]  # positions read from hidden columns, in the order they are appended
    vector: bool  # the outermost cast is pgvector's vector
    preloaded: Preloaded | None = None  # what a session-reading call looked up before the rows

    def hidden_name(self, position: int) -> str:
        return f"{HIDDEN_PREFIX}{self.placeholder.removeprefix(PLACEHOLDER_PREFIX)}_{position}"


@dataclass(frozen=True, slots=True)
class SplicePlan:
    calls: tuple[SplicedCall, ...]

    @property
    def hidden(self) -> int:
        return sum(len(call.dependent) for call in self.calls)


@dataclass(slots=True)
class _Column:
    """A spliced call bound to the statement's actual columns."""

    call: SplicedCall
    resolved: ResolvedCall
    index: int  # placeholder position among the visible columns
    field: Field
    hidden: list[tuple[int, str, int]]  # (column position, type name, format) per dependent argument


class RowSplicer:
    """Rewrites one statement's RowDescription and DataRows; computing is the only async step."""

    def __init__(
        self, plan: SplicePlan, registry: Registry, engine: Engine, extra_float_digits: int = 1
    ) -> None:
        self._plan = plan
        self._float_digits = extra_float_digits
        self._registry = registry
        self._engine = engine
        self._columns: list[_Column] = []
        self._visible = 0

    def describe(self, body: bytes) -> bytes:
        """The client's RowDescription; resolves each call against its arguments' actual types."""
        return self.describe_fields(decode_row_description(body))

    def describe_fields(self, fields: list[Field]) -> bytes:
        """``describe`` for columns known already (a prepared statement's, with the portal's formats)."""
        self._visible = len(fields) - self._plan.hidden
        positions = {f.name: i for i, f in enumerate(fields)}
        visible = fields[: self._visible]
        self._columns = []
        for call in self._plan.calls:
            index = positions[call.placeholder]
            hidden = [fields[positions[call.hidden_name(p)]] for p in call.dependent]
            types = ["unknown"] * len(call.site.args)
            for position, type_name, _ in call.fixed:
                types[position] = type_name
            for position, field in zip(call.dependent, hidden, strict=True):
                types[position] = _type_name(field.type_oid)
            resolved = self._registry.resolve(
                call.site.name, [Argument(t, a.name) for t, a in zip(types, call.site.args, strict=True)]
            )
            signature = resolved.signature
            if signature.set_returning or signature.returns != call.returns:
                raise FeatureNotSupported(
                    f"{signature} returns a set, which the proxy cannot compute in the select list here",
                    hint="Call it in FROM, or cast the argument (e.g. ::text[]) so the proxy sees its type.",
                )
            if resolved.overload.reads_session and (
                call.preloaded is None or call.preloaded.preload is not resolved.overload.preload
            ):
                raise FeatureNotSupported(
                    f"{signature} cannot be computed while rows stream: its first argument's type changed"
                )
            visible[index] = visible[index].renamed(call.site.column_name or call.site.name)
            hidden_at = [(positions[f.name], _type_name(f.type_oid), f.format) for f in hidden]
            self._columns.append(_Column(call, resolved, index, visible[index], hidden_at))
        return row_description(visible)

    async def rows(self, bodies: Sequence[bytes]) -> bytes:
        """The DataRows with every call computed, in order."""
        rows = [row_values(body) for body in bodies]
        computed = await asyncio.gather(*(self._compute(column, rows) for column in self._columns))
        out = []
        for n, values in enumerate(rows):
            shown = values[: self._visible]
            for column, results in zip(self._columns, computed, strict=True):
                shown[column.index] = results[n]
            out.append(data_row(shown))
        return b"".join(out)

    async def _compute(self, column: _Column, rows: list[list[Any]]) -> list[bytes | None]:
        call = column.call
        columns: list[Iterable[Any]] = [()] * len(call.site.args)
        for position, _, value in call.fixed:
            columns[position] = itertools.repeat(value, len(rows))
        for position, (index, type_name, fmt) in zip(call.dependent, column.hidden, strict=True):
            columns[position] = _decode(type_name, fmt, [r[index] for r in rows])
        arguments = list(zip(*columns, strict=True))
        context = CallContext(self._engine, preloaded=call.preloaded)
        results = await self._registry.call(context, column.resolved, arguments)
        if not call.vector:
            return call.returns.encode_column(results, column.field.format, self._float_digits)
        return [_vector(column.field, value) for value in results]


def _type_name(oid: int) -> str:
    return TYPE_NAMES.get(oid, f"type with oid {oid}")


def _decode(type_name: str, fmt: int, column: list[Any]) -> list[Any]:
    try:
        return decode_column(type_name, fmt, column)
    except (ValueError, UnicodeDecodeError, struct.error) as exc:
        raise InvalidParameterValue(f"cannot read a {type_name} argument: {exc}") from exc


def _vector(field: Field, value: Any) -> bytes | None:
    if value is None:
        return None
    if field.modifier >= 0 and len(value) != field.modifier:
        raise DataException(f"expected {field.modifier} dimensions, not {len(value)}")
    return vector_binary(value) if field.format else vector_text(value)


QUERY_ENDS: Final = frozenset((codes.READY_FOR_QUERY,))
"""A simple query's answer ends with ReadyForQuery."""
EXECUTE_ENDS: Final = frozenset((COMMAND_COMPLETE, PORTAL_SUSPENDED, EMPTY_QUERY, codes.ERROR_RESPONSE))
"""An Execute's answer ends with one of these."""
_STATEMENT_DONE: Final = frozenset((COMMAND_COMPLETE, EMPTY_QUERY))
"""Each statement of a simple query's string ends its answer with one of these."""


@dataclass(frozen=True, slots=True)
class SpliceOutcome:
    """How the statement ended upstream, and what the session still has to do about it."""

    end: bytes  # the message that ended the answer, for the session to write (or not, after an error)
    status: int | None  # ReadyForQuery's transaction status, when that ended it
    error: ProxyError | None  # the proxy's error, already sent to the client
    after: bytes  # what the upstream sent after the end (notifications, say)


@dataclass(frozen=True, slots=True)
class _Window:
    task: asyncio.Task[bytes]
    rows: int


class SpliceStream:
    """The spliced statement's answer, from the upstream's bytes to the client's, in order.

    ``feed`` runs in the upstream's data callback and never waits: it frames messages, closes windows
    and starts their computation. ``run`` writes everything out in arrival order. After a failure the
    client has its ErrorResponse and the rest of the statement's answer is dropped up to ReadyForQuery.
    """

    def __init__(
        self,
        splicer: RowSplicer | None,
        write: Callable[[bytes], None],
        pause_upstream: Callable[[], None],
        resume_upstream: Callable[[], None],
        window: int = WINDOW_ROWS,
        ends: frozenset[int] = QUERY_ENDS,
        results_before: int = 0,
    ) -> None:
        self._splicer = splicer
        self._ends = ends
        # Statements of the query string whose answers come before the spliced one's (then 0 while
        # it is under way, negative after it).
        self._before = results_before
        self._write = write
        self._pause = pause_upstream
        self._resume = resume_upstream
        self._window_size = window
        # Without a splicer, rows pass as they are: only the end of the answer matters.
        spliced = frozenset((ROW_DESCRIPTION, DATA_ROW)) | _STATEMENT_DONE if splicer else frozenset()
        self._scanner = MessageScanner(ends | spliced)
        self._window: list[bytes] = []
        self._queue: deque[bytes | _Window | ProxyError] = deque()
        self._queued_rows = 0
        self._computing = 0
        self._paused = False
        self._wake = asyncio.Event()
        self._interrupt: asyncio.Future[ProxyError] = asyncio.get_running_loop().create_future()
        self._error: ProxyError | None = None
        self._doomed = False  # an error is queued: nothing after it needs computing
        self._end: bytes | None = None
        self._after: list[bytes] = []

    @property
    def upstream_done(self) -> bool:
        """The upstream has answered completely."""
        return self._end is not None

    def feed(self, data: bytes) -> None:
        """Take the upstream's next bytes (those meant for the client)."""
        if self._end is not None:
            self._after.append(data)
            return
        chunk, frames = self._scanner.feed(data)
        pos = 0
        for kind, start, end in frames:
            if kind in self._ends:  # the answer is complete
                self._close_window()
                self._raw(chunk[pos : start - 5])
                self._end = chunk[start - 5 : end]
                self._after.append(chunk[end:] + self._scanner.drain())
                pos = len(chunk)
                break
            if kind in _STATEMENT_DONE:  # one statement's answer ends: ours, or one before or after it
                if self._before == 0:
                    self._close_window()
                self._before -= 1
                continue  # it passes as it is, in order
            if self._before != 0:
                continue  # another statement's rows pass as they are
            if start - 5 > pos or kind != DATA_ROW:
                self._close_window()
                self._raw(chunk[pos : start - 5])
            pos = end
            if kind == DATA_ROW:
                self._window.append(chunk[start:end])
                if len(self._window) >= self._window_size:
                    self._close_window()
            else:
                self._describe(chunk[start:end])
        if pos < len(chunk):
            self._close_window()
            self._raw(chunk[pos:])
        if self._window and not self._computing:
            self._close_window()  # the engine has nothing of ours: start on what there is
        self._wake.set()

    def cancel(self, error: ProxyError) -> None:
        """Stop computing; the client gets ``error`` in place of the rows not yet written."""
        if not self._interrupt.done():
            self._interrupt.set_result(error)
        self._wake.set()

    async def run(self, timeout: float | None = None) -> SpliceOutcome:
        """Write the answer out as it becomes ready; return once the upstream has answered completely.

        ``timeout`` bounds the proxy's own work (the session's statement_timeout): waiting on the
        upstream is bounded by the upstream's own.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            while self._end is None or self._queue:
                if self._interrupt.done():
                    self._fail(self._interrupt.result())
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                item = self._queue.popleft()
                if isinstance(item, ProxyError):
                    self._fail(item)
                elif isinstance(item, _Window):
                    rows = await self._finish(item, deadline)
                    if rows is not None:
                        self._write(rows)
                        self._release(item.rows)
                else:
                    self._write(item)
            end = self._end
            status = end[5] if end[0] == codes.READY_FOR_QUERY else None
            return SpliceOutcome(end, status, self._error, b"".join(self._after))
        finally:
            self._drop_pending()

    async def _finish(self, window: _Window, deadline: float | None) -> bytes | None:
        """The window's rows, or None when it failed, was interrupted or ran out of time."""
        remaining = None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
        done, _ = await asyncio.wait(
            (window.task, self._interrupt), timeout=remaining, return_when=asyncio.FIRST_COMPLETED
        )
        if window.task not in done:
            window.task.cancel()
            if self._interrupt in done:
                self._fail(self._interrupt.result())
            else:
                self._fail(QueryCanceled("canceling statement due to statement timeout"))
            return None
        try:
            return window.task.result()
        except ProxyError as error:
            self._fail(error)
        except Exception as exc:  # a bug of ours fails the statement, never the session
            log.exception("splicing rows failed")
            self._fail(InternalError(f"pgml-proxy failed to compute the rows: {exc}"))
        return None

    # -- feeding ---------------------------------------------------------------------------------------

    def _raw(self, data: bytes) -> None:
        if data and self._error is None:
            self._queue.append(data)

    def _describe(self, body: bytes) -> None:
        if self._error is not None or self._splicer is None:
            return
        try:
            self._queue.append(self._splicer.describe(body))
        except ProxyError as error:
            self._queue.append(error)
            self._doomed = True
        except Exception as exc:  # a bug of ours fails the statement, never the session
            log.exception("describing spliced rows failed")
            self._queue.append(InternalError(f"pgml-proxy failed to describe the rows: {exc}"))
            self._doomed = True

    def _close_window(self) -> None:
        if not self._window:
            return
        window, self._window = self._window, []
        if self._error is not None or self._doomed or self._splicer is None:
            return
        task = asyncio.get_running_loop().create_task(self._splicer.rows(window))
        self._computing += 1
        task.add_done_callback(self._computed)
        self._queue.append(_Window(task, len(window)))
        self._queued_rows += len(window)
        if not self._paused and self._queued_rows >= QUEUED_WINDOWS * self._window_size:
            self._paused = True
            self._pause()

    def _computed(self, task: asyncio.Task[bytes]) -> None:
        self._computing -= 1
        if not task.cancelled():
            task.exception()  # retrieved here, so a dropped window's failure is not logged as lost

    # -- writing ---------------------------------------------------------------------------------------

    def _fail(self, error: ProxyError) -> None:
        """The client gets ``error``; everything of the statement not yet written is dropped."""
        if self._error is not None:
            return
        self._error = error
        metrics.error(error.sqlstate)
        self._write(error_response(error))
        self._drop_pending()

    def _drop_pending(self) -> None:
        for item in self._queue:
            if isinstance(item, _Window):
                item.task.cancel()
        self._queue.clear()
        self._window.clear()
        self._queued_rows = 0
        if self._paused:
            self._paused = False
            self._resume()

    def _release(self, rows: int) -> None:
        self._queued_rows -= rows
        if self._paused and self._queued_rows < QUEUED_WINDOWS * self._window_size // 2:
            self._paused = False
            self._resume()


class StatementDescription:
    """Takes the upstream's answer to the proxy's own Describe of a spliced statement, sent after its Parse.

    ParseComplete is the client's and passes; the ParameterDescription and RowDescription are kept for the
    session, which answers the client's Describes and describes its portals from them. After an error
    (the Parse failed, which the client hears) there is no description.
    """

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write
        self._scanner = MessageScanner(
            frozenset((PARAMETER_DESCRIPTION, ROW_DESCRIPTION, NO_DATA, codes.ERROR_RESPONSE))
        )
        self._parameters: tuple[int, ...] = ()
        self.done: asyncio.Future[tuple[tuple[int, ...], list[Field]] | None] = (
            asyncio.get_running_loop().create_future()
        )

    def feed(self, data: bytes) -> None:
        if self.done.done():
            self._write(data)
            return
        chunk, frames = self._scanner.feed(data)
        out, pos = [], 0
        for kind, start, end in frames:
            if kind == codes.ERROR_RESPONSE:
                self.done.set_result(None)
                break
            out.append(chunk[pos : start - 5])
            pos = end
            if kind == PARAMETER_DESCRIPTION:
                self._parameters = parameter_types(chunk[start:end])
            else:
                fields = decode_row_description(chunk[start:end]) if kind == ROW_DESCRIPTION else []
                self.done.set_result((self._parameters, fields))
                break
        out.append(chunk[pos:])
        if self.done.done():
            out.append(self._scanner.drain())
        self._write(b"".join(out))


def portal_fields(fields: Sequence[Field], result_formats: Sequence[int]) -> list[Field]:
    """A statement's columns as a portal bound with ``result_formats`` describes them."""
    if not result_formats:
        return list(fields)
    return [
        dataclasses.replace(f, format=result_formats[0] if len(result_formats) == 1 else result_formats[i])
        for i, f in enumerate(fields)
    ]
