"""The SDK without ``await``: ``from pgml.sync import Collection`` gives the same classes with blocking methods.

Every coroutine runs on one private event loop in a daemon thread, so the connection pools (keyed by loop) live
as long as the process, and async iterators (``rag_stream(...).stream()``, ``transform_stream``) come back as
plain iterators.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pgml

from .pipeline import Model, Pipeline, SingleFieldPipeline, Splitter

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _running_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="pgml-sync", daemon=True).start()
        return _loop


def _run(awaitable: Any) -> Any:
    return _blocking(asyncio.run_coroutine_threadsafe(_awaited(awaitable), _running_loop()).result())


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _iterate(iterator: AsyncIterator[Any]) -> Iterator[Any]:
    while True:
        try:
            yield _run(iterator.__anext__())
        except StopAsyncIteration:
            return


def _blocking(value: Any) -> Any:
    """Results as sync code wants them: SDK objects wrapped, async iterators turned into iterators."""
    if isinstance(value, AsyncIterator):
        return _iterate(value)
    if type(value) in _WRAPPERS:
        return _WRAPPERS[type(value)]._wrapping(value)
    return value


class _Blocking:
    """Forwards to an async SDK object, running its coroutines to completion."""

    _target_class: type[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._target = self._target_class(*args, **kwargs)

    @classmethod
    def _wrapping(cls, target: Any) -> _Blocking:
        wrapper = cls.__new__(cls)
        wrapper._target = target
        return wrapper

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            return _run(result) if inspect.isawaitable(result) else _blocking(result)

        return call


def _blocking_class(target: type[Any]) -> type[_Blocking]:
    return type(
        target.__name__, (_Blocking,), {"_target_class": target, "__doc__": f"{target.__name__}, blocking."}
    )


Collection = _blocking_class(pgml.Collection)
Builtins = _blocking_class(pgml.Builtins)
TransformerPipeline = _blocking_class(pgml.TransformerPipeline)
OpenSourceAI = _blocking_class(pgml.OpenSourceAI)
RAGStream = _blocking_class(pgml.RAGStream)
QueryBuilder = _blocking_class(pgml.QueryBuilder)
_WRAPPERS: dict[type[Any], type[_Blocking]] = {
    pgml.Collection: Collection,
    pgml.Builtins: Builtins,
    pgml.TransformerPipeline: TransformerPipeline,
    pgml.OpenSourceAI: OpenSourceAI,
    pgml.RAGStream: RAGStream,
    pgml.QueryBuilder: QueryBuilder,
}


def migrate(database_url: str | None = None) -> None:
    """:func:`pgml.migrate`, blocking."""
    _run(pgml.migrate(database_url))


init_logger: Callable[..., None] = pgml.init_logger

__all__ = [
    "Builtins",
    "Collection",
    "Model",
    "OpenSourceAI",
    "Pipeline",
    "SingleFieldPipeline",
    "Splitter",
    "TransformerPipeline",
    "init_logger",
    "migrate",
]
