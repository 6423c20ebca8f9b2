"""The ``pgml.transform`` and ``pgml.transform_stream`` statements the SDK sends (contract §1.5), shared by
``Builtins``, ``TransformerPipeline``, ``OpenSourceAI`` and RAG, so their SQL and argument checks exist once.

Every argument is a bind parameter with an explicit cast: the proxy only folds calls whose arguments are constants,
and the casts pick one of the four overloads (task text or jsonb, by inputs text or jsonb) without guessing.
Streams run ``DECLARE … CURSOR`` and then ``FETCH n`` in one transaction, so rows reach the caller as the model
produces them; the async and sync loops are twins because the contract makes some stream methods sync.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from psycopg.types.json import Jsonb

from .connection import connect, connect_sync, execute, fetch_all, fetch_all_sync, fetch_one
from .errors import ValidationError

Task = str | Mapping[str, Any]
"""A task name (bound as text: the proxy picks the task's default model) or a pipeline dictionary (jsonb)."""

Messages = list[dict[str, Any]]

_CURSOR = "pgml_transform_stream"


def integer(name: str, value: Any) -> int:
    """An int from an int or an integral float (JSON numbers from other languages arrive as floats)."""
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral:
        raise ValidationError(f"{name} must be an integer, got {value!r}")
    return int(value)


def fetch_size(value: Any) -> int:
    """Rows per ``FETCH``: a positive integer, written into the statement."""
    size = 1 if value is None else integer("batch_size", value)
    if size < 1:
        raise ValidationError(f"batch_size must be at least 1, got {size}")
    return size


def texts(value: Any, name: str = "inputs") -> list[str]:
    """A list of strings; one bare string is refused rather than split into characters."""
    if (
        isinstance(value, str)
        or not isinstance(value, Sequence)
        or not all(isinstance(v, str) for v in value)
    ):
        raise ValidationError(f"{name} must be a list of strings")
    return list(value)


def messages(value: Any, name: str = "messages") -> Messages:
    """A chat: a non-empty list of message objects (the proxy checks their role and content)."""
    if (
        isinstance(value, str | Mapping)
        or not isinstance(value, Sequence)
        or not value
        or not all(isinstance(m, Mapping) for m in value)
    ):
        raise ValidationError(f'{name} must be a non-empty list of message objects {{"role", "content"}}')
    return [dict(m) for m in value]


def mapping(name: str, value: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of an optional dict argument (``None`` is empty)."""
    if value is not None and not isinstance(value, Mapping):
        raise ValidationError(f"{name} must be a dict, got {type(value).__name__}")
    return dict(value or {})


def task_json(task: Mapping[str, Any]) -> dict[str, Any]:
    """A pipeline dictionary as the SDK sends it: ``gpu_layers`` is an integer for GGUF backends."""
    checked = dict(task)
    if "gpu_layers" in checked:
        checked["gpu_layers"] = integer("gpu_layers", checked["gpu_layers"])
    return checked


def generation_args(args: Mapping[str, Any] | None) -> dict[str, Any]:
    """Generation arguments in the OpenAI spelling the proxy (and PostgresML) accept: ``max_new_tokens`` becomes
    ``max_tokens`` (it wins over a given ``max_tokens``, as upstream), and the counts are integers."""
    named = mapping("args", args)
    if "max_new_tokens" in named:
        named["max_tokens"] = named.pop("max_new_tokens")
    for key in ("max_tokens", "n"):
        if key in named:
            named[key] = integer(key, named[key])
    return named


def _task(task: Task) -> tuple[str, Any]:
    if isinstance(task, str):
        return "%s::text", task
    if isinstance(task, Mapping):
        return "%s::jsonb", Jsonb(task_json(task))
    raise ValidationError(f"task must be a string or a dict, got {type(task).__name__}")


def transform_statement(
    task: Task, args: Mapping[str, Any] | None, inputs: list[str] | Messages
) -> tuple[str, list[Any]]:
    """``pgml.transform`` over texts (text[]) or, when the inputs are message dicts, one chat (jsonb[])."""
    task_sql, task_value = _task(task)
    if inputs and isinstance(inputs[0], Mapping):
        inputs_sql, inputs_value = "%s::jsonb[]", [Jsonb(m) for m in inputs]
    else:
        inputs_sql, inputs_value = "%s::text[]", list(inputs)
    query = f"SELECT pgml.transform(task => {task_sql}, args => %s::jsonb, inputs => {inputs_sql})"
    return query, [task_value, Jsonb(mapping("args", args)), inputs_value]


async def transform(
    dsn: str, task: Task, args: Mapping[str, Any] | None, inputs: list[str] | Messages
) -> Any:
    """The JSON ``pgml.transform`` returns."""
    query, params = transform_statement(task, args, inputs)
    async with connect(dsn) as connection:
        return await fetch_one(connection, query, params)


def transform_sync(dsn: str, task: Task, args: Mapping[str, Any] | None, inputs: list[str] | Messages) -> Any:
    """:func:`transform` for the contract's sync methods."""
    query, params = transform_statement(task, args, inputs)
    with connect_sync(dsn) as connection:
        rows = fetch_all_sync(connection, query, params)
    return rows[0][0] if rows else None


def _declare(task: Task, args: Mapping[str, Any] | None, source: str | Messages) -> tuple[str, list[Any]]:
    """The cursor over ``pgml.transform_stream``: a prompt goes as ``input text``, a chat as ``inputs jsonb[]``."""
    task_sql, task_value = _task(task)
    if isinstance(source, str):
        input_sql, input_value = "input => %s::text", source
    else:
        input_sql, input_value = "inputs => %s::jsonb[]", [Jsonb(m) for m in source]
    query = (
        f"DECLARE {_CURSOR} CURSOR FOR "
        f"SELECT pgml.transform_stream(task => {task_sql}, args => %s::jsonb, {input_sql})"
    )
    return query, [task_value, Jsonb(mapping("args", args)), input_value]


async def stream_batches(
    dsn: str, task: Task, args: Mapping[str, Any] | None, source: str | Messages, batch_size: int = 1
) -> AsyncIterator[list[Any]]:
    """The rows of ``pgml.transform_stream`` (each a JSON array of new text, one string per sequence), one list
    per ``FETCH batch_size``, as they are generated. Closing the iterator early rolls the cursor back."""
    declare, params = _declare(task, args, source)
    fetch = f"FETCH {int(batch_size)} FROM {_CURSOR}"
    async with connect(dsn) as connection, connection.transaction():
        await execute(connection, declare, params)
        while rows := await fetch_all(connection, fetch):
            yield [row[0] for row in rows]


def stream_batches_sync(
    dsn: str, task: Task, args: Mapping[str, Any] | None, source: str | Messages, batch_size: int = 1
) -> Iterator[list[Any]]:
    """:func:`stream_batches` for the contract's sync stream methods."""
    declare, params = _declare(task, args, source)
    fetch = f"FETCH {int(batch_size)} FROM {_CURSOR}"
    with connect_sync(dsn) as connection, connection.transaction():
        fetch_all_sync(connection, declare, params)
        while rows := fetch_all_sync(connection, fetch):
            yield [row[0] for row in rows]
