"""Training in child processes: crashes fail one statement, cancel kills the child, progress reaches the loop.

The job functions below run in the pool's children, which import this module by name (it is on the ``sys.path``
spawn hands them).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from pgml_engines.classical import ColumnData, TrainingPool, TrainRequest, run_training
from pgml_engines.errors import EngineFailure, InvalidArgument


def echo(payload, send):
    for step in range(3):
        send({"step": step, "pid": os.getpid()})
    return payload * 2


def segfault(payload, send):
    import ctypes

    ctypes.string_at(0)


def hard_exit(payload, send):
    os._exit(3)


def out_of_memory(payload, send):
    raise MemoryError("cannot allocate 64 GiB")


def invalid(payload, send):
    raise InvalidArgument("the request was wrong")


def sleep_forever(payload, send):
    send(os.getpid())
    time.sleep(120)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def pool() -> Iterator[TrainingPool]:
    shared = TrainingPool(warm=1, preload=("numpy",))
    shared.start()
    yield shared
    shared.close()


async def test_progress_reaches_the_callback_on_the_event_loop_in_order(pool: TrainingPool) -> None:
    loop_thread = threading.get_ident()
    received = []

    def on_progress(message):
        assert threading.get_ident() == loop_thread
        received.append(message)

    assert await pool.run(echo, 21, on_progress) == 42
    assert [m["step"] for m in received] == [0, 1, 2]
    assert received[0]["pid"] != os.getpid()

    later = []

    async def slow_progress(message):  # awaited before the next message is delivered
        await asyncio.sleep(0.01)
        later.append(message["step"])

    assert await pool.run(echo, 1, slow_progress) == 2
    assert later == [0, 1, 2]


@pytest.mark.parametrize(
    ("job", "message"),
    [
        (segfault, "killed by SIGSEGV"),
        (hard_exit, "exited unexpectedly with status 3"),
        (out_of_memory, "MemoryError: cannot allocate 64 GiB"),
    ],
)
async def test_a_crashing_child_fails_the_statement_and_the_parent_goes_on(
    pool: TrainingPool, job, message
) -> None:
    crashes = pool.stats().crashes
    with pytest.raises(EngineFailure, match=message):
        await pool.run(job, None)
    if job is not out_of_memory:
        assert pool.stats().crashes == crashes + 1
    assert await pool.run(echo, 5) == 10  # the next statement runs, in a fresh worker


async def test_an_engine_error_keeps_its_class_and_the_worker(pool: TrainingPool) -> None:
    pids = []
    with pytest.raises(InvalidArgument, match=r"^the request was wrong$"):
        await pool.run(invalid, None)
    await pool.run(echo, 1, lambda m: pids.append(m["pid"]))
    await pool.run(echo, 1, lambda m: pids.append(m["pid"]))
    assert len(set(pids)) == 1  # a healthy worker is reused, warm


async def test_cancelling_the_statement_kills_the_child_promptly(pool: TrainingPool) -> None:
    started = asyncio.Event()
    pids = []

    def on_progress(pid):
        pids.append(pid)
        started.set()

    task = asyncio.create_task(pool.run(sleep_forever, None, on_progress))
    await asyncio.wait_for(started.wait(), 30)
    pid = pids[0]
    assert alive(pid)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    while alive(pid) and time.monotonic() - cancelled_at < 5:
        await asyncio.sleep(0.02)
    assert not alive(pid)
    assert time.monotonic() - cancelled_at < 2
    assert await pool.run(echo, 3) == 6


async def test_training_runs_in_a_child_and_reports_progress(pool: TrainingPool) -> None:
    from sklearn.datasets import load_iris  # not at the top: the pool's children import this module

    x, y = load_iris(return_X_y=True)
    columns = [ColumnData(f"f{i}", "float8", x[:, i].tolist()) for i in range(4)]
    columns.append(ColumnData("species", "int4", y.tolist()))
    request = TrainRequest(
        task="classification",
        columns=columns,
        y_column_names=["species"],
        algorithm="linear",
        hyperparams={"max_iter": 1000},
        search="grid",
        search_params={"C": [0.1, 1.0]},
        search_args={"cv": 2},
        seed=0,
    )
    events = []
    result = await run_training(request, events.append, pool=pool)
    assert [e.event for e in events if e.event != "warning"] == [
        "prepared",
        "search",
        *["fold"] * 4,
        "metrics",
    ]
    assert events[0].data["num_features"] == 4
    assert result.metrics["accuracy"] > 0.85
    assert result.hyperparams["C"] in (0.1, 1.0)
    assert np.isclose(sum(events[0].data["columns"][0]["statistics"]["histogram"]), result.train_rows)
    with pytest.raises(InvalidArgument, match=r"knn does not support classification"):
        await run_training(
            TrainRequest(task="classification", columns=columns, y_column_names=["species"], algorithm="knn"),
            pool=pool,
        )
