"""The registry: every pgml function the proxy implements, with its overloads and implementations.

An implementation receives a batch of argument tuples (one per call site evaluation, already in
signature order with defaults filled in) and returns one result per tuple: a value for scalar functions,
a list of rows for set-returning ones. STRICT is applied here, once, for every function.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from pgml_engines.engine import Engine
from pgml_engines.errors import EngineError

from pgml_proxy import metrics
from pgml_proxy.errors import (
    FeatureNotSupported,
    InternalError,
    InvalidParameterValue,
    InvalidTextRepresentation,
    ProxyError,
    engine_error,
)
from pgml_proxy.functions.signatures import UNKNOWN, Argument, Binding, Signature, resolve
from pgml_proxy.wire.types import TEXT, TEXT_FORMAT, PgType, decode_parameter, parse_array_text


class SessionQueryFailed(Exception):
    """The upstream refused a statement run on the client's session: its own error is the client's, so
    it passes through the registry untouched."""


class SessionQueries(Protocol):
    """Statements run on the client's own upstream session (its permissions, its transaction).

    ``writes``: the session may run any statement (the proxy answers the statement itself, the upstream is
    idle). A read-only session runs inside another statement, possibly inside the client's pipeline, where
    only a SELECT of exactly one column can travel: readers must ask nothing else.
    """

    writes: bool

    async def rows(self, sql: str) -> list[list[str | None]]: ...

    async def copy_out(self, sql: str) -> list[bytes]:
        """The CopyData of a ``COPY … TO STDOUT`` (a line each in text format); only where the session
        ``writes``."""
        ...

    @property
    def in_transaction_block(self) -> bool:
        """The client is inside a transaction block, which statements run here join."""
        ...


@dataclass(frozen=True, slots=True)
class CallContext:
    """What an implementation may use: the shared engine and, where the statement allows side queries,
    the client's session (None while rows stream through a splice, where ``preloaded`` holds what a
    session-reading call looked up before the rows began)."""

    engine: Engine
    session: SessionQueries | None = None
    preloaded: Preloaded | None = None


Implementation = Callable[[CallContext, list[tuple[Any, ...]]], Awaitable[list[Any]]]
Preload = Callable[[CallContext, Any], Awaitable[Any]]
"""What a session-reading overload looks up from its first argument alone (predict: the deployed model)."""


@dataclass(frozen=True, slots=True)
class Preloaded:
    """A preload's result for one call site whose first argument is a constant, looked up once per
    statement on the client's session before its rows stream."""

    preload: Preload
    value: Any  # the first argument
    loaded: Any


StreamImplementation = Callable[[CallContext, tuple[Any, ...]], AsyncIterator[Any]]
"""One call of a set-returning function whose rows come as they are produced (transform_stream)."""


@dataclass(frozen=True, slots=True)
class Overload:
    signature: Signature
    run: Implementation
    #: For streaming functions: their rows one by one (``run`` then collects them, for positions where
    #: the statement needs the whole set at once).
    stream: StreamImplementation | None = None
    #: It runs statements on the client's session (load_dataset, train): only where the proxy answers
    #: the statement itself, never inside another statement.
    uses_session: bool = False
    #: It reads the client's session with one-column SELECTs (predict: the deployment, the artifact), and
    #: so cannot run while rows stream through a splice, unless ``preload`` read it all beforehand.
    reads_session: bool = False
    #: What the overload reads of the session, looked up from its first argument alone: with it, a
    #: reads_session call whose first argument is constant can be spliced, and a stream reads it before
    #: it begins.
    preload: Preload | None = None


@dataclass(frozen=True, slots=True)
class ResolvedCall:
    """A call site bound to one overload."""

    overload: Overload
    binding: Binding
    #: The types the call's arguments were resolved with (``unknown``: an untyped literal).
    argument_types: tuple[str, ...] = ()

    @property
    def signature(self) -> Signature:
        return self.overload.signature


class Registry:
    def __init__(self, overloads: Iterable[Overload]) -> None:
        self._by_name: dict[str, list[Overload]] = {}
        for overload in overloads:
            self._by_name.setdefault(overload.signature.function, []).append(overload)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._by_name)

    @property
    def signatures(self) -> list[Signature]:
        """Every overload's signature, by function in registration order."""
        return [o.signature for overloads in self._by_name.values() for o in overloads]

    def signatures_of(self, name: str) -> list[Signature]:
        """``name``'s overloads' signatures, in registration order."""
        return [o.signature for o in self._by_name.get(name, ())]

    def scalar_return(self, name: str) -> PgType | None:
        """The type every scalar overload of ``name`` returns, when they agree (None: none or several)."""
        types = {o.signature.returns for o in self._by_name[name] if not o.signature.set_returning}
        only = types.pop() if len(types) == 1 else None
        return only if isinstance(only, PgType) else None

    def reads_session(self, name: str) -> bool:
        """Whether some overload of ``name`` reads the client's session."""
        return any(o.reads_session for o in self._by_name.get(name, ()))

    async def preload_call(
        self, context: CallContext, resolved: ResolvedCall, arguments: Sequence[Any]
    ) -> Preloaded | None:
        """A resolved call's preload, run on ``context``'s session with its first parameter's value (a
        stream's, before it begins: while it streams, the session is the client's)."""
        preload = resolved.overload.preload
        if preload is None:
            return None
        return await _preloaded(context, preload, resolved.signature, _arranger(resolved)(arguments)[0])

    def first_argument(self, name: str, argument_names: Sequence[str | None]) -> int | None:
        """Which argument of a call binds the overloads' first parameter (what a preload reads): the first
        one when positional, else the one named like it; None when none does or the overloads differ."""
        firsts = {
            o.signature.parameters[0].name for o in self._by_name.get(name, ()) if o.signature.parameters
        }
        if argument_names and argument_names[0] is None:
            return 0
        named = [i for i, given in enumerate(argument_names) if given in firsts]
        return named[0] if len(named) == 1 else None

    def preloads(self, name: str) -> bool:
        """Whether every overload of ``name`` that reads the session can read it all in advance."""
        return all(o.preload is not None for o in self._by_name.get(name, ()) if o.reads_session)

    async def preload(self, context: CallContext, name: str, type_name: str, value: Any) -> Preloaded | None:
        """Look up, on ``context``'s session, what a call of ``name`` whose first argument is the constant
        ``value`` (of type ``type_name``) reads; the overloads' first parameters decide which preload runs,
        by Postgres's rules. None for a function that reads nothing."""
        firsts = {o.signature.parameters[0]: o.preload for o in self._by_name[name] if o.preload is not None}
        if not firsts:
            return None
        one_parameter = [Signature(name, (parameter,), TEXT) for parameter in firsts]
        with _translating(one_parameter[0]):
            [parameter] = resolve(name, one_parameter, [Argument(type_name)]).signature.parameters
            if value is not None and type_name == UNKNOWN:
                value = _coerce(parameter.type, value)
        return await _preloaded(context, firsts[parameter], one_parameter[0], value)

    def resolve(self, name: str, arguments: Sequence[Argument]) -> ResolvedCall:
        overloads = self._by_name[name]
        binding = resolve(name, [o.signature for o in overloads], arguments)
        overload = next(o for o in overloads if o.signature is binding.signature)
        return ResolvedCall(overload, binding, tuple(a.type for a in arguments))

    async def call(
        self, context: CallContext, resolved: ResolvedCall, argument_rows: Sequence[Sequence[Any]]
    ) -> list[Any]:
        """Run one overload over a batch of evaluations; STRICT calls with a NULL argument skip the work."""
        signature = resolved.signature
        arrange = _arranger(resolved)
        arranged = [arrange(row) for row in argument_rows]
        if resolved.overload.reads_session and context.session is None and context.preloaded is None:
            raise FeatureNotSupported(f"pgml.{signature.function} cannot be computed while rows stream")
        if resolved.overload.uses_session and (context.session is None or not context.session.writes):
            raise FeatureNotSupported(
                f"pgml.{signature.function} can only be called as a statement of its own",
                hint=f"Run it as SELECT * FROM pgml.{signature.function}(…).",
            )
        empty: Any = [] if signature.set_returning else None
        results: list[Any] = [empty] * len(arranged)
        todo = [i for i, row in enumerate(arranged) if not (signature.strict and any(v is None for v in row))]
        if not todo:
            return results
        started = time.perf_counter()
        try:
            with _translating(signature):
                computed = await resolved.overload.run(context, [arranged[i] for i in todo])
        finally:
            model = _model_label(signature, arranged)
            metrics.pgml_call(signature.function, model, len(todo), time.perf_counter() - started)
        for index, value in zip(todo, computed, strict=True):
            results[index] = value
        return results

    async def stream(
        self, context: CallContext, resolved: ResolvedCall, arguments: Sequence[Any]
    ) -> AsyncIterator[Any]:
        """The rows of one call of a streaming function, as they come (none for a STRICT NULL argument).

        Closing the iterator stops the work behind it.
        """
        signature = resolved.signature
        stream = resolved.overload.stream
        assert stream is not None, f"pgml.{signature.function} does not stream"
        row = _arranger(resolved)(arguments)
        if signature.strict and any(v is None for v in row):
            return
        with _translating(signature):
            rows = stream(context, row)  # arguments are checked before anything is generated
        started = time.perf_counter()
        try:
            while True:
                with _translating(signature):
                    try:
                        item = await anext(rows)
                    except StopAsyncIteration:
                        return
                yield item
        finally:
            await rows.aclose()  # type: ignore[attr-defined]
            model = _model_label(signature, [row])
            metrics.pgml_call(signature.function, model, 1, time.perf_counter() - started)

    def owned_signature(self, name: str) -> Signature | None:
        """A signature of ``name``'s overloads whose statements the proxy answers row by row itself (they
        stream, or work on the client's session; such overloads share their result shape), if any."""
        return next(
            (o.signature for o in self._by_name.get(name, ()) if o.stream is not None or o.uses_session), None
        )

    @staticmethod
    def streams(resolved: ResolvedCall) -> bool:
        return resolved.overload.stream is not None


_MODEL_PARAMETERS: Final = frozenset(("transformer", "project_name", "model_id", "task"))
"""Parameters that name the model or project a call uses (a transform's ``task`` only as JSON with a model)."""


def _model_label(signature: Signature, rows: Sequence[tuple[Any, ...]]) -> str:
    """The model or project of a call's rows, as a metrics label: the value when every row has the same one,
    else "" (so are a task given by name and a row-dependent model)."""
    position = next((i for i, p in enumerate(signature.parameters) if p.name in _MODEL_PARAMETERS), None)
    if position is None or not rows:
        return ""
    value = rows[0][position]
    if any(row[position] != value for row in rows[1:]):
        return ""
    if signature.parameters[position].name == "task":
        value = value.get("model") if isinstance(value, dict) else None
    if not isinstance(value, str | int):
        return ""
    return metrics.model_label(value)


def _arranger(resolved: ResolvedCall) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """The parameter values in signature order, untyped literals read as their parameter's type."""
    types = resolved.argument_types
    binding = resolved.binding
    untyped = [
        (position, parameter.type)
        for position, (parameter, source) in enumerate(
            zip(resolved.signature.parameters, binding.sources, strict=True)
        )
        if source is not None and source < len(types) and types[source] == UNKNOWN
    ]
    if not untyped:
        return binding.arrange

    def arrange(row: Sequence[Any]) -> tuple[Any, ...]:
        values = list(binding.arrange(row))
        for position, type_name in untyped:
            values[position] = _coerce(type_name, values[position])
        return tuple(values)

    return arrange


async def _preloaded(context: CallContext, preload: Preload, signature: Signature, value: Any) -> Preloaded:
    """``preload`` run for the first argument ``value``; nothing looked up for NULL (STRICT: nothing will
    be computed)."""
    if value is None:
        return Preloaded(preload, None, None)
    with _translating(signature):
        return Preloaded(preload, value, await preload(context, value))


@contextlib.contextmanager
def _translating(signature: Signature) -> Iterator[None]:
    """An engine's failure as the client's error: its SQLSTATE kept, anything unexpected XX000; the
    proxy's own errors and the upstream's (from the client's session) pass unchanged."""
    try:
        yield
    except (ProxyError, SessionQueryFailed):
        raise
    except EngineError as exc:
        if exc.sqlstate == InternalError.sqlstate:
            raise InternalError(f"pgml.{signature.function} failed: {exc}") from exc
        raise engine_error(exc.sqlstate, str(exc)) from exc
    except Exception as exc:
        raise InternalError(f"pgml.{signature.function} failed: {exc}") from exc


def json_object(value: Any, what: str) -> dict[str, Any]:
    """A jsonb argument that must be an object."""
    if not isinstance(value, dict):
        raise InvalidParameterValue(f"{what} must be a JSON object, not {json.dumps(value)}")
    return value


def _coerce(type_name: str, value: Any) -> Any:
    """An untyped literal is read by its parameter type's input function, as Postgres reads it."""
    if not isinstance(value, str):
        return value
    if type_name.endswith("[]"):
        try:
            elements = parse_array_text(value)
        except ValueError as exc:
            raise InvalidParameterValue(f"malformed array literal: {value!r}") from exc
        element_type = type_name[:-2]
        return [e if e is None else _coerce(element_type, e) for e in elements]
    if type_name in ("json", "jsonb"):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise InvalidTextRepresentation(f"invalid input syntax for type json: {exc}") from None
    if type_name in _NUMERIC_INPUT:
        try:
            return decode_parameter(type_name, TEXT_FORMAT, value.encode())
        except ValueError:
            raise InvalidTextRepresentation(f'invalid input syntax for type {type_name}: "{value}"') from None
    return value


_NUMERIC_INPUT: Final = frozenset(("real", "double precision", "smallint", "integer", "bigint", "numeric"))
