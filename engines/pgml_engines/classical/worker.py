"""Training in child processes (DESIGN §5): a crash fails one statement, a cancel stops the work.

A :class:`TrainingPool` keeps ``warm`` idle processes started ahead of time (``spawn`` context: a fresh
interpreter, no inherited threads or locks of the proxy) that have already imported the ML libraries, so a
statement pays neither interpreter start nor imports. One job runs in one process at a time.

Parent side, per job: the request goes to the child and messages come back over a multiprocessing Pipe; a
reader thread (``wait`` on the pipe *and* the process sentinel) forwards them to the event loop, so the loop
never blocks on a pipe or on pickling, and a dead child is noticed even when it sends nothing. Progress
messages reach the caller's callback on the event loop, in order (an async callback is awaited before the next
message, so the proxy can write catalog rows in the middle of a training).

- A child that dies (segfault, ``os._exit``, the OOM killer) raises EngineFailure with its exit status; the
  parent and the pool go on, and a fresh process replaces it.
- An exception in the job comes back as the same :mod:`pgml_engines.errors` class (library errors
  translated); after anything but an EngineError (a MemoryError, say) the child is retired, since its state
  may be damaged.
- Cancelling the awaiting task SIGKILLs the child at once (training must stop on a CancelRequest, §4.7);
  the reader thread reaps it.

Children exit when the parent is gone (within a second), so a killed proxy leaves no training behind. As
with every ``spawn`` child, the parent's ``__main__`` module is imported under the name ``__mp_main__`` (a
guarded console script runs nothing).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib
import inspect
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .. import errors
from ..errors import EngineError, EngineFailure, translate
from .train import TrainingProgress, TrainRequest, TrainResult

log = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")
ProgressCallback = Callable[[TrainingProgress], Awaitable[None] | None]
#: A job: a module-level function (pickled by reference) called in the child with the payload and a function
#: that sends one progress message to the parent.
Target = Callable[[P, Callable[[Any], None]], R]

#: Imported by every worker before it reports ready: what a training needs, so a statement does not wait.
DEFAULT_PRELOAD = (
    "pgml_engines.classical.train",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.metrics",
    "sklearn.model_selection",
    "xgboost",
    "lightgbm",
    "catboost",
    "skops.io",
)
_REAP_S = 5.0
_WATCH_PARENT_S = 1.0


@dataclass(frozen=True)
class _ErrorReport:
    """An exception as it crosses the pipe: the class is looked up by name among the engine's own, so no
    arbitrary class is rebuilt and exceptions with unusual constructors still cross."""

    kind: str
    message: str
    fatal: bool  # the child exits after sending this


def _rebuild(report: _ErrorReport) -> EngineError:
    cls = getattr(errors, report.kind, None)
    if isinstance(cls, type) and issubclass(cls, EngineError) and cls is not errors.ModelNotFound:
        try:
            return cls(report.message)
        except TypeError:
            pass
    return EngineFailure(report.message)


# --- child side ---------------------------------------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """Exit when the parent is gone (re-parented), even in the middle of a job. A polling thread rather than
    ``PR_SET_PDEATHSIG``, which fires when the parent *thread* that started us ends, not the process."""

    def watch() -> None:
        while True:
            time.sleep(_WATCH_PARENT_S)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="pgml-watch-parent", daemon=True).start()


def _worker_main(
    conn: multiprocessing.connection.Connection, preload: Sequence[str], memory_limit: int | None, parent: int
) -> None:
    """The child's loop: one job at a time until told to stop, the pipe closes, or a job fails badly."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the proxy, which then kills us
    if memory_limit:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:  # a missing optional library fails the job that needs it, with its own message
            log.debug("preloading %s failed", name, exc_info=True)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        target, payload = job
        try:
            result = target(payload, lambda message: conn.send(("progress", message)))
        except BaseException as exc:
            fatal = not isinstance(exc, EngineError)
            error = (
                translate(exc)
                if not isinstance(exc, KeyboardInterrupt | SystemExit)
                else EngineFailure(f"the training process was stopped ({type(exc).__name__})")
            )
            try:
                conn.send(("error", _ErrorReport(type(error).__name__, str(error), fatal)))
            except BaseException:
                os._exit(70)
            if fatal:
                return
            continue
        try:
            conn.send(("result", result))
        except BaseException as exc:
            with contextlib.suppress(BaseException):
                conn.send(
                    (
                        "error",
                        _ErrorReport("EngineFailure", f"the result could not be sent back: {exc}", True),
                    )
                )
            return


# --- parent side --------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    jobs: int = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid


@dataclass
class PoolStats:
    """Counters for tests and introspection."""

    started: int = 0
    jobs: int = 0
    crashes: int = 0
    cancelled: int = 0
    idle: int = 0
    busy: int = 0
    busy_pids: list[int] = field(default_factory=list)


class TrainingPool:
    """Child processes that run training jobs, ``warm`` of them kept idle and ready (one more may wait, so
    that sequential statements reuse one worker instead of starting a new one each).

    max_workers: jobs running at once (more wait, cancellably); max_jobs_per_worker: a worker is replaced after
    this many jobs (bounds what a long-lived process accumulates); memory_limit_bytes: the address-space limit
    of each child (a job over it gets MemoryError instead of the OOM killer picking a process).
    """

    def __init__(
        self,
        *,
        warm: int = 1,
        max_workers: int | None = None,
        max_jobs_per_worker: int = 20,
        memory_limit_bytes: int | None = None,
        preload: Sequence[str] = DEFAULT_PRELOAD,
    ) -> None:
        if warm < 0 or max_jobs_per_worker < 1:
            raise ValueError("warm must be >= 0 and max_jobs_per_worker >= 1")
        self._context = multiprocessing.get_context("spawn")
        self._warm = warm
        self._max_workers = max(1, max_workers or os.cpu_count() or 1)
        self._max_jobs = max_jobs_per_worker
        self._memory_limit = memory_limit_bytes
        self._preload = tuple(preload)
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._lock = threading.Lock()
        self._stats = PoolStats()
        self._reserved = 0  # jobs admitted (running or about to)
        self._closed = False

    # lifecycle

    def start(self) -> None:
        """Start the warm workers now (they import in the background); also happens on first use."""
        self._check_open()
        self._top_up()

    def close(self) -> None:
        """Stop every worker: idle ones are asked to exit, running jobs are killed (their callers get
        EngineFailure)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            idle, busy = list(self._idle), list(self._busy)
            self._idle.clear()
        for worker in idle:
            with contextlib.suppress(OSError, ValueError):
                worker.conn.send(None)
            self._reap_later(worker)
        for worker in busy:
            self._kill(worker)

    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(
                started=self._stats.started,
                jobs=self._stats.jobs,
                crashes=self._stats.crashes,
                cancelled=self._stats.cancelled,
                idle=len(self._idle),
                busy=len(self._busy),
                busy_pids=[w.pid for w in self._busy if w.pid is not None],
            )

    # jobs

    async def train(self, request: TrainRequest, progress: ProgressCallback | None = None) -> TrainResult:
        """Run :func:`pgml_engines.classical.train.train` in a worker."""
        from .train import train

        return await self.run(train, request, progress)

    async def run(self, target: Target[P, R], payload: P, progress: ProgressCallback | None = None) -> R:
        """Run ``target(payload, send)`` in a worker and return its result; ``send(message)`` in the child
        delivers ``progress(message)`` here, on the event loop, in order."""
        self._check_open()
        await self._acquire_slot()
        try:
            return await self._run(target, payload, progress)
        finally:
            self._release_slot()

    async def _run(self, target: Target[P, R], payload: P, progress: ProgressCallback | None) -> R:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        worker = self._take()

        def post(message: tuple[str, Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting any more
                loop.call_soon_threadsafe(inbox.put_nowait, message)

        pump = threading.Thread(
            target=_pump, args=(worker, (target, payload), post), name=f"pgml-train-{worker.pid}", daemon=True
        )
        pump.start()
        finished = False
        try:
            while True:
                kind, body = await inbox.get()
                if kind == "progress":
                    await _deliver(progress, body)
                    continue
                finished = True
                if kind == "result":
                    self._finish(worker)
                    return body
                if kind == "error":
                    self._finish(worker, retire=body.fatal)
                    raise _rebuild(body)
                if kind == "unsendable":
                    self._finish(worker)
                    raise EngineFailure(f"the training request could not be sent to the worker: {body}")
                self._crashed(worker)
                if self._closed:
                    raise EngineFailure("the training pool was closed while this training ran")
                raise EngineFailure(
                    f"the training process {_exit_text(body)}; the statement failed, the proxy goes on"
                )
        except BaseException:
            if not finished:
                # cancelled (or the callback's task died): stop the training now, whatever it is doing
                with self._lock:
                    self._stats.cancelled += 1
                self._kill(worker)
            raise

    # workers

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main,
            args=(child, self._preload, self._memory_limit, os.getpid()),
            name="pgml-training-worker",
            daemon=True,
        )
        process.start()
        child.close()
        with self._lock:
            self._stats.started += 1
        return _Worker(process, parent)

    def _take(self) -> _Worker:
        with self._lock:
            worker = None
            while self._idle:
                candidate = self._idle.pop()  # the most recently used: its imports are surely done
                if candidate.process.is_alive():
                    worker = candidate
                    break
                self._reap_later(candidate)
        if worker is None:
            worker = self._spawn()
        with self._lock:
            self._busy.add(worker)
        self._top_up()
        return worker

    def _top_up(self) -> None:
        while True:
            with self._lock:
                if self._closed or len(self._idle) >= self._warm:
                    return
            worker = self._spawn()
            with self._lock:
                if self._closed:
                    self._reap_later(worker, kill=True)
                    return
                self._idle.append(worker)

    def _finish(self, worker: _Worker, *, retire: bool = False) -> None:
        worker.jobs += 1
        with self._lock:
            self._busy.discard(worker)
            self._stats.jobs += 1
            keep = (
                not retire and not self._closed and worker.jobs < self._max_jobs and worker.process.is_alive()
            )
            # one more than ``warm`` may wait: the replacement started when this job began is already there,
            # and a finished worker is reused rather than replaced (each replacement costs imports)
            if keep and len(self._idle) <= self._warm:
                self._idle.append(worker)
                return
        if not retire:
            with contextlib.suppress(OSError, ValueError):
                worker.conn.send(None)
        self._reap_later(worker)
        self._top_up()

    def _crashed(self, worker: _Worker) -> None:
        # the pump thread has reaped the process and closed the pipe
        with self._lock:
            self._busy.discard(worker)
            self._stats.crashes += 1
        self._top_up()

    def _kill(self, worker: _Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
        with contextlib.suppress(Exception):
            worker.process.kill()
        # the pump thread wakes on the sentinel and reaps the process
        if not self._closed:
            self._top_up()

    def _reap_later(self, worker: _Worker, *, kill: bool = False) -> None:
        def reap() -> None:
            if kill:
                worker.process.kill()
            worker.process.join(_REAP_S)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(_REAP_S)
            with contextlib.suppress(OSError):
                worker.conn.close()

        threading.Thread(target=reap, name="pgml-train-reap", daemon=True).start()

    # concurrency limit (loop-agnostic: the pool may outlive the loop that first used it)

    async def _acquire_slot(self) -> None:
        while True:
            with self._lock:
                if self._reserved < self._max_workers:
                    self._reserved += 1
                    return
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                self._wake_next()  # pass on a wake-up this task may have taken with it
                raise
            finally:
                with self._lock, contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def _release_slot(self) -> None:
        with self._lock:
            self._reserved -= 1
        self._wake_next()

    def _wake_next(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for waiter in waiters:
            if not waiter.done():
                waiter.get_loop().call_soon_threadsafe(_wake, waiter)
                break

    def _check_open(self) -> None:
        if self._closed:
            raise EngineFailure("the training pool is closed")


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _pump(worker: _Worker, job: tuple[Any, Any], post: Callable[[tuple[str, Any]], None]) -> None:
    """Reader thread of one job: send it, then forward every message until the last one (or the child's death)."""
    conn, process = worker.conn, worker.process
    try:
        conn.send(job)
    except (OSError, EOFError, ValueError):
        post(("died", _reap(worker)))
        return
    except Exception as exc:  # the payload does not pickle
        post(("unsendable", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        try:
            ready = multiprocessing.connection.wait([conn, process.sentinel])
            if conn not in ready:
                post(("died", _reap(worker)))
                return
            message = conn.recv()
        except (EOFError, OSError):
            post(("died", _reap(worker)))
            return
        except Exception as exc:  # a message that does not unpickle here
            post(
                (
                    "error",
                    _ErrorReport("EngineFailure", f"a message from the worker was unreadable: {exc}", True),
                )
            )
            with contextlib.suppress(Exception):
                process.kill()
            _reap(worker)
            return
        post(message)
        if message[0] != "progress":
            return


def _reap(worker: _Worker) -> int | None:
    """Wait for a dead (or killed) child so no zombie stays, and close our end of its pipe."""
    worker.process.join(_REAP_S)
    with contextlib.suppress(OSError):
        worker.conn.close()
    return worker.process.exitcode


def _exit_text(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"crashed: killed by {name}{hint}"
    return f"exited unexpectedly with status {code}"


async def _deliver(progress: ProgressCallback | None, message: Any) -> None:
    """Hand one message to the callback; a failing callback is logged and never fails the training."""
    if progress is None:
        return
    try:
        outcome = progress(message)
        if inspect.isawaitable(outcome):
            await outcome
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("training progress callback failed")


# --- the shared pool ----------------------------------------------------------------------------------------------

_default: TrainingPool | None = None
_default_lock = threading.Lock()


def default_pool() -> TrainingPool:
    """The process-wide pool ``run_training`` uses unless given one (created, not started, on first use)."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            _default = TrainingPool()
        return _default


def close_default_pool() -> None:
    global _default
    with _default_lock:
        pool, _default = _default, None
    if pool is not None:
        pool.close()


async def run_training(
    request: TrainRequest, progress: ProgressCallback | None = None, *, pool: TrainingPool | None = None
) -> TrainResult:
    """Train in a child process: ``await`` it from the proxy's session task; cancelling that task kills the
    training. ``progress`` gets every :class:`TrainingProgress` on the event loop (it may be async)."""
    return await (pool or default_pool()).train(request, progress)
