"""``rag`` and ``rag_stream`` (contract §3.3): retrieval into prompt variables, then one generation.

Every variable is computed before the model runs, so a stream's ``sources()`` is known before its first row
(F8). Substitution is a single pass over the known variable names (F10): text that a variable brings in, such
as a retrieved chunk containing ``{OTHER}``, is never expanded again.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .connection import connect, fetch_one
from .errors import PgmlError, ValidationError
from .layout import Names
from .schema import FieldSpec, check_keys, object_at, positive_integer
from .search import VectorPlan, number, parse_vector_search, required, run_vector_search, string
from .transforms import Messages, stream_batches, transform

GENERATION_DEFAULTS: dict[str, float | int] = {
    "temperature": 1.0,
    "max_tokens": 1_000_000,
    "top_p": 1.0,
    "presence_penalty": 0.0,
}
_COMPLETION_KEYS = {"model", "prompt", *GENERATION_DEFAULTS}
_CHAT_KEYS = {"model", "messages", *GENERATION_DEFAULTS}
_TASKS = {"completion": "text-generation", "chat": "conversational"}


@dataclass(frozen=True)
class VectorVariable:
    plan: VectorPlan
    join: str


@dataclass(frozen=True)
class SqlVariable:
    """Raw SQL that yields one value; trusted code, run as written (F10)."""

    sql: str


@dataclass(frozen=True)
class RagPlan:
    variables: dict[str, VectorVariable | SqlVariable]
    task: dict[str, Any]
    args: dict[str, Any]
    source: str | Messages
    """The completion prompt, or the chat messages, before substitution."""


def _variable(path: str, fields: Mapping[str, FieldSpec], value: object) -> VectorVariable | SqlVariable:
    entry = object_at(path, value)
    if "sql" in entry:
        check_keys(path, entry, {"sql"})
        return SqlVariable(string(f"{path}.sql", entry["sql"]))
    check_keys(path, entry, {"vector_search", "aggregate"})
    if "vector_search" not in entry:
        raise ValidationError(f"{path} needs vector_search (with aggregate) or sql")
    aggregate = object_at(f"{path}.aggregate", required(path, entry, "aggregate"))
    check_keys(f"{path}.aggregate", aggregate, {"join"})
    return VectorVariable(
        parse_vector_search(fields, entry["vector_search"], f"{path}.vector_search"),
        string(f"{path}.aggregate.join", required(f"{path}.aggregate", aggregate, "join")),
    )


def _generation_args(path: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """temperature, max_tokens, top_p and presence_penalty with the §2.10 defaults; integral floats are
    accepted for max_tokens (F15)."""
    args: dict[str, Any] = {}
    for key, default in GENERATION_DEFAULTS.items():
        value = entry.get(key, default)
        args[key] = (
            positive_integer(f"{path}.{key}", value)
            if key == "max_tokens"
            else number(f"{path}.{key}", value)
        )
    return args


def _messages(path: str, value: object) -> Messages:
    """Chat messages as ``{"role", "content"}``; other keys in a message are dropped (§3.3)."""
    if not isinstance(value, list) or not value:
        raise ValidationError(f'{path} must be a non-empty list of {{"role", "content"}} objects')
    messages = []
    for index, message in enumerate(value):
        where = f"{path}[{index}]"
        message = object_at(where, message)
        messages.append(
            {key: string(f"{where}.{key}", required(where, message, key)) for key in ("role", "content")}
        )
    return messages


def parse_rag(fields: Mapping[str, FieldSpec], query: object) -> RagPlan:
    """Validate a ``rag`` query (§3.3): upper-case variables plus exactly one of completion or chat."""
    top = object_at("rag", query)
    kinds = [kind for kind in _TASKS if kind in top]
    if not kinds:
        raise ValidationError("rag: provide either completion or chat")
    if len(kinds) > 1:
        raise ValidationError("rag: cannot provide both completion and chat")
    kind = kinds[0]
    variables: dict[str, VectorVariable | SqlVariable] = {}
    for name, value in top.items():
        if name == kind:
            continue
        if not isinstance(name, str) or name != name.upper():
            raise ValidationError(f"rag: unknown key {name!r}; all variables must be upper-case")
        variables[name] = _variable(f"rag.{name}", fields, value)
    path = f"rag.{kind}"
    entry = object_at(path, top[kind])
    check_keys(path, entry, _COMPLETION_KEYS if kind == "completion" else _CHAT_KEYS)
    model = string(f"{path}.model", required(path, entry, "model"))
    source: str | Messages
    if kind == "completion":
        source = string(f"{path}.prompt", required(path, entry, "prompt"))
    else:
        source = _messages(f"{path}.messages", required(path, entry, "messages"))
    return RagPlan(variables, {"task": _TASKS[kind], "model": model}, _generation_args(path, entry), source)


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Every ``{VAR}`` of a known variable replaced in one pass (F10); unknown ``{...}`` stays as written."""
    if not values:
        return text
    pattern = re.compile("\\{(" + "|".join(map(re.escape, values)) + ")\\}")
    return pattern.sub(lambda match: values[match.group(1)], text)


def _substituted(source: str | Messages, values: Mapping[str, str]) -> str | Messages:
    if isinstance(source, str):
        return substitute(source, values)
    return [{**message, "content": substitute(message["content"], values)} for message in source]


def _json_value(value: Any) -> Any:
    """A raw-SQL value as JSON for ``sources``: numerics as numbers, other non-JSON types as their text."""
    if value is None or isinstance(value, str | bool | int | float | list | dict):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


async def _variables(dsn: str, names: Names, plan: RagPlan) -> tuple[dict[str, Any], dict[str, str]]:
    """Each variable's ``sources`` entry and the text that replaces ``{VAR}``, in the order given."""
    sources: dict[str, Any] = {}
    values: dict[str, str] = {}
    async with connect(dsn) as connection:
        for name, variable in plan.variables.items():
            if isinstance(variable, SqlVariable):
                value = _json_value(await fetch_one(connection, variable.sql))
                sources[name] = value
                values[name] = value if isinstance(value, str) else json.dumps(value)
            else:
                rows = await run_vector_search(connection, names, variable.plan)
                sources[name] = rows
                values[name] = variable.join.join(row["chunk"] for row in rows)
    return sources, values


async def rag(dsn: str, names: Names, fields: Mapping[str, FieldSpec], query: object) -> dict[str, Any]:
    """``{"rag": <pgml.transform JSON>, "sources": {VAR: rows | value}}``."""
    plan = parse_rag(fields, query)
    sources, values = await _variables(dsn, names, plan)
    source = _substituted(plan.source, values)
    inputs = [source] if isinstance(source, str) else source
    return {"rag": await transform(dsn, plan.task, plan.args, inputs), "sources": sources}


class RAGStream:
    """A generation to stream, with its sources already computed (F8)."""

    def __init__(
        self,
        dsn: str,
        task: dict[str, Any],
        args: dict[str, Any],
        source: str | Messages,
        sources: dict[str, Any],
    ) -> None:
        self._dsn = dsn
        self._task = task
        self._args = args
        self._source = source
        self._sources = sources
        self._streamed = False

    def stream(self) -> AsyncIterator[Any]:
        """An async iterator of the JSON of each ``pgml.transform_stream`` row; one stream per object."""
        if self._streamed:
            raise PgmlError("RAGStream.stream() can be called only once")
        self._streamed = True
        return self._rows()

    async def _rows(self) -> AsyncIterator[Any]:
        async for rows in stream_batches(self._dsn, self._task, self._args, self._source):
            yield rows[0]

    def sources(self) -> dict[str, Any]:
        return self._sources


async def rag_stream(dsn: str, names: Names, fields: Mapping[str, FieldSpec], query: object) -> RAGStream:
    """The sources now, the generation when ``stream()`` is iterated."""
    plan = parse_rag(fields, query)
    sources, values = await _variables(dsn, names, plan)
    return RAGStream(dsn, plan.task, plan.args, _substituted(plan.source, values), sources)
