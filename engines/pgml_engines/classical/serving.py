"""The loaded classical models of one process, by (database identity, model id).

A model id never changes its artifact (``pgml.files`` rows are written once, by the training that made the
model), so an entry never goes stale and needs no invalidation; the least recently used entries go once
:data:`MAX_MODELS` are held.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Final

from .predict import ClassicalModel

MAX_MODELS: Final = 64


class ServingCache:
    def __init__(self, capacity: int = MAX_MODELS) -> None:
        self._capacity = capacity
        self._models: OrderedDict[Hashable, ClassicalModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> ClassicalModel | None:
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
            return model

    def put(self, key: Hashable, model: ClassicalModel) -> None:
        with self._lock:
            self._models[key] = model
            self._models.move_to_end(key)
            while len(self._models) > self._capacity:
                self._models.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
