"""The registry: every pgml function the proxy implements, with its overloads and implementations.

An implementation receives a batch of argument tuples (one per call site evaluation, already in
signature order with defaults filled in) and returns one result per tuple: a value for scalar functions,
a list of rows for set-returning ones. STRICT is applied here, once, for every function.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pgml_engines.engine import Engine
from pgml_engines.errors import EngineError

from pgml_proxy.errors import (
    InternalError,
    InvalidParameterValue,
    InvalidTextRepresentation,
    ProxyError,
    engine_error,
)
from pgml_proxy.functions.signatures import UNKNOWN, Argument, Binding, Signature, resolve
from pgml_proxy.wire.types import PgType, parse_array_text

Implementation = Callable[[Engine, list[tuple[Any, ...]]], Awaitable[list[Any]]]
StreamImplementation = Callable[[Engine, tuple[Any, ...]], AsyncIterator[Any]]
"""One call of a set-returning function whose rows come as they are produced (transform_stream)."""


@dataclass(frozen=True, slots=True)
class Overload:
    signature: Signature
    run: Implementation
    #: For streaming functions: their rows one by one (``run`` then collects them, for positions where
    #: the statement needs the whole set at once).
    stream: StreamImplementation | None = None


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

    def scalar_return(self, name: str) -> PgType | None:
        """The type every scalar overload of ``name`` returns, when they agree (None: none or several)."""
        types = {o.signature.returns for o in self._by_name[name] if not o.signature.set_returning}
        only = types.pop() if len(types) == 1 else None
        return only if isinstance(only, PgType) else None

    def resolve(self, name: str, arguments: Sequence[Argument]) -> ResolvedCall:
        overloads = self._by_name[name]
        binding = resolve(name, [o.signature for o in overloads], arguments)
        overload = next(o for o in overloads if o.signature is binding.signature)
        return ResolvedCall(overload, binding, tuple(a.type for a in arguments))

    async def call(
        self, engine: Engine, resolved: ResolvedCall, argument_rows: Sequence[Sequence[Any]]
    ) -> list[Any]:
        """Run one overload over a batch of evaluations; STRICT calls with a NULL argument skip the work."""
        signature = resolved.signature
        arranged = [_arranged(resolved, row) for row in argument_rows]
        empty: Any = [] if signature.set_returning else None
        results: list[Any] = [empty] * len(arranged)
        todo = [i for i, row in enumerate(arranged) if not (signature.strict and any(v is None for v in row))]
        if not todo:
            return results
        try:
            computed = await resolved.overload.run(engine, [arranged[i] for i in todo])
        except Exception as exc:
            raise _translated(signature, exc) from exc
        for index, value in zip(todo, computed, strict=True):
            results[index] = value
        return results

    async def stream(
        self, engine: Engine, resolved: ResolvedCall, arguments: Sequence[Any]
    ) -> AsyncIterator[Any]:
        """The rows of one call of a streaming function, as they come (none for a STRICT NULL argument).

        Closing the iterator stops the work behind it.
        """
        signature = resolved.signature
        stream = resolved.overload.stream
        assert stream is not None, f"pgml.{signature.function} does not stream"
        row = _arranged(resolved, arguments)
        if signature.strict and any(v is None for v in row):
            return
        try:
            rows = stream(engine, row)  # arguments are checked before anything is generated
        except Exception as exc:
            raise _translated(signature, exc) from exc
        try:
            while True:
                try:
                    item = await anext(rows)
                except StopAsyncIteration:
                    return
                except Exception as exc:
                    raise _translated(signature, exc) from exc
                yield item
        finally:
            await rows.aclose()  # type: ignore[attr-defined]

    def streaming_signature(self, name: str) -> Signature | None:
        """A signature of ``name``'s streaming overloads (they share their result shape), if it has any."""
        return next((o.signature for o in self._by_name.get(name, ()) if o.stream is not None), None)


def _arranged(resolved: ResolvedCall, row: Sequence[Any]) -> tuple[Any, ...]:
    """The parameter values in signature order, untyped literals read as their parameter's type."""
    types = resolved.argument_types
    return tuple(
        _coerce(p.type, v) if source is not None and source < len(types) and types[source] == UNKNOWN else v
        for p, v, source in zip(
            resolved.signature.parameters,
            resolved.binding.arrange(row),
            resolved.binding.sources,
            strict=True,
        )
    )


def _translated(signature: Signature, exc: Exception) -> ProxyError:
    """An engine's failure as the client's error: its SQLSTATE kept, anything unexpected XX000."""
    if isinstance(exc, ProxyError):
        return exc
    if isinstance(exc, EngineError) and exc.sqlstate != InternalError.sqlstate:
        return engine_error(exc.sqlstate, str(exc))
    return InternalError(f"pgml.{signature.function} failed: {exc}")


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
    return value
