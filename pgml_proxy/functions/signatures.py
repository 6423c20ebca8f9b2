"""Signatures and overload resolution, following Postgres's rules closely enough for the pgml API.

Postgres picks an overload by argument count (named arguments and defaults included), then by whether
each argument's type coerces implicitly to the parameter's, then, for untyped literals, by preferring
string-category parameters. The same steps here give the same choice for every call in the contract,
e.g. ``pgml.embed('m', 'hi')`` takes the ``text`` overload and ``pgml.embed('m', ARRAY['a'])`` the
``text[]`` one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pgml_proxy.errors import AmbiguousFunction, UndefinedFunction
from pgml_proxy.wire.types import PgType


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()
UNKNOWN: Final = "unknown"
"""The type of an untyped literal such as ``'hi'``: it coerces to anything."""
ANY_ELEMENT: Final = "anyelement"
"""A polymorphic parameter: it takes a value of any type."""

_IMPLICIT: Final = frozenset(
    {
        ("character varying", "text"),
        ("character", "text"),
        ("name", "text"),
        ("smallint", "integer"),
        ("smallint", "bigint"),
        ("integer", "bigint"),
        ("smallint", "real"),
        ("integer", "real"),
        ("bigint", "real"),
        ("numeric", "real"),
        ("smallint", "double precision"),
        ("integer", "double precision"),
        ("bigint", "double precision"),
        ("numeric", "double precision"),
        ("real", "double precision"),
        ("json", "jsonb"),  # not implicit in Postgres, but json literals reach us already typed json
    }
)


_CATALOG_ENUMS: Final = frozenset(
    name
    for label in ("task", "algorithm", "runtime", "strategy", "sampling", "search", "status")
    for name in (label, f"pgml.{label}")
)
"""The catalog's enum types (as a cast names them, or pg_typeof with pgml on the search path or not): the
proxy's parameters of those types are text, which takes their labels as they are."""


def coerces(source: str, target: str) -> bool:
    """Whether a value of type ``source`` may be passed where ``target`` is expected, as Postgres would."""
    if source in (UNKNOWN, target) or target == ANY_ELEMENT:
        return True
    if target == "text" and source in _CATALOG_ENUMS:
        return True
    if source.endswith("[]") and target.endswith("[]"):
        return coerces(source[:-2], target[:-2])
    return (source, target) in _IMPLICIT


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    type: str
    default: Any = REQUIRED

    def __str__(self) -> str:
        shown = f'"{self.name}"' if self.name in ("text", "row", "limit") else self.name
        text = f"{shown} {self.type}"
        return text if self.default is REQUIRED else f"{text} DEFAULT {_sql_literal(self.default)}"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: PgType


@dataclass(frozen=True, slots=True)
class Signature:
    """One overload: ``returns`` is a type for scalar or SETOF results, columns for TABLE results."""

    function: str
    parameters: tuple[Parameter, ...]
    returns: PgType | tuple[Column, ...]
    set_returning: bool = False
    strict: bool = True

    def __str__(self) -> str:
        return f"pgml.{self.function}({', '.join(str(p) for p in self.parameters)})"


@dataclass(frozen=True, slots=True)
class Argument:
    """An argument as written at the call site: its name for ``name => value``, and its type."""

    type: str = UNKNOWN
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Binding:
    """Which call argument feeds each parameter (None: the parameter takes its default)."""

    signature: Signature
    sources: tuple[int | None, ...] = field(default_factory=tuple)

    def arrange(self, values: Sequence[Any]) -> tuple[Any, ...]:
        """The parameter values in signature order, defaults filled in."""
        if self.sources == tuple(range(len(values))):  # positional, every parameter given
            return tuple(values)
        return tuple(
            parameter.default if source is None else values[source]
            for parameter, source in zip(self.signature.parameters, self.sources, strict=True)
        )


def _bind(signature: Signature, arguments: Sequence[Argument]) -> Binding | None:
    parameters = signature.parameters
    sources: list[int | None] = [None] * len(parameters)
    seen_named = False
    for index, argument in enumerate(arguments):
        if argument.name is None:
            if seen_named or index >= len(parameters):
                return None
            position = index
        else:
            seen_named = True
            names = [p.name for p in parameters]
            if argument.name not in names:
                return None
            position = names.index(argument.name)
            if sources[position] is not None:
                return None
        sources[position] = index
    for parameter, source in zip(parameters, sources, strict=True):
        if source is None and parameter.default is REQUIRED:
            return None
        if source is not None and not coerces(arguments[source].type, parameter.type):
            return None
    return Binding(signature, tuple(sources))


def resolve(function: str, overloads: Sequence[Signature], arguments: Sequence[Argument]) -> Binding:
    """The one overload this call means; 42883 when none fits, 42725 when several fit equally."""
    candidates = [b for b in (_bind(s, arguments) for s in overloads) if b is not None]
    if len(candidates) > 1:
        candidates = _prefer_concrete(candidates)
    if len(candidates) > 1:  # Postgres keeps the candidates with the most exact matches
        most = max(_exactness(b, arguments) for b in candidates)
        candidates = [b for b in candidates if _exactness(b, arguments) == most]
    if len(candidates) > 1:
        candidates = _prefer_preferred_types(candidates, arguments)
    if len(candidates) > 1:
        candidates = _prefer_text(candidates, arguments)
    if len(candidates) == 1:
        return candidates[0]
    shown = ", ".join(_shown(a) for a in arguments)
    available = "; ".join(str(s) for s in overloads)
    if not candidates:
        raise UndefinedFunction(
            f"function pgml.{function}({shown}) does not exist",
            hint=f"No function matches the given name and argument types. Available: {available}",
        )
    raise AmbiguousFunction(
        f"function pgml.{function}({shown}) is not unique",
        hint="Could not choose a best candidate function. You might need to add explicit type casts.",
    )


def _prefer_concrete(candidates: list[Binding]) -> list[Binding]:
    """A polymorphic candidate only when no other fits. Friendlier than Postgres, which finds
    ``predict('p', ARRAY[5.1, 3.5])`` (numeric[]) ambiguous between the array forms and the row form: an
    array argument means an array form."""
    concrete = [b for b in candidates if ANY_ELEMENT not in (p.type for p in b.signature.parameters)]
    return concrete or candidates


def _exactness(binding: Binding, arguments: Sequence[Argument]) -> int:
    parameters = binding.signature.parameters
    return sum(
        1
        for parameter, source in zip(parameters, binding.sources, strict=True)
        if source is not None and arguments[source].type in (parameter.type, UNKNOWN)
    )


_PREFERRED: Final = frozenset(("double precision", "text"))
"""The preferred type of each type category the pgml signatures use (numeric, string)."""


def _prefer_preferred_types(candidates: list[Binding], arguments: Sequence[Argument]) -> list[Binding]:
    """Postgres's rule after exact matches: keep the candidates that take a preferred type at the most
    positions where an argument must be converted (``numeric[]`` picks ``double precision[]``)."""

    def preferred(binding: Binding) -> int:
        return sum(
            1
            for parameter, source in zip(binding.signature.parameters, binding.sources, strict=True)
            if source is not None
            and arguments[source].type not in (parameter.type, UNKNOWN)
            and parameter.type.removesuffix("[]") in _PREFERRED
        )

    most = max(preferred(b) for b in candidates)
    return [b for b in candidates if preferred(b) == most]


def _prefer_text(candidates: list[Binding], arguments: Sequence[Argument]) -> list[Binding]:
    """Postgres's rule for untyped literals: where any candidate takes a string-category type at an
    untyped argument, the candidates that take another type there drop out."""
    for index, argument in enumerate(arguments):
        if argument.type != UNKNOWN:
            continue
        textual = [b for b in candidates if _parameter_type(b, index) == "text"]
        if textual:
            candidates = textual
    return candidates


def _parameter_type(binding: Binding, argument: int) -> str | None:
    position = binding.sources.index(argument) if argument in binding.sources else None
    return None if position is None else binding.signature.parameters[position].type


def _sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = json.dumps(value, separators=(", ", ": ")) if isinstance(value, (dict, list)) else str(value)
    return "'" + text.replace("'", "''") + "'"


def _shown(argument: Argument) -> str:
    return f"{argument.name} => {argument.type}" if argument.name else argument.type
