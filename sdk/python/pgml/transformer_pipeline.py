"""``TransformerPipeline`` (contract §2.6): one task and model, run with ``pgml.transform`` and streamed with
``pgml.transform_stream``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

from . import transforms
from .connection import resolve_dsn
from .errors import ValidationError


class TransformerPipeline:
    """The task JSON is ``{**args, "task": task, "model": model}``; nothing touches the database until a call."""

    def __init__(
        self, task: str, model: str, args: Mapping[str, Any] | None = None, database_url: str | None = None
    ) -> None:
        if not isinstance(task, str) or not isinstance(model, str):
            raise ValidationError("TransformerPipeline takes a task and a model name (both str)")
        self._task = transforms.task_json({**transforms.mapping("args", args), "task": task, "model": model})
        self._database_url = database_url

    @property
    def _chat(self) -> bool:
        """Conversational inputs are message dicts (jsonb[]); every other task takes text."""
        return self._task["task"] == "conversational"

    async def transform(self, inputs: list[Any], args: Mapping[str, Any] | None = None) -> Any:
        """The JSON of ``pgml.transform``: for ``conversational``, ``inputs`` is one chat's messages."""
        given = transforms.messages(inputs, "inputs") if self._chat else transforms.texts(inputs)
        return await transforms.transform(
            resolve_dsn(self._database_url), self._task, transforms.generation_args(args), given
        )

    async def transform_stream(
        self, input: str | list[Any], args: Mapping[str, Any] | None = None, batch_size: int | None = None
    ) -> AsyncIterator[Any]:
        """An async iterator over the generated text: with ``batch_size`` 1 (the default) each item is one
        streamed row (a JSON array of strings); with more, each item lists the first string of each fetched row.

        Arguments are checked here, so a bad call fails when awaited; the query starts at the first item.
        """
        if self._chat:
            source: str | transforms.Messages = transforms.messages(input, "input")
        elif isinstance(input, str):
            source = input
        else:
            raise ValidationError(f"input must be a str for task {self._task['task']}")
        size = transforms.fetch_size(batch_size)
        return self._items(resolve_dsn(self._database_url), transforms.generation_args(args), source, size)

    async def _items(
        self, dsn: str, args: dict[str, Any], source: str | transforms.Messages, size: int
    ) -> AsyncIterator[Any]:
        batches = transforms.stream_batches(dsn, self._task, args, source, size)
        async with aclosing(batches):
            async for rows in batches:
                yield rows[0] if size == 1 else [row[0] for row in rows]
