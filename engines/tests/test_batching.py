"""The batcher with a real worker thread; the batch function records what it was given."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from pgml_engines.batching import Batcher


@pytest.fixture
def worker() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=1)
    yield executor
    executor.shutdown(wait=True)


class Recorder:
    """Squares numbers, remembering each batch; can be held at the start of a batch to order events exactly."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[int] = set()
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.threads.add(threading.get_ident())
        self.started.set()
        self.release.wait(timeout=30)
        return [item * item for item in items]


async def test_concurrent_callers_share_one_batch_and_get_their_own_results(
    worker: ThreadPoolExecutor,
) -> None:
    run = Recorder()
    batcher: Batcher[int, int] = Batcher(run, worker, max_batch_size=64, max_wait_s=0.002)
    results = await asyncio.gather(*(batcher.submit([i, i + 100]) for i in range(10)))
    assert results == [[i * i, (i + 100) ** 2] for i in range(10)]
    assert len(run.batches) == batcher.stats.batches == 1
    assert (batcher.stats.requests, batcher.stats.items) == (10, 20)
    assert threading.get_ident() not in run.threads  # the event loop's thread never runs a batch


async def test_batches_never_exceed_the_size_limit_but_a_big_request_runs_whole(
    worker: ThreadPoolExecutor,
) -> None:
    run = Recorder()
    batcher: Batcher[int, int] = Batcher(run, worker, max_batch_size=4, max_wait_s=0.002)
    results = await asyncio.gather(*(batcher.submit([i]) for i in range(10)), batcher.submit(list(range(6))))
    assert results[:10] == [[i * i] for i in range(10)]
    assert results[10] == [i * i for i in range(6)]
    assert all(len(batch) <= 4 for batch in run.batches if batch != list(range(6)))
    assert sorted(x for batch in run.batches for x in batch) == sorted([*range(10), *range(6)])


async def test_cancel_drops_a_queued_request_from_its_batch(worker: ThreadPoolExecutor) -> None:
    run = Recorder()
    run.release.clear()
    batcher: Batcher[int, int] = Batcher(run, worker, max_batch_size=64, max_wait_s=0)
    first = asyncio.create_task(batcher.submit([1]))
    await asyncio.to_thread(run.started.wait, 30)  # batch [1] is running and holds the worker
    doomed = asyncio.create_task(batcher.submit([2]))
    kept = asyncio.create_task(batcher.submit([3]))
    await asyncio.sleep(0)  # both are queued behind the running batch
    doomed.cancel()
    run.release.set()
    assert await first == [1]
    assert await kept == [9]
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert run.batches == [[1], [3]]
    assert batcher.stats.dropped == 1


async def test_a_failing_batch_fails_each_of_its_callers(worker: ThreadPoolExecutor) -> None:
    def broken(items: list[int]) -> list[int]:
        raise ValueError("model says no")

    batcher: Batcher[int, int] = Batcher(broken, worker, max_batch_size=8, max_wait_s=0.002)
    outcomes = await asyncio.gather(*(batcher.submit([i]) for i in range(3)), return_exceptions=True)
    assert all(isinstance(outcome, ValueError) for outcome in outcomes)
    assert await asyncio.gather(batcher.submit([])) == [[]]


async def test_a_batch_returning_the_wrong_number_of_results_is_an_error(worker: ThreadPoolExecutor) -> None:
    batcher: Batcher[int, int] = Batcher(lambda items: [0], worker, max_batch_size=8, max_wait_s=0)
    with pytest.raises(RuntimeError, match="2 items"):
        await batcher.submit([1, 2])
