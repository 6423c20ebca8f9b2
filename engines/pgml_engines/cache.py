"""The process-wide model cache: one copy of each loaded model, shared by every session.

PostgresML loads a model per database connection and keys its cache by name only, so the first caller's load
options win (contract §7.2 #12). Here the key is the name plus the load options plus what the model is loaded as
(:class:`ModelKey`), loading happens once however many callers arrive together, and the least recently used
models are dropped to stay within one memory budget shared by embedding models, cross-encoders and transform
models alike.

The cache holds the only long-lived reference to a model: batch workers look the model up for every batch, so
an evicted model's memory is freed as soon as the batch using it (if any) ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True)
class ModelKey:
    """Cache key of one loaded model: the name as requested, its load options, and what it is loaded as.

    ``kind`` separates the same name loaded differently: ``embed`` (a SentenceTransformer), ``cross-encoder``
    (a CrossEncoder for rank), ``transform:<family>`` (tokenizer + a transformers model class for transform).
    ``options`` is a frozen, hashable dataclass of the kind's load options; each has ``device`` (canonical, or
    None when a device map places the model) and ``revision``.
    """

    name: str
    options: Any
    kind: str = "embed"


@dataclass
class CacheStats:
    """Counters for tests and metrics; ``bytes`` is the estimated size of the models held now."""

    loads: int = 0
    hits: int = 0
    evictions: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class CachedModel(Generic[K]):
    """One model held, for introspection: its key, estimated size, when it was loaded and last used (Unix
    time), and how many times it was found already loaded."""

    key: K
    nbytes: int
    loaded_at: float
    last_used: float
    uses: int


@dataclass
class _Entry(Generic[V]):
    value: V
    nbytes: int
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    uses: int = 0

    def used(self) -> None:
        self.last_used = time.time()
        self.uses += 1


def estimate_nbytes(model: Any) -> int:
    """Bytes of a torch module's parameters and buffers (what dominates a model's memory); 0 for non-modules.

    Tensors shared between modules (tied embeddings) are counted once.
    """
    parameters = getattr(model, "parameters", None)
    buffers = getattr(model, "buffers", None)
    if not callable(parameters) or not callable(buffers):
        return 0
    seen: set[int] = set()
    total = 0
    for tensor in (*parameters(), *buffers()):
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


class ModelCache(Generic[K, V]):
    """A thread-safe LRU of loaded models bounded by estimated bytes.

    ``get`` is called from worker threads (never the event loop: loading takes seconds). A model larger than the
    whole budget is still loaded and kept, alone, because refusing it would make it unusable.
    """

    def __init__(
        self,
        budget_bytes: int | None,
        *,
        size_of: Callable[[V], int] = estimate_nbytes,
        on_evict: Callable[[K], None] | None = None,
    ) -> None:
        """``on_evict(key)`` runs after the cache has dropped its reference (so freeing device memory in it can
        work); it gets no model, so that it cannot keep one alive."""
        self._budget = budget_bytes
        self._size_of = size_of
        self._on_evict = on_evict
        self._lock = threading.Lock()
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._loading: dict[K, Future[V]] = {}
        self.stats = CacheStats()

    def get(self, key: K, loader: Callable[[], V]) -> V:
        """The cached model for ``key``, loading it with ``loader`` if absent.

        Concurrent callers for the same key wait for the one load in progress and receive the same object; if it
        fails they all get its exception and nothing is cached, so a later call tries again.
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.stats.hits += 1
                entry.used()
                return entry.value
            pending = self._loading.get(key)
            if pending is None:
                pending = self._loading[key] = Future()
                owner = True
            else:
                owner = False
        if not owner:
            return pending.result()

        started = time.perf_counter()
        try:
            value = loader()
            nbytes = self._size_of(value)
        except BaseException as exc:
            with self._lock:
                del self._loading[key]
            pending.set_exception(exc)
            raise
        evicted = self._insert(key, value, nbytes)
        pending.set_result(value)
        log.info("loaded model %r (%.1f MB) in %.2fs", key, nbytes / 1e6, time.perf_counter() - started)
        self._notify(evicted)
        return value

    def lookup(self, key: K) -> V | None:
        """The cached model, counted as a use (a hit, and most recently used), or None without loading it.

        For the event loop: it never waits for a load in progress (that one is not "held" yet).
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            self.stats.hits += 1
            entry.used()
            return entry.value

    def peek(self, key: K) -> V | None:
        """The cached model without loading it or changing its recency."""
        with self._lock:
            entry = self._entries.get(key)
            return entry.value if entry is not None else None

    def keys(self) -> list[K]:
        """Keys held, least recently used first."""
        with self._lock:
            return list(self._entries)

    def entries(self) -> list[CachedModel[K]]:
        """What is held, least recently used first."""
        with self._lock:
            return [
                CachedModel(key, entry.nbytes, entry.loaded_at, entry.last_used, entry.uses)
                for key, entry in self._entries.items()
            ]

    def evict(self, key: K) -> bool:
        """Drop one model now; True if it was held."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is None:
                return False
            self.stats.bytes -= entry.nbytes
            self.stats.evictions += 1
        del entry
        self._notify([key])
        return True

    def clear(self) -> None:
        """Drop every model (engine shutdown)."""
        for key in self.keys():
            self.evict(key)

    def _insert(self, key: K, value: V, nbytes: int) -> list[K]:
        evicted: list[K] = []
        with self._lock:
            del self._loading[key]
            self._entries[key] = _Entry(value, nbytes)
            self.stats.loads += 1
            self.stats.bytes += nbytes
            while self._budget is not None and self.stats.bytes > self._budget and len(self._entries) > 1:
                old_key, old = self._entries.popitem(last=False)
                self.stats.bytes -= old.nbytes
                self.stats.evictions += 1
                evicted.append(old_key)
        return evicted

    def _notify(self, evicted: list[K]) -> None:
        for key in evicted:
            log.info("evicted model %r", key)
            if self._on_evict is not None:
                try:
                    self._on_evict(key)
                except Exception:  # an eviction hook must never fail the load that triggered it
                    log.exception("eviction hook failed for %r", key)
