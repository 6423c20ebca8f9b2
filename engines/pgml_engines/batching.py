"""Dynamic batching across callers: many sessions' small requests become one model call.

32 sessions each embedding one sentence should cost about one forward pass, not 32 (DESIGN §5, §9). Callers
``await batcher.submit(items)``; requests queue in arrival order and a collector task takes as many as fit in
``max_batch_size`` items, after waiting at most ``max_wait_s`` for company. While a batch runs on the worker
thread, new requests keep queueing, so under load the next batch forms by itself, with no extra wait.

Invariants:
- the event loop never runs the model: batches go to an executor (one thread per model and device, owned by the
  caller of this module), so batches of one model run one at a time and never compete for its weights;
- each caller gets exactly its own results, in its own order;
- a caller cancelled before its batch starts is dropped from the batch and costs nothing; one cancelled while
  its batch runs just never sees the result (the batch is shared and finishes for the others);
- a batch that fails fails every request in it, with the same exception (they shared the model and options);
- an observer (metrics) is told of each batch as it starts, on the event loop; its failure is logged, never
  the batch's.

A batcher keeps no event-loop state while idle, so one Engine can outlive an event loop (tests run one loop per
test); it serves one event loop at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class BatchStats:
    """Counters that let tests prove batching happened, without measuring time.

    batches: model calls made; requests: submit() calls served by them; items: inputs in them;
    dropped: requests cancelled before their batch started.
    """

    batches: int = 0
    requests: int = 0
    items: int = 0
    dropped: int = 0


BatchObserver = Callable[[int, list[float]], None]
"""Told as each batch starts, on the event loop: its item count, and how long each of its requests waited in the
queue (seconds, from submit() to the batch starting)."""


@dataclass
class _Request(Generic[T, R]):
    items: list[T]
    future: asyncio.Future[list[R]]
    queued: float = 0.0  # the loop's time at submit()


class Batcher(Generic[T, R]):
    """Batches ``submit`` calls into calls of ``run_batch(items) -> results`` (one result per item, same order)."""

    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R]],
        executor: Executor,
        *,
        max_batch_size: int,
        max_wait_s: float,
        name: str = "batcher",
        stats: BatchStats | None = None,
        observer: BatchObserver | None = None,
    ) -> None:
        """``stats`` may be shared by several batchers to count for all of them together."""
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self._run_batch = run_batch
        self._executor = executor
        self._max_items = max_batch_size
        self._max_wait = max_wait_s
        self._name = name
        self._pending: deque[_Request[T, R]] = deque()
        self._pending_items = 0
        self._collector: asyncio.Task[None] | None = None
        self._filled: asyncio.Future[None] | None = None
        self.stats = stats if stats is not None else BatchStats()
        self._observer = observer

    @property
    def idle(self) -> bool:
        """No request queued and no batch running."""
        return not self._pending and (self._collector is None or self._collector.done())

    async def submit(self, items: Sequence[T]) -> list[R]:
        """Run ``items`` in a batch with whatever other callers submit meanwhile; results in ``items`` order."""
        if not items:
            return []
        loop = asyncio.get_running_loop()
        request: _Request[T, R] = _Request(list(items), loop.create_future(), loop.time())
        self._pending.append(request)
        self._pending_items += len(request.items)
        if self._pending_items >= self._max_items and self._filled is not None and not self._filled.done():
            self._filled.set_result(None)
        collector = self._collector
        if collector is None or collector.done() or collector.get_loop() is not loop:
            self._collector = loop.create_task(self._collect(), name=f"{self._name}-collector")
        return await request.future

    async def _collect(self) -> None:
        """Form and run batches until the queue is empty, then end (the next submit starts a new collector)."""
        loop = asyncio.get_running_loop()
        batch: list[_Request[T, R]] = []
        try:
            while self._pending:
                if self._pending_items < self._max_items and self._max_wait > 0:
                    self._filled = loop.create_future()
                    await asyncio.wait([self._filled], timeout=self._max_wait)
                    self._filled = None
                batch = self._take(loop)
                if batch:
                    await self._run(loop, batch)
                batch = []
        except asyncio.CancelledError:
            # The loop is shutting down: nobody will ever complete these requests otherwise.
            for request in (*batch, *self._pending):
                request.future.cancel()
            self._pending.clear()
            self._pending_items = 0
            raise

    def _take(self, loop: asyncio.AbstractEventLoop) -> list[_Request[T, R]]:
        """Requests for the next batch: live ones in arrival order, up to the item limit (at least one).

        A request left behind by an event loop that has gone away is dropped too: its caller no longer exists.
        """
        batch: list[_Request[T, R]] = []
        size = 0
        while self._pending:
            request = self._pending[0]
            if request.future.done() or request.future.get_loop() is not loop:  # cancelled while queued
                self._pending.popleft()
                self._pending_items -= len(request.items)
                self.stats.dropped += 1
                continue
            if batch and size + len(request.items) > self._max_items:
                break
            self._pending.popleft()
            self._pending_items -= len(request.items)
            batch.append(request)
            size += len(request.items)
        return batch

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Request[T, R]]) -> None:
        items = [item for request in batch for item in request.items]
        self.stats.batches += 1
        self.stats.requests += len(batch)
        self.stats.items += len(items)
        if self._observer is not None:
            now = loop.time()
            try:
                self._observer(len(items), [now - request.queued for request in batch])
            except Exception:
                log.exception("%s: batch observer failed", self._name)
        try:
            results = await loop.run_in_executor(self._executor, self._run_batch, items)
            if len(results) != len(items):
                raise RuntimeError(
                    f"{self._name}: batch returned {len(results)} results for {len(items)} items"
                )
        except Exception as exc:
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        start = 0
        for request in batch:
            end = start + len(request.items)
            if not request.future.done():
                request.future.set_result(list(results[start:end]))
            start = end
