"""The engine facade: the one object the proxy talks to.

The proxy creates one Engine per process and calls it from every session concurrently. The Engine owns:
- one ModelResolver (where models come from, under the configuration's security rules),
- one ModelCache (one copy of each model, keyed by name and load options, LRU within a memory budget),
- one worker thread per model copy (that is, per model and device), so the event loop never runs a model and
  batches of one model never compete for its weights,
- one Batcher per model copy and set of encode options, so concurrent requests share model calls.

Every exception leaving it is a :mod:`pgml_engines.errors` class (asyncio.CancelledError aside).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import chunk as chunking
from . import embed as embedding
from .batching import Batcher, BatchStats
from .cache import ModelCache
from .config import EngineConfig
from .errors import EngineError, EngineFailure, InvalidArgument, translate
from .resolve import ModelResolver

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

#: Idle batchers are swept once this many exist (each distinct set of encode options makes one).
_SWEEP_AT = 64


@dataclass(frozen=True)
class EngineStats:
    """A snapshot of the engine's counters (for tests, metrics and the proxy's introspection).

    batches: model calls made for embed; requests: embed calls they served; items: texts embedded;
    dropped: requests cancelled before their batch ran; loads/hits/evictions: model cache activity;
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


class Engine:
    """Runs pgml's inference functions for all sessions of a process."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        # Checking a request's device needs torch; importing it here, at startup, keeps that multi-second
        # import off the event loop of the first session that embeds.
        import torch  # noqa: F401

        self._config = config or EngineConfig()
        self._resolver = ModelResolver(self._config)
        self._cache: ModelCache[embedding.ModelKey, SentenceTransformer] = ModelCache(
            self._config.memory_budget_bytes, on_evict=_release_device_memory
        )
        self._lock = threading.Lock()
        self._executors: dict[embedding.ModelKey, ThreadPoolExecutor] = {}
        self._batchers: dict[
            tuple[embedding.ModelKey, embedding.EncodeOptions], Batcher[str, list[float]]
        ] = {}
        self._batch_stats = BatchStats()
        self._closed = False

    @property
    def config(self) -> EngineConfig:
        return self._config

    async def embed(
        self, model: str, texts: Sequence[str], kwargs: Mapping[str, Any] | None = None
    ) -> list[list[float]]:
        """``pgml.embed``: one float32 vector per text, in order.

        Arguments are checked before queueing, so a bad request fails alone; the model call itself is shared
        with concurrent requests for the same model and encode options.
        """
        key, encode_raw = self._prepare(model, kwargs)
        texts = _check_texts(texts)
        encode = embedding.encode_options(encode_raw)
        if not texts:
            return []
        batcher = self._batcher(key, encode)
        size = self._config.max_batch_size
        try:
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
        """Load a model (with these load options) ahead of its first use; encode options are ignored."""
        key, _ = self._prepare(model, kwargs)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor(key), self._model, key)
        except EngineError:
            raise
        except Exception as exc:
            raise translate(exc) from exc

    async def chunk(self, splitter: str, text: str, kwargs: Mapping[str, Any] | None = None) -> list[str]:
        """``pgml.chunk``: the splitter's chunks in document order (on a thread: spaCy and NLTK are slow)."""
        self._check_open()
        return await asyncio.to_thread(chunking.chunk, splitter, text, kwargs)

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
        )

    def loaded_models(self) -> list[embedding.ModelKey]:
        """Keys of the models held now, least recently used first."""
        return self._cache.keys()

    def close(self) -> None:
        """Stop accepting work, let running batches finish on their threads, and drop every model."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            executors = list(self._executors.values())
            self._executors.clear()
            self._batchers.clear()
        for executor in executors:
            # Not cancel_futures: queued batches then fail with EngineFailure below instead of leaving their
            # callers with a bare cancellation.
            executor.shutdown(wait=False)
        self._cache.clear()

    # --- internals -----------------------------------------------------------------------------------------

    def _prepare(
        self, model: str, kwargs: Mapping[str, Any] | None
    ) -> tuple[embedding.ModelKey, dict[str, Any]]:
        """Check the model name and load options and apply the remote-code policy, all before any work;
        returns the model's cache key and the (unchecked) encode options."""
        self._check_open()
        if not isinstance(model, str) or not model.strip():
            raise InvalidArgument("model name must be a non-empty string")
        names = self._resolver.alias_chain(model)
        load_raw, encode_raw = embedding.split_kwargs(names, kwargs or {})
        load = embedding.load_options(load_raw)
        if load.trust_remote_code and not self._config.trusts_remote_code(names):
            raise InvalidArgument(
                f"model {model} is not trusted to run remote code. Consider adding it to the trusted remote code "
                "models in the proxy configuration"
            )
        return embedding.ModelKey(model, load), encode_raw

    def _batcher(self, key: embedding.ModelKey, encode: embedding.EncodeOptions) -> Batcher[str, list[float]]:
        with self._lock:
            self._check_open()
            batcher = self._batchers.get((key, encode))
            if batcher is None:
                if len(self._batchers) >= _SWEEP_AT:
                    self._sweep()
                batcher = Batcher(
                    lambda texts: self._embed_batch(key, encode, texts),
                    self._executor_locked(key),
                    max_batch_size=self._config.max_batch_size,
                    max_wait_s=self._config.max_batch_wait_s,
                    name=f"embed:{key.name}",
                    stats=self._batch_stats,
                )
                self._batchers[(key, encode)] = batcher
            return batcher

    def _executor(self, key: embedding.ModelKey) -> ThreadPoolExecutor:
        with self._lock:
            self._check_open()
            return self._executor_locked(key)

    def _executor_locked(self, key: embedding.ModelKey) -> ThreadPoolExecutor:
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
        self, key: embedding.ModelKey, encode: embedding.EncodeOptions, texts: list[str]
    ) -> list[list[float]]:
        """One model call for a whole batch; runs on the model's worker thread."""
        try:
            return embedding.encode(self._model(key), texts, encode)
        except Exception as exc:
            raise translate(exc) from exc

    def _model(self, key: embedding.ModelKey) -> SentenceTransformer:
        if self._closed:
            raise EngineFailure("the engine is closed")
        return self._cache.get(key, lambda: self._load(key))

    def _load(self, key: embedding.ModelKey) -> SentenceTransformer:
        resolved = self._resolver.resolve(key.name, revision=key.options.revision)
        return embedding.load_model(resolved, key.options, self._config)

    def _check_open(self) -> None:
        if self._closed:
            raise EngineFailure("the engine is closed")


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise InvalidArgument("embed inputs must be a sequence of strings")
    checked = list(texts)
    for position, text in enumerate(checked, 1):
        if not isinstance(text, str):
            raise InvalidArgument(f"embed input {position} must be text, got {type(text).__name__}")
    return checked


def _release_device_memory(key: embedding.ModelKey) -> None:
    """After an eviction, hand the GPU memory back to the driver (torch keeps freed blocks cached otherwise)."""
    device = key.options.device
    if device is not None and device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
