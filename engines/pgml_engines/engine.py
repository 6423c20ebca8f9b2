"""The engine facade: the one object the proxy talks to.

The proxy creates one Engine per process and calls it from every session concurrently. The Engine owns:
- one ModelResolver (where models come from, under the configuration's security rules),
- one ModelCache (one copy of each model, keyed by name, load options and kind — embedding model, cross-encoder,
  transform model of a family — LRU within one memory budget),
- one worker thread per model copy (that is, per model and device), so the event loop never runs a model and
  batches of one model never compete for its weights,
- one Batcher per model copy and set of call options, so concurrent requests share model calls,
- for streamed generation, one thread per stream (never the batch worker, so a long stream does not hold up
  other sessions' batches), at most ``max_concurrent_generations`` of them per model copy.

Every exception leaving it is a :mod:`pgml_engines.errors` class (asyncio.CancelledError aside). Arguments are
checked on the event loop before anything is queued, so a bad request fails alone.

Client notices (:mod:`pgml_engines.notices`) are sent from the event loop only, in the caller's task, where the
proxy's per-session sink is visible.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from . import arguments, classical, datasets, tasks, tuning
from . import chunk as chunking
from . import embed as embedding
from . import rank as ranking
from . import stream as streaming
from . import transform as transforming
from .batching import Batcher, BatchStats
from .cache import CachedModel, ModelCache, ModelKey
from .classical.serving import ServingCache
from .config import EngineConfig
from .errors import EngineError, EngineFailure, InvalidArgument, NotAllowed, translate
from .notices import notify
from .resolve import ModelResolver

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

#: Idle batchers are swept once this many exist (each distinct set of call options makes one).
_SWEEP_AT = 64
#: How long close() waits for stopped streams' threads to end.
_CLOSE_WAIT_S = 5.0
#: A load that takes longer than this tells the client it is happening (a NOTICE), and when it is done.
LOAD_NOTICE_AFTER_S = 1.0

LOAD_EMBEDDING = "embedding"
"""``load_model``'s task for a model loaded as ``pgml.embed`` loads it (the default)."""
LOAD_RANK = "rank"
"""``load_model``'s task for a cross-encoder, as ``pgml.rank`` loads it."""
LOAD_TRANSFORM = "transform"
"""``load_model``'s task for a transform model whose task its config tells."""

_CLASSICAL_FUNCTIONS: dict[str, Callable[[classical.ClassicalModel, Any], Any]] = {
    "predict": classical.predict,
    "predict_proba": classical.predict_proba,
    "predict_joint": classical.predict_joint,
    "decompose": classical.decompose,
    "predict_rows": classical.predict_rows,
}

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, kw_only=True)
class EngineStats(streaming.GenerationCounts):
    """A snapshot of the engine's counters (for tests, metrics and the proxy's introspection), all in one flat
    object: generation's (:class:`~pgml_engines.stream.GenerationCounts`) and these.

    batches: model calls made by batchers (embed, rank, transform); requests: calls they served; items: inputs
    in them; dropped: requests cancelled before their batch ran; loads/hits/evictions: model cache activity;
    model_bytes: estimated size of the models held; models: how many are held.
    """

    batches: int
    requests: int
    items: int
    dropped: int
    loads: int
    hits: int
    evictions: int
    model_bytes: int
    models: int


@dataclass(frozen=True)
class _TransformRequest:
    """A transform call after the checks: what to load, how to call it, and on what.

    While the task is still to be inferred from the model, ``args`` is None (a stream's are checked as
    text-generation meanwhile, and ``warned`` says their WARNINGs went out) and ``raw_args`` wait for the task.
    """

    spec: tasks.TaskSpec
    args: tasks.CallArgs | None
    kind: tasks.InputKind
    items: list[Any]
    raw_args: Mapping[str, Any] | None = None
    warned: bool = False

    @property
    def key(self) -> ModelKey:
        return ModelKey(self.spec.model, self.spec.load, f"transform:{self.spec.family}")


class Engine:
    """Runs pgml's inference functions for all sessions of a process."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        # Checking a request's device needs torch, and its generation arguments transformers' GenerationConfig;
        # importing them here, at startup, keeps those multi-second imports off the event loop of the first
        # session that uses them.
        import torch  # noqa: F401
        from transformers import GenerationConfig  # noqa: F401
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # "Loading weights" bars have no reader in a server

        self._config = config or EngineConfig()
        self._resolver = ModelResolver(self._config)
        self._cache: ModelCache[ModelKey, Any] = ModelCache(
            self._config.memory_budget_bytes, on_evict=_release_device_memory
        )
        self._lock = threading.Lock()
        self._executors: dict[ModelKey, ThreadPoolExecutor] = {}
        self._batchers: dict[tuple[ModelKey, Hashable], Batcher[Any, Any]] = {}
        self._batch_stats = BatchStats()
        self._batch_observer: Callable[[str, str, int, list[float]], None] | None = None
        self._generation_stats = streaming.GenerationStats()
        self._slots: dict[ModelKey, streaming.GenerationSlots] = {}
        self._streams: dict[streaming.PieceChannel, threading.Thread] = {}
        self._stream_ids = itertools.count(1)
        self._inferred_tasks: dict[tuple[str, tasks.TransformLoadOptions], str] = {}
        self._loading: set[ModelKey] = set()
        self._training: classical.TrainingPool | None = None
        self._serving = ServingCache()
        self._closed = False

    @property
    def config(self) -> EngineConfig:
        return self._config

    # --- pgml.embed ----------------------------------------------------------------------------------------

    async def embed(
        self, model: str, texts: Sequence[str], kwargs: Mapping[str, Any] | None = None
    ) -> list[list[float]]:
        """``pgml.embed``: one float32 vector per text, in order.

        Arguments are checked before queueing, so a bad request fails alone; the model call itself is shared
        with concurrent requests for the same model and encode options.
        """
        key, encode_raw = self._prepare(model, kwargs)
        texts = arguments.text_array(texts, "embed input")
        encode = embedding.encode_options(encode_raw)
        if not texts:
            return []
        try:
            await self._ensure_model(key)
            batcher = self._batcher(
                key, encode, lambda batch: self._embed_batch(key, encode, batch), f"embed:{key.name}"
            )
            size = self._config.max_batch_size
            if len(texts) <= size:
                return await batcher.submit(texts)
            # A large request goes in batch-sized parts: model calls keep their tuned size, other
            # sessions' requests are served between the parts, and a cancel drops the parts not yet run.
            # Parts hold texts of similar length (as sentence-transformers sorts within one call), so
            # little of each batch is padding.
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
            parts = [
                batcher.submit([texts[i] for i in order[n : n + size]]) for n in range(0, len(order), size)
            ]
            vectors: list[list[float]] = [[]] * len(texts)
            for position, vector in zip(
                order, (v for part in await asyncio.gather(*parts) for v in part), strict=True
            ):
                vectors[position] = vector
            return vectors
        except EngineError:
            raise
        except Exception as exc:
            raise translate(exc) from exc

    async def load(self, model: str, kwargs: Mapping[str, Any] | None = None) -> None:
        """Load an embedding model (with these load options) ahead of its first use; encode options are
        ignored."""
        key, _ = self._prepare(model, kwargs)
        try:
            await self._ensure_model(key)
        except EngineError:
            raise
        except Exception as exc:
            raise translate(exc) from exc

    # --- pgml.rank -----------------------------------------------------------------------------------------

    async def rank(
        self, model: str, query: str, documents: Sequence[str], kwargs: Mapping[str, Any] | None
    ) -> list[tuple[int, float, str | None]]:
        """``pgml.rank``: (corpus_id, score, text) rows with CrossEncoder.rank semantics — sorted by score,
        descending, at most ``top_k``; ``text`` is None unless ``return_documents``.

        The (query, document) pairs of concurrent requests for one model and predict options share model calls.
        """
        key, options = self._rank_key(model, kwargs)
        docs = ranking.check_documents(query, documents)
        if not docs:
            return []
        try:
            await self._ensure_model(key)
            batcher = self._batcher(
                key,
                options.predict,
                lambda pairs: self._rank_batch(key, options.predict, pairs),
                f"rank:{key.name}",
            )
            scores = await self._submit(batcher, [(query, doc) for doc in docs])
            return ranking.order(scores, docs, options)
        except EngineError:
            raise
        except Exception as exc:
            raise translate(exc) from exc

    # --- pgml.transform ------------------------------------------------------------------------------------

    async def transform(
        self,
        task: str | Mapping[str, Any],
        args: Mapping[str, Any] | None,
        inputs: Sequence[str] | Sequence[Mapping[str, Any]],
    ) -> Any:
        """``pgml.transform``: the task's output for a list of inputs, as JSON values, shaped per contract §5
        (lists, dicts, str, float, int, None only).

        Concurrent requests for one model copy, task and set of arguments share a model call (generation too:
        prompts are padded into one generate()).
        """
        request = self._transform_request(task, args, inputs, stream=False)
        try:
            if request.spec.task is None:
                request = await self._infer_task(request, stream=False)
            call = request.args
            assert call is not None
            if not request.items:
                return []
            name = request.spec.name or call.task
            key = request.key
            await self._ensure_model(key)
            batcher = self._batcher(
                key,
                (name, call, request.kind),  # a batch is all prompts or all chats: they tokenize differently
                lambda items: self._transform_batch(key, name, call, items),
                f"transform:{call.task}:{key.name}",
            )
            results = await self._submit(batcher, request.items)
            return transforming.shape(call.task, request.kind, results)
        except EngineError:
            raise
        except Exception as exc:
            raise translate(exc) from exc

    def transform_stream(
        self,
        task: str | Mapping[str, Any],
        args: Mapping[str, Any] | None,
        inputs: str | Sequence[Mapping[str, Any]],
    ) -> AsyncGenerator[list[str], None]:
        """``pgml.transform_stream``: an async iterator of rows, each a list with the next piece of new text of
        every sequence being generated (contract §5.3).

        The task, arguments and inputs are checked now, so a bad call raises here, before any iteration; what
        needs the model (its chat template, its context) fails at the first ``__anext__``. Closing the iterator
        (``aclose()``, or cancelling the task iterating it) stops the generation at its next token and frees its
        thread.
        """
        request = self._transform_request(task, args, inputs, stream=True)
        return self._stream(request)

    # --- other functions and introspection -----------------------------------------------------------------

    async def chunk(self, splitter: str, text: str, kwargs: Mapping[str, Any] | None = None) -> list[str]:
        """``pgml.chunk``: the splitter's chunks in document order (on a thread: spaCy and NLTK are slow)."""
        self._check_open()
        return await asyncio.to_thread(chunking.chunk, splitter, text, kwargs)

    async def load_dataset(self, source: str, limit: int | None = None) -> datasets.Dataset:
        """``pgml.load_dataset``: a built-in toy dataset as table rows (on a thread: scikit-learn imports
        and reads its files)."""
        self._check_open()
        return await asyncio.to_thread(datasets.toy_dataset, source, limit)

    async def train(
        self, request: classical.TrainRequest, progress: classical.worker.ProgressCallback | None = None
    ) -> classical.TrainResult:
        """``pgml.train``: one training in a child process of the engine's pool (started on first use, so a
        proxy that never trains starts no process). ``progress`` gets each TrainingProgress on the event loop,
        in the caller's task; cancelling the caller kills the training."""
        self._check_open()
        return await classical.run_training(request, progress, pool=self._training_pool())

    async def tune(
        self, request: tuning.TuneRequest, progress: Callable[[Any], Awaitable[None] | None] | None = None
    ) -> tuning.TuneResult:
        """``pgml.tune``: LoRA fine-tuning in a child process of the training pool, as ``train`` runs;
        ``progress`` gets each ``{"epoch", "step", "steps", "loss"}`` on the event loop."""
        self._check_open()
        return await self._training_pool().run(tuning.tune, request, progress)

    async def materialize_tuned(self, files: Mapping[str, bytes], base_model: str, target: Path) -> Path:
        """The folder of a tuned model (adapter ``files`` merged into ``base_model``), written on a thread
        unless it exists: a model id never changes its files, so an existing folder is that model."""
        self._check_open()
        if target.exists():
            return target
        try:
            return await asyncio.to_thread(tuning.materialize, files, base_model, target)
        except EngineError:
            raise
        except Exception as exc:
            raise translate(exc) from exc

    def _training_pool(self) -> classical.TrainingPool:
        with self._lock:
            if self._training is None:
                self._training = classical.TrainingPool(max_workers=self._config.max_concurrent_trainings)
            return self._training

    # --- pgml.predict and friends --------------------------------------------------------------------------

    async def classical_model(
        self,
        key: Hashable,
        fetch: Callable[[], Awaitable[bytes]],
        columns: Callable[[], Awaitable[Sequence[Mapping[str, Any]]]] | None = None,
    ) -> classical.ClassicalModel:
        """The loaded model cached under ``key``; on a miss ``fetch()`` gives its artifact, which is first
        loaded and run once in a child of the training pool (a crafted artifact crashes a throwaway process,
        never the proxy) and only then loaded here, on a thread. ``columns()`` gives the snapshot's column
        objects, which row-form predictions need (:func:`classical.predict_rows`)."""
        self._check_open()
        model = self._serving.get(key)
        if model is not None:
            return model
        artifact = await fetch()
        snapshot_columns = None if columns is None else await columns()
        await self._training_pool().run(classical.artifacts.probe, artifact)
        model = await asyncio.to_thread(classical.load_model, artifact, snapshot_columns)
        self._serving.put(key, model)
        return model

    async def classical_predict(self, model: classical.ClassicalModel, function: str, features: Any) -> Any:
        """``classical.<function>(model, features)`` (predict, predict_proba, predict_joint, decompose) on a
        thread: a large batch must not stall the event loop."""
        self._check_open()
        run = _CLASSICAL_FUNCTIONS[function]
        return await asyncio.to_thread(run, model, features)

    def stats(self) -> EngineStats:
        cache = self._cache.stats
        batch = self._batch_stats
        return EngineStats(
            batches=batch.batches,
            requests=batch.requests,
            items=batch.items,
            dropped=batch.dropped,
            loads=cache.loads,
            hits=cache.hits,
            evictions=cache.evictions,
            model_bytes=cache.bytes,
            models=len(self._cache.keys()),
            **asdict(self._generation_stats.snapshot()),
        )

    def observe_batches(self, observer: Callable[[str, str, int, list[float]], None] | None) -> None:
        """Tell ``observer(function, model, items, waits)`` of every batch as it starts, on the event loop
        (metrics): ``function`` is embed, rank or transform, ``model`` the name calls used, ``items`` the
        batch's inputs, ``waits`` each request's seconds in the queue. None stops it."""
        self._batch_observer = observer

    def loaded_models(self) -> list[ModelKey]:
        """Keys of the models held now, least recently used first."""
        return self._cache.keys()

    def models(self) -> list[CachedModel[ModelKey]]:
        """The models held now with their size and use, least recently used first."""
        return self._cache.entries()

    async def load_model(
        self, model: str, task: str | None = None, kwargs: Mapping[str, Any] | None = None
    ) -> bool:
        """Load a model ahead of its first use, as calls will find it: ``task`` None or ``embedding`` for
        ``pgml.embed``, ``rank`` for ``pgml.rank``, a transform task name, or ``transform`` to take the task
        from the model's config; ``kwargs`` are the load options calls will pass. True when it was loaded now,
        False when it was held already."""
        try:
            key = await self._key_of(model, task, kwargs)
            held = self._cache.peek(key) is not None
            await self._ensure_model(key)
        except EngineError:
            raise
        except Exception as exc:
            raise translate(exc) from exc
        return not held

    def unload_model(self, model: str) -> int:
        """Drop every loaded copy of ``model`` (by the name calls used: any kind, options or device); the
        number dropped. The next call loads it again."""
        self._check_open()
        held = self._cache.keys()
        return sum(self._cache.evict(key) for key in held if key.name == model)

    async def _key_of(self, model: str, task: str | None, kwargs: Mapping[str, Any] | None) -> ModelKey:
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise InvalidArgument(f"load options must be a JSON object, got {type(kwargs).__name__}")
        if task is None or task == LOAD_EMBEDDING:
            return self._prepare(model, kwargs)[0]
        if task == LOAD_RANK:
            return self._rank_key(model, kwargs)[0]
        self._check_open()
        raw = {**(kwargs or {}), "model": model}
        if task != LOAD_TRANSFORM:
            try:
                tasks.canonical_task(task)
            except InvalidArgument as exc:
                raise InvalidArgument(
                    f"cannot load a model for {task!r}: give {LOAD_EMBEDDING}, {LOAD_RANK}, {LOAD_TRANSFORM} or a "
                    f"transform task ({exc})"
                ) from None
            raw["task"] = task
        spec = self._task_spec(raw)
        if spec.task is None:
            spec = spec.with_task(await self._inferred_task(spec))
        return _TransformRequest(spec, None, "text", []).key

    def close(self) -> None:
        """Stop accepting work, stop running streams, let running batches finish on their threads, and drop
        every model."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            executors = list(self._executors.values())
            self._executors.clear()
            self._batchers.clear()
            streams = list(self._streams.items())
            training, self._training = self._training, None
        if training is not None:
            training.close()  # running trainings are killed; their callers get EngineFailure
        for channel, _ in streams:
            channel.stop()
        # Streams end at their next token; waiting for that (briefly) keeps their threads from being cut off
        # inside torch by an interpreter that is shutting down.
        deadline = time.monotonic() + _CLOSE_WAIT_S
        for _, thread in streams:
            thread.join(max(0.0, deadline - time.monotonic()))
        for executor in executors:
            # Not cancel_futures: queued batches then fail with EngineFailure below instead of leaving their
            # callers with a bare cancellation.
            executor.shutdown(wait=False)
        self._cache.clear()
        self._serving.clear()

    # --- checks --------------------------------------------------------------------------------------------

    def _prepare(self, model: str, kwargs: Mapping[str, Any] | None) -> tuple[ModelKey, dict[str, Any]]:
        """Check an embed call's model name and load options and apply the configuration's policies, all
        before any work; returns the model's cache key and the (unchecked) encode options."""
        self._check_open()
        names = self._check_model_name(model)
        load_raw, encode_raw = embedding.split_kwargs(names, kwargs or {})
        load = embedding.load_options(self._with_device(names, load_raw))
        self._check_policy(model, names, load.trust_remote_code)
        return ModelKey(model, load, "embed"), encode_raw

    def _rank_key(self, model: str, kwargs: Mapping[str, Any] | None) -> tuple[ModelKey, ranking.RankOptions]:
        """Check a rank call's model name and kwargs against the policies: the cross-encoder's cache key and the
        rank options."""
        self._check_open()
        names = self._check_model_name(model)
        load, options = ranking.split_kwargs(self._with_device(names, kwargs))
        self._check_policy(model, names, load.trust_remote_code)
        return ModelKey(model, load, "cross-encoder"), options

    def _check_model_name(self, model: Any) -> tuple[str, ...]:
        if not isinstance(model, str) or not model.strip():
            raise InvalidArgument("model name must be a non-empty string")
        return self._resolver.alias_chain(model)

    def _check_policy(self, model: str, names: Sequence[str], trust_remote_code: bool) -> None:
        """The configuration's allowed-models list and remote-code trust (contract §2.8), by requested name
        or any alias target on its way."""
        if not self._config.allows_model(names):
            raise NotAllowed(
                f"model {model} is not whitelisted. Consider adding it to the allowed models "
                "(`pgml.huggingface_whitelist`) in the proxy configuration"
            )
        if trust_remote_code and not self._config.trusts_remote_code(names):
            raise NotAllowed(
                f"model {model} is not trusted to run remote code. Consider adding it to the trusted remote code "
                "models in the proxy configuration"
            )

    def _transform_request(
        self, task: str | Mapping[str, Any], args: Mapping[str, Any] | None, inputs: Any, *, stream: bool
    ) -> _TransformRequest:
        """Every check a transform call can have without its model; WARNINGs about its arguments go out here."""
        self._check_open()
        spec = self._task_spec(task)
        if stream:
            if spec.task is not None and spec.task not in tasks.GENERATION_TASKS:
                raise InvalidArgument(_cannot_stream(spec.task))
            kind, items = _stream_inputs(spec.task, inputs)
        else:
            kind, items = tasks.check_inputs(spec.task, inputs)
        if spec.task is None and not stream:
            if args is not None and not isinstance(args, Mapping):
                raise InvalidArgument(f"transform args must be a JSON object, got {type(args).__name__}")
            return _TransformRequest(spec, None, kind, items, raw_args=args)
        # A stream's task still to be inferred is checked as text-generation for now (it must be a generation
        # task anyway), and again once it is known.
        call, warnings = tasks.prepare_args(spec.task or "text-generation", args)
        for warning in warnings:
            notify("WARNING", warning)
        return _TransformRequest(spec, call, kind, items, raw_args=args, warned=True)

    async def _infer_task(self, request: _TransformRequest, *, stream: bool) -> _TransformRequest:
        """The task of a ``{"model": …}`` task, from the model config's architectures (read on a thread)."""
        known = await self._inferred_task(request.spec)
        spec = request.spec.with_task(known)
        if stream:
            if known not in tasks.GENERATION_TASKS:
                raise InvalidArgument(_cannot_stream(known))
            if request.kind == "chat" and known != "text-generation":
                raise InvalidArgument(tasks.JSONB_INPUTS_ERROR)
            kind, items = request.kind, request.items
        else:
            given = request.items[0] if request.kind == "chat" else request.items
            kind, items = tasks.check_inputs(known, given)
        call, warnings = tasks.prepare_args(known, request.raw_args)
        if not request.warned:
            for warning in warnings:
                notify("WARNING", warning)
        return _TransformRequest(spec, call, kind, items)

    async def _inferred_task(self, spec: tasks.TaskSpec) -> str:
        """The task of a model named without one, from its config's architectures (read on a thread)."""
        known = self._inferred_tasks.get((spec.model, spec.load))
        if known is None:
            loop = asyncio.get_running_loop()
            found = await loop.run_in_executor(None, self._architectures, spec)
            known = tasks.task_of_architectures(found)
            if known is None:
                raise InvalidArgument(
                    f"cannot tell the task of model {spec.model} from its config (architectures: "
                    f"{', '.join(found) or 'none'}); give a task"
                )
            self._inferred_tasks[(spec.model, spec.load)] = known
        return known

    def _task_spec(self, task: str | Mapping[str, Any]) -> tasks.TaskSpec:
        """A transform task checked against the policies, with the model's configured device."""
        spec = tasks.parse_task(task)
        names = self._check_model_name(spec.model)
        raw = {"task": task} if isinstance(task, str) else task
        placed = self._with_device(names, raw)
        if placed is not raw:
            spec = tasks.parse_task(placed)
        self._check_policy(spec.model, names, spec.load.trust_remote_code)
        return spec

    def _with_device(self, names: Sequence[str], raw: Any) -> Any:
        """Load options with the configured device of the model added when they place it nowhere themselves
        (no ``device``, no ``device_map``); anything else comes back as it is, to be checked as usual."""
        device = self._config.device_for(names)
        if device is None or not isinstance(raw, Mapping) or raw.get("device") is not None:
            return raw
        model_kwargs = raw.get("model_kwargs")
        if raw.get("device_map") is not None or (
            isinstance(model_kwargs, Mapping) and "device_map" in model_kwargs
        ):
            return raw
        return {**raw, "device": device}

    def _architectures(self, spec: tasks.TaskSpec) -> list[str]:
        resolved = self._resolver.resolve(spec.model, revision=spec.load.revision)
        return transforming.architectures(resolved, spec.load, self._config)

    # --- streaming -----------------------------------------------------------------------------------------

    async def _stream(self, request: _TransformRequest) -> AsyncGenerator[list[str], None]:
        try:
            if request.spec.task is None:
                request = await self._infer_task(request, stream=True)
            key = request.key
            model = await self._ensure_model(key)
            slots = self._slots_of(key)
            await slots.acquire()
        except EngineError:
            raise
        except Exception as exc:
            raise translate(exc) from exc
        stop = threading.Event()
        channel = streaming.PieceChannel(asyncio.get_running_loop(), stop)
        stream_id = next(self._stream_ids)
        thread = threading.Thread(
            target=self._stream_worker,
            args=(stream_id, request, model, channel, streaming.StopOnEvent(stop), slots),
            name=f"pgml-stream-{stream_id}",
            daemon=True,
        )
        with self._lock:
            self._streams[channel] = thread
        self._generation_stats.add(streams_started=1, streams_active=1)
        try:
            thread.start()
        except BaseException:
            slots.release()
            self._generation_stats.add(streams_active=-1)
            with self._lock:
                self._streams.pop(channel, None)
            raise
        try:
            while True:
                what, value = await channel.get()
                if what == "row":
                    yield value
                elif what == "end":
                    return
                else:
                    raise value
        finally:
            channel.stop()  # the client is gone or done: generation ends at its next token

    def _stream_worker(
        self,
        stream_id: int,
        request: _TransformRequest,
        model: transforming.TransformModel,
        channel: streaming.PieceChannel,
        stop: streaming.StopOnEvent,
        slots: streaming.GenerationSlots,
    ) -> None:
        """One stream's generation, on its own thread; it owns a slot until generate() returns.

        Everything that reports the end (slot, counters, log line) happens before the consumer is told, so a
        client that has read the last row finds the stream over everywhere.
        """
        started = time.perf_counter()
        streamer: streaming.PieceStreamer | None = None
        outcome = "finished"
        failure: EngineError | None = None
        try:
            call = request.args
            assert call is not None
            plan = transforming.plan_generation(
                model, call.task, request.spec.name or call.task, call, request.items
            )
            beams = plan.generate_kwargs.get("num_beams") or model.model.generation_config.num_beams or 1
            if beams > 1:
                raise InvalidArgument("transform_stream cannot stream beam search; use num_beams 1")
            decode = plan.decode_kwargs()

            def decode_ids(ids: list[int]) -> str:
                with model.lock:
                    return model.tokenizer.decode(ids, **decode)

            streamer = streaming.PieceStreamer(decode_ids, plan.sequences, channel, self._generation_stats)
            log.info(
                "stream %d started: model %s, task %s, %d sequence(s)",
                stream_id,
                request.spec.model,
                call.task,
                plan.sequences,
            )
            self._generation_stats.add(generations=1)
            streaming.generate_streaming(model.model, plan, streamer, stop)
            if stop.triggered or streamer.dropped:
                outcome = "stopped"
        except BaseException as exc:
            outcome = "failed"
            failure = exc if isinstance(exc, EngineError) else translate(exc)
        try:
            slots.release()
            tokens = streamer.steps if streamer is not None else 0
            pieces = streamer.rows if streamer is not None else 0
            self._generation_stats.add(streams_active=-1, streams_stopped=int(outcome == "stopped"))
            elapsed = time.perf_counter() - started
            if failure is not None:
                log.info("stream %d failed after %d tokens (%.2f s): %s", stream_id, tokens, elapsed, failure)
            else:
                log.info(
                    "stream %d %s after %d tokens (%d pieces, %.2f s)",
                    stream_id,
                    outcome,
                    tokens,
                    pieces,
                    elapsed,
                )
        finally:
            channel.finish(failure)
            with self._lock:
                self._streams.pop(channel, None)

    def _slots_of(self, key: ModelKey) -> streaming.GenerationSlots:
        with self._lock:
            self._check_open()
            slots = self._slots.get(key)
            if slots is None:
                slots = self._slots[key] = streaming.GenerationSlots(self._config.max_concurrent_generations)
            return slots

    # --- batching and threads ------------------------------------------------------------------------------

    def _batcher(self, key: ModelKey, options: Hashable, run: Any, name: str) -> Batcher[Any, Any]:
        """The batch queue of one model copy and set of call options (made on first use)."""
        with self._lock:
            self._check_open()
            batcher = self._batchers.get((key, options))
            if batcher is None:
                if len(self._batchers) >= _SWEEP_AT:
                    self._sweep()
                batcher = Batcher(
                    run,
                    self._executor_locked(key),
                    max_batch_size=self._config.max_batch_size,
                    max_wait_s=self._config.max_batch_wait_s,
                    name=name,
                    stats=self._batch_stats,
                    observer=lambda items, waits: self._batch_started(name, key, items, waits),
                )
                self._batchers[(key, options)] = batcher
            return batcher

    def _batch_started(self, name: str, key: ModelKey, items: int, waits: list[float]) -> None:
        observer = self._batch_observer
        if observer is not None:
            observer(name.partition(":")[0], key.name, items, waits)

    async def _submit(self, batcher: Batcher[T, R], items: list[T]) -> list[R]:
        """Results for ``items`` in order; a request larger than a batch goes in batch-sized parts, so other
        sessions' requests are served between them and a cancel drops the parts not yet run."""
        size = self._config.max_batch_size
        if len(items) <= size:
            return await batcher.submit(items)
        parts = await asyncio.gather(
            *(batcher.submit(items[n : n + size]) for n in range(0, len(items), size))
        )
        return [result for part in parts for result in part]

    def _executor(self, key: ModelKey) -> ThreadPoolExecutor:
        with self._lock:
            self._check_open()
            return self._executor_locked(key)

    def _executor_locked(self, key: ModelKey) -> ThreadPoolExecutor:
        executor = self._executors.get(key)
        if executor is None:
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"pgml-engine-{key.name}")
            self._executors[key] = executor
        return executor

    def _sweep(self) -> None:
        """Forget idle batchers, and the threads of models that are neither cached nor batched (lock held)."""
        for pair in [pair for pair, batcher in self._batchers.items() if batcher.idle]:
            del self._batchers[pair]
        busy = {key for key, _ in self._batchers}
        for key in [key for key in self._executors if key not in busy and self._cache.peek(key) is None]:
            self._executors.pop(key).shutdown(wait=False)

    def _embed_batch(
        self, key: ModelKey, encode: embedding.EncodeOptions, texts: list[str]
    ) -> list[list[float]]:
        """One model call for a whole batch; runs on the model's worker thread."""
        try:
            return embedding.encode(self._model(key), texts, encode)
        except Exception as exc:
            raise translate(exc) from exc

    def _rank_batch(self, key: ModelKey, predict: str, pairs: list[tuple[str, str]]) -> list[float]:
        try:
            return ranking.score(self._model(key), pairs, predict)
        except Exception as exc:
            raise translate(exc) from exc

    def _transform_batch(self, key: ModelKey, name: str, call: tasks.CallArgs, items: list[Any]) -> list[Any]:
        try:
            model = self._model(key)
            return transforming.run_batch(
                model, name, call, items, lambda: self._generation_stats.add(generations=1)
            )
        except Exception as exc:
            raise translate(exc) from exc

    # --- models --------------------------------------------------------------------------------------------

    async def _ensure_model(self, key: ModelKey) -> Any:
        """The model for ``key``, loading it on its worker thread if it is not held.

        A load that takes over a second tells the client (NOTICE ``loading model <name> …`` at the one-second
        mark, then ``model <name> loaded in <x.x> s``); it is always logged. The timer lives on the event loop,
        in the caller's task context, where the session's notice sink is.
        """
        model = self._cache.lookup(key)
        if model is not None:
            return model
        loop = asyncio.get_running_loop()
        started = loop.time()
        with self._lock:
            first = key not in self._loading
            self._loading.add(key)
        if first:
            log.info("loading model %s …", key.name)
        timer = loop.call_later(LOAD_NOTICE_AFTER_S, notify, "NOTICE", f"loading model {key.name} …")
        try:
            model = await loop.run_in_executor(self._executor(key), self._model, key)
        except Exception as exc:
            if first:
                log.info("model %s failed to load after %.1f s: %s", key.name, loop.time() - started, exc)
            raise
        finally:
            timer.cancel()
            with self._lock:
                self._loading.discard(key)
        elapsed = loop.time() - started
        if first:
            log.info("model %s loaded in %.1f s", key.name, elapsed)
        if elapsed > LOAD_NOTICE_AFTER_S:
            notify("NOTICE", f"model {key.name} loaded in {elapsed:.1f} s")
        return model

    def _model(self, key: ModelKey) -> Any:
        self._check_open()
        return self._cache.get(key, lambda: self._load(key))

    def _load(self, key: ModelKey) -> Any:
        """Load the model of ``key`` (on a worker thread): resolve its name, then load it as its kind."""
        resolved = self._resolver.resolve(key.name, revision=key.options.revision)
        if key.kind == "embed":
            model: SentenceTransformer = embedding.load_model(resolved, key.options, self._config)
            return model
        if key.kind == "cross-encoder":
            return ranking.load_model(resolved, key.options, self._config)
        family = key.kind.removeprefix("transform:")
        return transforming.load_model(resolved, family, key.options, self._config)

    def _check_open(self) -> None:
        if self._closed:
            raise EngineFailure("the engine is closed")


def _stream_inputs(task: str | None, inputs: Any) -> tuple[tasks.InputKind, list[Any]]:
    """transform_stream's input: one prompt (text), or one chat (message objects) for chat-capable tasks."""
    if isinstance(inputs, str):
        if task == "conversational":
            raise InvalidArgument(
                "conversational inputs must be messages: an array of JSON objects {role, content} (jsonb[])"
            )
        return "text", [inputs]
    if isinstance(inputs, Sequence) and all(isinstance(item, Mapping) for item in inputs):
        if task not in (None, "conversational", "text-generation"):
            raise InvalidArgument(tasks.JSONB_INPUTS_ERROR)
        return "chat", [tasks.check_messages(inputs)]
    raise InvalidArgument(
        "transform_stream input must be text, or an array of message objects {role, content}"
    )


def _cannot_stream(task: str) -> str:
    return (
        f"task {task} cannot stream; transform_stream works with {', '.join(sorted(tasks.GENERATION_TASKS))}"
    )


def _release_device_memory(key: ModelKey) -> None:
    """After an eviction, hand the GPU memory back to the driver (torch keeps freed blocks cached otherwise)."""
    device = getattr(key.options, "device", None)
    if device is not None and device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
