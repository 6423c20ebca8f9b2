"""The registry: every pgml function the proxy implements, with its overloads and implementations.

An implementation receives a batch of argument tuples (one per call site evaluation, already in
signature order with defaults filled in) and returns one result per tuple: a value for scalar functions,
a list of rows for set-returning ones. STRICT is applied here, once, for every function.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pgml_engines.engine import Engine
from pgml_engines.errors import InvalidArgument, ModelNotFound

from pgml_proxy.errors import InternalError, InvalidParameterValue, ProxyError, UndefinedObject
from pgml_proxy.functions.signatures import Argument, Binding, Signature, resolve
from pgml_proxy.wire.types import PgType, parse_array_text

Implementation = Callable[[Engine, list[tuple[Any, ...]]], Awaitable[list[Any]]]


@dataclass(frozen=True, slots=True)
class Overload:
    signature: Signature
    run: Implementation


@dataclass(frozen=True, slots=True)
class ResolvedCall:
    """A call site bound to one overload."""

    overload: Overload
    binding: Binding

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
        return ResolvedCall(next(o for o in overloads if o.signature is binding.signature), binding)

    async def call(
        self, engine: Engine, resolved: ResolvedCall, argument_rows: Sequence[Sequence[Any]]
    ) -> list[Any]:
        """Run one overload over a batch of evaluations; STRICT calls with a NULL argument skip the work."""
        signature = resolved.signature
        arranged = [
            tuple(
                _coerce(p.type, v)
                for p, v in zip(signature.parameters, resolved.binding.arrange(row), strict=True)
            )
            for row in argument_rows
        ]
        empty: Any = [] if signature.set_returning else None
        results: list[Any] = [empty] * len(arranged)
        todo = [i for i, row in enumerate(arranged) if not (signature.strict and any(v is None for v in row))]
        if not todo:
            return results
        try:
            computed = await resolved.overload.run(engine, [arranged[i] for i in todo])
        except ProxyError:
            raise
        except ModelNotFound as exc:
            raise UndefinedObject(str(exc)) from exc
        except InvalidArgument as exc:
            raise InvalidParameterValue(str(exc)) from exc
        except Exception as exc:
            raise InternalError(f"pgml.{signature.function} failed: {exc}") from exc
        for index, value in zip(todo, computed, strict=True):
            results[index] = value
        return results


def _coerce(type_name: str, value: Any) -> Any:
    """An untyped literal given for an array parameter is an array literal, as Postgres reads it."""
    if type_name.endswith("[]") and isinstance(value, str):
        try:
            return parse_array_text(value)
        except ValueError as exc:
            raise InvalidParameterValue(f"malformed array literal: {value!r}") from exc
    return value
