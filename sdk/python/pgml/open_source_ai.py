"""``OpenSourceAI`` (contract §2.7): OpenAI-style chat completions served by ``pgml.transform`` with the
``conversational`` task, in the four sync/async, whole/streamed combinations.

Every model name is passed through (F11): the proxy resolves or aliases it and answers an unknown one with its own
error. ``n`` is honoured (F9): the proxy reads it as the number of sequences to generate for the chat, so a
completion has ``n`` choices and every streamed row ``n`` deltas.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import aclosing, closing
from dataclasses import dataclass, field
from typing import Any

from . import transforms
from .connection import resolve_dsn
from .errors import PgmlError, ValidationError
from .identity import compact_json

DEFAULT_MAX_TOKENS = 1000
DEFAULT_TEMPERATURE = 0.8

Model = str | Mapping[str, Any]


@dataclass(frozen=True)
class _Request:
    """One call's task, messages and generation arguments, and what its responses repeat."""

    name: str
    task: dict[str, Any]
    messages: transforms.Messages
    args: dict[str, Any]
    fingerprint: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: int = field(default_factory=lambda: int(time.time()))


def _request(
    model: Model,
    messages: Any,
    max_tokens: int | None,
    temperature: float | None,
    n: int | None,
    chat_template: str | None,
) -> _Request:
    if isinstance(model, str):
        name, extras = model, {}
    elif isinstance(model, Mapping) and isinstance(model.get("model"), str):
        name, extras = model["model"], {key: value for key, value in model.items() if key != "model"}
    else:
        raise ValidationError('model must be a model name or a dict {"model": name, ...}')
    task = transforms.task_json({**extras, "task": "conversational", "model": name})
    tokens = DEFAULT_MAX_TOKENS if max_tokens is None else transforms.integer("max_tokens", max_tokens)
    if temperature is None:
        temperature = DEFAULT_TEMPERATURE
    elif isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise ValidationError(f"temperature must be a number, got {temperature!r}")
    count = 1 if n is None else transforms.integer("n", n)
    if count < 1:
        raise ValidationError(f"n must be at least 1, got {count}")
    args: dict[str, Any] = {"max_tokens": tokens, "temperature": temperature}
    if count > 1:  # left out otherwise, so the statement is the upstream's
        args["n"] = count
    if chat_template is not None:
        if not isinstance(chat_template, str):
            raise ValidationError("chat_template must be a str")
        args["chat_template"] = chat_template
    digest = hashlib.md5(f"{compact_json(task)}{tokens}{temperature}{count}".encode()).digest()
    return _Request(name, task, transforms.messages(messages), args, str(uuid.UUID(bytes=digest)))


def _completion(request: _Request, output: Any) -> dict[str, Any]:
    return {
        "id": request.id,
        "object": "chat.completion",
        "created": request.created,
        "model": request.name,
        "system_fingerprint": request.fingerprint,
        "choices": [
            {"index": index, "message": {"role": "assistant", "content": content}}
            for index, content in enumerate(_texts(output))
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def _chunk(request: _Request, row: Any) -> dict[str, Any]:
    """One streamed row: its element ``i`` is the next piece of choice ``i``. The id is the stream's (OpenAI)."""
    return {
        "id": request.id,
        "system_fingerprint": request.fingerprint,
        "object": "chat.completion.chunk",
        "created": request.created,
        "model": request.name,
        "choices": [
            {"index": index, "delta": {"role": "assistant", "content": content}}
            for index, content in enumerate(_texts(row))
        ],
    }


def _texts(value: Any) -> list[str]:
    """The generated strings; anything else means the model was not served as a chat model."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PgmlError(f"conversational transform returned {str(value)[:200]!r}, not a list of strings")
    return value


class OpenSourceAI:
    """Chat completions; every method takes ``(model, messages, max_tokens, temperature, n, chat_template)``."""

    def __init__(self, database_url: str | None = None) -> None:
        self._database_url = database_url

    def chat_completions_create(
        self,
        model: Model,
        messages: list[dict[str, Any]],
        max_tokens: int | None = None,
        temperature: float | None = None,
        n: int | None = None,
        chat_template: str | None = None,
    ) -> dict[str, Any]:
        request = _request(model, messages, max_tokens, temperature, n, chat_template)
        dsn = resolve_dsn(self._database_url)
        return _completion(
            request, transforms.transform_sync(dsn, request.task, request.args, request.messages)
        )

    async def chat_completions_create_async(
        self,
        model: Model,
        messages: list[dict[str, Any]],
        max_tokens: int | None = None,
        temperature: float | None = None,
        n: int | None = None,
        chat_template: str | None = None,
    ) -> dict[str, Any]:
        request = _request(model, messages, max_tokens, temperature, n, chat_template)
        dsn = resolve_dsn(self._database_url)
        output = await transforms.transform(dsn, request.task, request.args, request.messages)
        return _completion(request, output)

    def chat_completions_create_stream(
        self,
        model: Model,
        messages: list[dict[str, Any]],
        max_tokens: int | None = None,
        temperature: float | None = None,
        n: int | None = None,
        chat_template: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """A sync iterator of chunks; arguments are checked now, the query starts at the first chunk."""
        request = _request(model, messages, max_tokens, temperature, n, chat_template)
        return self._chunks_sync(resolve_dsn(self._database_url), request)

    async def chat_completions_create_stream_async(
        self,
        model: Model,
        messages: list[dict[str, Any]],
        max_tokens: int | None = None,
        temperature: float | None = None,
        n: int | None = None,
        chat_template: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """An async iterator of chunks; arguments are checked now, the query starts at the first chunk."""
        request = _request(model, messages, max_tokens, temperature, n, chat_template)
        return self._chunks(resolve_dsn(self._database_url), request)

    @staticmethod
    def _chunks_sync(dsn: str, request: _Request) -> Iterator[dict[str, Any]]:
        with closing(
            transforms.stream_batches_sync(dsn, request.task, request.args, request.messages)
        ) as rows:
            for (row,) in rows:
                yield _chunk(request, row)

    @staticmethod
    async def _chunks(dsn: str, request: _Request) -> AsyncIterator[dict[str, Any]]:
        batches = transforms.stream_batches(dsn, request.task, request.args, request.messages)
        async with aclosing(batches):
            async for (row,) in batches:
                yield _chunk(request, row)
