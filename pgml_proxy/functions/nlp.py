"""pgml.transform, pgml.transform_stream and pgml.rank (contract §2.3, §5): overloads and argument shapes.

The task comes as text (a pipeline task name) or jsonb (the pipeline-construction dictionary), inputs
as text[] or, for chat, jsonb[] messages; the engine does the rest. Calls of one statement run
concurrently, so the engine batches them (a spliced ``transform`` over table rows is one call per row).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Final

from pgml_proxy.errors import InvalidParameterValue
from pgml_proxy.functions.registry import (
    CallContext,
    Implementation,
    Overload,
    StreamImplementation,
    json_object,
)
from pgml_proxy.functions.signatures import Column, Parameter, Signature
from pgml_proxy.wire.types import FLOAT8, INT8, JSONB, TEXT

_EMPTY: Final[list[Any]] = []


def _task(value: Any, as_json: bool) -> str | dict[str, Any]:
    return json_object(value, "task") if as_json else value


def _texts(inputs: Sequence[str | None], function: str, argument: str = "inputs") -> list[str]:
    if any(text is None for text in inputs):
        raise InvalidParameterValue(f"pgml.{function} {argument} must not contain NULL elements")
    return list(inputs)  # type: ignore[arg-type]


def _messages(inputs: Sequence[Any], function: str) -> list[Any]:
    """jsonb[] elements (JSON values already: the engine checks they are messages)."""
    if any(element is None for element in inputs):
        raise InvalidParameterValue(f"pgml.{function} inputs must not contain NULL elements")
    return list(inputs)


def _transform(task_json: bool, inputs_json: bool) -> Implementation:
    shape = _messages if inputs_json else _texts

    async def run(context: CallContext, calls: list[tuple[Any, ...]]) -> list[Any]:
        return list(
            await asyncio.gather(
                *(
                    context.engine.transform(
                        _task(task, task_json), json_object(args, "args"), shape(inputs, "transform")
                    )
                    for task, args, inputs, _cache in calls
                )
            )
        )

    return run


def _transform_stream(task_json: bool, inputs_json: bool) -> StreamImplementation:
    def stream(context: CallContext, call: tuple[Any, ...]) -> AsyncIterator[Any]:
        task, args, inputs, _cache = call
        given = _messages(inputs, "transform_stream") if inputs_json else inputs
        return context.engine.transform_stream(_task(task, task_json), json_object(args, "args"), given)

    return stream


def _collected(stream: StreamImplementation) -> Implementation:
    """The whole set of each call, for a position where the statement needs it at once."""

    async def run(context: CallContext, calls: list[tuple[Any, ...]]) -> list[Any]:
        return [[row async for row in stream(context, call)] for call in calls]

    return run


async def _rank(context: CallContext, calls: list[tuple[Any, ...]]) -> list[Any]:
    async def one(model: str, query: str, documents: list[str | None], kwargs: Any) -> list[Any]:
        return await context.engine.rank(
            model, query, _texts(documents, "rank", "documents"), json_object(kwargs, "kwargs")
        )

    return list(await asyncio.gather(*(one(*call) for call in calls)))


def _overloads(
    name: str,
    inputs: Callable[[bool], Parameter],
    returns: Any,
    make: Callable[[bool, bool], Any],
    *,
    streaming: bool = False,
) -> list[Overload]:
    """The four overloads of a transform function: task text or jsonb, by inputs text or jsonb."""
    overloads = []
    for task_type in ("jsonb", "text"):
        for inputs_json in (False, True):
            signature = Signature(
                name,
                (
                    Parameter("task", task_type),
                    Parameter("args", "jsonb", {}),
                    inputs(inputs_json),
                    Parameter("cache", "boolean", False),
                ),
                returns,
                set_returning=streaming,
            )
            implementation = make(task_type == "jsonb", inputs_json)
            if streaming:
                overloads.append(Overload(signature, _collected(implementation), implementation))
            else:
                overloads.append(Overload(signature, implementation))
    return overloads


NLP: Final = [
    *_overloads(
        "transform",
        lambda as_json: Parameter("inputs", "jsonb[]" if as_json else "text[]", _EMPTY),
        JSONB,
        _transform,
    ),
    *_overloads(
        "transform_stream",
        lambda as_json: Parameter("inputs", "jsonb[]", _EMPTY) if as_json else Parameter("input", "text", ""),
        JSONB,
        _transform_stream,
        streaming=True,
    ),
    Overload(
        Signature(
            "rank",
            (
                Parameter("transformer", "text"),
                Parameter("query", "text"),
                Parameter("documents", "text[]"),
                Parameter("kwargs", "jsonb", {}),
            ),
            (Column("corpus_id", INT8), Column("score", FLOAT8), Column("text", TEXT)),
            set_returning=True,
        ),
        _rank,
    ),
]
"""The NLP overloads, for the registry."""
