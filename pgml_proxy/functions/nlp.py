"""pgml.transform, pgml.transform_stream, pgml.rank and pgml.generate (contract §2.2, §2.3, §5): overloads
and argument shapes.

The task comes as text (a pipeline task name) or jsonb (the pipeline-construction dictionary), inputs
as text[] or, for chat, jsonb[] messages; the engine does the rest. Calls of one statement run
concurrently, so the engine batches them (a spliced ``transform`` over table rows is one call per row).

A transform's model may name a project tuned with ``pgml.tune``: that name is looked up on the client's
session first (once per statement, before rows stream, like predict's deployment), and the deployed tuned
model is served in its place. ``pgml.generate`` serves a tuned project's model only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Final

from pgml_proxy.errors import InvalidParameterValue
from pgml_proxy.functions.lifecycle.catalog import session_of
from pgml_proxy.functions.lifecycle.tuning import project_model, tuned_model
from pgml_proxy.functions.registry import (
    CallContext,
    Implementation,
    Overload,
    StreamImplementation,
    json_object,
)
from pgml_proxy.functions.signatures import Column, Parameter, Signature
from pgml_proxy.wire.types import FLOAT8, INT8, JSONB, TEXT, TEXT_ARRAY

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


def _model_name(task: Any) -> str | None:
    return task.get("model") if isinstance(task, dict) and isinstance(task.get("model"), str) else None


async def _tuned_for_task(context: CallContext, task: Any) -> str | None:
    """The serving name of the tuned project a task's model names, if it names one."""
    name = _model_name(task)
    if name is None or context.session is None:
        return None
    return await project_model(context, context.session, name)


async def _served(context: CallContext, task: Any) -> Any:
    """The task, its model replaced by a tuned project's serving name when it names one."""
    tuned = (
        context.preloaded.loaded if context.preloaded is not None else await _tuned_for_task(context, task)
    )
    return task if tuned is None else {**task, "model": tuned}


def _transform(task_json: bool, inputs_json: bool) -> Implementation:
    shape = _messages if inputs_json else _texts

    async def run(context: CallContext, calls: list[tuple[Any, ...]]) -> list[Any]:
        served = {}
        for task, *_ in calls:
            key = json.dumps(task, sort_keys=True)
            if key not in served:
                served[key] = await _served(context, _task(task, task_json))
        return list(
            await asyncio.gather(
                *(
                    context.engine.transform(
                        served[json.dumps(task, sort_keys=True)],
                        json_object(args, "args"),
                        shape(inputs, "transform"),
                    )
                    for task, args, inputs, _cache in calls
                )
            )
        )

    return run


async def _generated(context: CallContext, project: str, inputs: list[str], config: Any) -> list[str]:
    """``pgml.generate``: each input continued by the project's deployed tuned model, decoded whole."""
    tuned = (
        context.preloaded.loaded
        if context.preloaded is not None
        else await tuned_model(context, session_of(context), project)
    )
    if tuned is None:
        raise InvalidParameterValue(f"project `{project}` has no model tuned with pgml.tune deployed")
    results = await context.engine.transform(
        {"task": "text-generation", "model": tuned}, json_object(config, "config"), inputs
    )
    return [result[0]["generated_text"] for result in results]


async def _preload_project(context: CallContext, project: Any) -> str | None:
    return await tuned_model(context, session_of(context), str(project))


async def _generate_one(context: CallContext, calls: list[tuple[Any, ...]]) -> list[Any]:
    return [(await _generated(context, project, [text], config))[0] for project, text, config in calls]


async def _generate_many(context: CallContext, calls: list[tuple[Any, ...]]) -> list[Any]:
    return [
        await _generated(context, project, _texts(texts, "generate"), config)
        for project, texts, config in calls
    ]


def _transform_stream(task_json: bool, inputs_json: bool) -> StreamImplementation:
    def stream(context: CallContext, call: tuple[Any, ...]) -> AsyncIterator[Any]:
        """The model a tuned project name stands for was preloaded, before the stream began."""
        task, args, inputs, _cache = call
        given = _messages(inputs, "transform_stream") if inputs_json else inputs
        tuned = context.preloaded.loaded if context.preloaded is not None else None
        served = _task(task, task_json) if tuned is None else {**task, "model": tuned}
        return context.engine.transform_stream(served, json_object(args, "args"), given)

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
                overloads.append(
                    Overload(signature, _collected(implementation), implementation, preload=_tuned_for_task)
                )
            else:
                overloads.append(
                    Overload(signature, implementation, reads_session=True, preload=_tuned_for_task)
                )
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

GENERATE: Final = [
    Overload(
        Signature(
            "generate",
            (Parameter("project_name", "text"), Parameter(name, inputs), Parameter("config", "jsonb", {})),
            returns,
        ),
        run,
        reads_session=True,
        preload=_preload_project,
    )
    for name, inputs, returns, run in (
        ("inputs", "text", TEXT, _generate_one),
        ("inputs", "text[]", TEXT_ARRAY, _generate_many),
    )
]
"""pgml.generate's overloads (a tuned project's model), for the registry."""
